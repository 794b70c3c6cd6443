"""Crash test: a child process posting from several threads is SIGKILLed at a random moment, twice.
After each kill: the invariants hold, every posting the child was told about is there, and retrying
every key (as terminals do after a crash) posts nothing twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from settlement.ledger import Ledger, Store
from settlement.ledger.store.sqlite import SqliteStore
from testing.pgtemp import TempCluster

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import sys, threading
    from settlement.ledger import AccountKind, Ledger, Transfer
    kind, target, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if kind == "sqlite":
        from settlement.ledger.store.sqlite import SqliteStore
        store = SqliteStore(target)
    else:
        from settlement.ledger.store.postgres import PostgresStore
        store = PostgresStore(target, max_size=threads)
    ledger = Ledger(store)
    for code, k in [("EXT", "external"), ("POOL", "pooled_fund"), ("HOSP", "hospital_payable"),
                    ("PA", "personal_account")]:
        ledger.open_account(code, k)
    ledger.post("fund", "allocation", [Transfer("EXT", "PA", 10**9)])
    out = threading.Lock()

    def work(t):
        for i in range(t, 10**6, threads):
            ts = [Transfer("POOL", "HOSP", 100 + i % 7)]
            if i % 3 == 0:
                ts.append(Transfer("PA", "HOSP", 1))
            p = ledger.post(f"K{i:07d}", "medical", ts)
            with out:
                sys.stdout.write(f"ok K{i:07d} {int(p.replayed)}\\n")
                sys.stdout.flush()

    for t in range(threads):
        threading.Thread(target=work, args=(t,), daemon=True).start()
    threading.Event().wait()
    """
)


def amount(key: str) -> int:
    i = int(key[1:])
    return 100 + i % 7 + (1 if i % 3 == 0 else 0)


def run_and_kill(kind: str, target: str, *, min_acks: int, rng: random.Random) -> dict[str, bool]:
    """Start the child, let it acknowledge at least `min_acks` posts, SIGKILL it at a random moment;
    return {key: replayed} for every acknowledged post."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, kind, target, "6"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    acks: dict[str, bool] = {}
    enough = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            _, key, replayed = line.decode().split()
            acks[key] = replayed == "1"
            if len(acks) >= min_acks:
                enough.set()
        enough.set()

    reader = threading.Thread(target=read)
    reader.start()
    enough.wait(timeout=60)
    time.sleep(rng.uniform(0, 0.3))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    reader.join(timeout=30)
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.returncode == -signal.SIGKILL, err
    assert len(acks) >= min_acks, err
    return acks


def check_after_crash(store: Store, acked: set[str]) -> set[str]:
    """Invariants hold, acknowledged posts are there, totals match the postings present."""
    ledger = Ledger(store)
    ledger.check_invariants()
    present = {p.key for _, p in ledger.postings(limit=10**7) if p.key.startswith("K")}
    assert acked <= present, f"lost acknowledged postings: {sorted(acked - present)[:5]}"
    b = ledger.balances(["POOL", "HOSP", "PA"])
    assert b["HOSP"] == sum(amount(k) for k in present)
    assert b["POOL"] == -sum(amount(k) - (1 if int(k[1:]) % 3 == 0 else 0) for k in present)
    return present


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_sigkill_loses_nothing_and_posts_nothing_twice(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, seed: int
) -> None:
    rng = random.Random(seed)
    make: Callable[[], Store]
    if kind == "sqlite":
        target = str(tmp_path / "crash.db")

        def make() -> Store:
            return SqliteStore(target)
    else:
        from settlement.ledger.store.postgres import PostgresStore

        cluster: TempCluster = request.getfixturevalue("postgres")
        target = cluster.new_schema("crash")

        def make() -> Store:
            return PostgresStore(target)

    first = run_and_kill(kind, target, min_acks=200, rng=rng)
    with make() as store:
        present = check_after_crash(store, set(first))
    # the child restarts and retries every key from the start, as terminals do after a crash
    second = run_and_kill(kind, target, min_acks=len(present) + 100, rng=rng)
    for key, replayed in second.items():
        assert replayed == (key in present), key  # posted before the crash -> a replay, never a new post
    with make() as store:
        check_after_crash(store, set(first) | set(second))
