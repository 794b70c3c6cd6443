"""Shared fixtures. The real PC/SC stack (pcscd + vpcd) is started once per session by `pcsc`.

With REQUIRE_PCSC=1 (as `make test` sets) a missing pcscd/vpcd fails the tests instead of skipping them.
A randomised test takes `seed`: a new one each run, printed (pytest shows it with the failure), and
SSCARD_SEED=N replays it.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from cardlib.readers.pcsc import wait_present
from sim import pcsc_stack
from sim.card import SimCard
from sim.personalize import issue_sample
from sim.vicc import VirtualCardLink
from testing.pgtemp import PostgresUnavailable, TempCluster, find_bindir

ONE_PCSCD = ("pcsc_stack", "pcscd", "sscard.demo")
"""What a test module names when it uses the machine's one pcscd (directly, or through the demo)."""


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`make test` runs the suite on two pytest-xdist workers (`--dist loadgroup`); a machine has one pcscd
    (it owns /run/pcscd), so every test that starts or uses it runs on the same worker, one after another."""
    mentions: dict[str, bool] = {}
    for item in items:
        path = str(item.path)
        if path not in mentions:
            text = item.path.read_text(encoding="utf-8") if item.path.name.startswith("test_") else ""
            mentions[path] = any(word in text for word in ONE_PCSCD)
        if mentions[path] or "pcscd" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("pcscd"))


@pytest.fixture
def seed() -> int:
    """The seed of a randomised test: SSCARD_SEED if set (a replay), else a new one; printed either way."""
    given = os.environ.get("SSCARD_SEED")
    value = int(given) if given else random.SystemRandom().randrange(2**32)
    print(f"seed={value} (replay with SSCARD_SEED={value})")
    return value


@pytest.fixture(scope="session")
def pcscd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pcsc_stack.Pcscd]:
    if not pcsc_stack.available():
        if os.environ.get("REQUIRE_PCSC"):
            pytest.fail("pcscd / vsmartcard-vpcd not installed (make test installs them)")
        pytest.skip("pcscd / vsmartcard-vpcd not installed")
    stack = pcsc_stack.Pcscd(workdir=tmp_path_factory.mktemp("pcscd"))
    stack.start()
    yield stack
    stack.stop()


@dataclass
class Slot:
    """One vpcd slot with a simulated card in it."""

    reader: str
    card: SimCard
    link: VirtualCardLink

    def replace(self, card: SimCard) -> None:
        """Swap in another card (remove, insert, wait until pcscd sees it)."""
        self.link.remove()
        wait_present([self.reader], present=False)
        self.card = card
        self.link = VirtualCardLink(card, self.link.port)
        self.link.insert()
        wait_present([self.reader])

    @contextmanager
    def in_another_process(self, *sim_run_args: str) -> Iterator[subprocess.Popen]:
        """`sscard sim run ARGS` puts its card on this slot (our card steps out) until the block ends; the
        process's output is kept in its stdout pipe."""
        self.link.remove()
        wait_present([self.reader], present=False)
        proc = subprocess.Popen([sys.executable, "-m", "sscard.cli", "sim", "run", *sim_run_args,
                                 "--port", str(self.link.port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        try:
            wait_present([self.reader], timeout=15)
            yield proc
        finally:
            proc.terminate()
            proc.wait(10)
            wait_present([self.reader], present=False)
            self.link = VirtualCardLink(self.card, self.link.port)
            self.link.insert()
            wait_present([self.reader])

    def ensure_inserted(self) -> None:
        if not self.link.inserted:
            self.card.faults.clear()
            self.link.remove()
            wait_present([self.reader], present=False)
            self.link = VirtualCardLink(self.card, self.link.port)
            self.link.insert()
            wait_present([self.reader])


@pytest.fixture(scope="session")
def slots(pcscd: pcsc_stack.Pcscd) -> Iterator[tuple[Slot, Slot]]:
    """Both vpcd slots, each with a sample card: (zhang_san on slot 0, li_si on slot 1, T=0)."""
    user, second = pcscd.readers
    s0 = Slot(user, issue_sample("zhang_san"), None)  # type: ignore[arg-type]
    s1 = Slot(second, issue_sample("li_si"), None)  # type: ignore[arg-type]
    s0.link = VirtualCardLink(s0.card, pcscd.port)
    s1.link = VirtualCardLink(s1.card, pcscd.port + 1)
    s0.link.insert()
    s1.link.insert()
    wait_present([user, second])
    yield s0, s1
    s0.link.remove()
    s1.link.remove()


DIALECTS = ["native", "national"]
"""The upstreams a counter may talk to (terminal/centre.py): flow, reversal and recovery tests run on each."""


@pytest.fixture
def dialect() -> str:
    """The counter's upstream: "native" unless a test parametrizes it (with DIALECTS)."""
    return "native"


@pytest.fixture
def counter_on_pcsc(slots: tuple[Slot, Slot], tmp_path, dialect: str):
    """A terminal daemon on the pcscd slots (user card in slot 0, a PSAM put in slot 1) and the centre:
    (centre, counter, slot 0). Afterwards both slots hold their session cards again, inserted, unfaulted."""
    from sim.psam import SimPsam
    from sscard.stack import start_centre, start_counter

    s0, s1 = slots
    card0, card1 = s0.card, s1.card
    s1.replace(SimPsam(terminal_number="110100000042"))  # type: ignore[arg-type]
    centre = start_centre(tmp_path / "centre")
    counter = start_counter(centre, s0.reader, s1.reader, dialect=dialect)
    yield centre, counter, s0
    counter.stop()
    centre.stop()
    s1.replace(card1)
    s0.card.faults.clear()
    if s0.card is not card0 or not s0.link.inserted:
        s0.replace(card0)


@pytest.fixture(scope="session")
def postgres() -> Iterator[TempCluster]:
    """A running PostgreSQL server for the whole session; stopped by PID at the end."""
    required = os.environ.get("REQUIRE_PG", "") not in ("", "0")
    if find_bindir() is None:
        msg = (
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin "
            "(install the Debian 'postgresql' package, e.g. scripts/install-system-deps.sh)"
        )
        if required:
            pytest.fail(f"REQUIRE_PG is set: {msg}")
        pytest.skip(msg)
    cluster = TempCluster(durable=False)
    try:
        cluster.start()
    except PostgresUnavailable as e:
        cluster.stop()
        if required:
            pytest.fail(f"REQUIRE_PG is set and PostgreSQL did not start: {e}")
        pytest.skip(str(e))
    yield cluster
    cluster.stop()
