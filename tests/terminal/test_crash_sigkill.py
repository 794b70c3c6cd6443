"""The terminal daemon SIGKILLed at randomised points across 200 visits (120 through the national platform
interface): journal and ledger agree exactly, in either upstream dialect.

The daemon runs as its own process (`sscard terminal serve`). It kills itself with SIGKILL at named crash
points in the flows (SSCARD_CRASHPOINTS, each with a probability, drawn from SSCARD_CRASH_SEED: the test's
seed and the start's number, so the draws replay) and the test also SIGKILLs it from outside after random
delays (those depend on timing as well). After every kill it is restarted; recovery resolves what was in flight.
At the end every settlement is in exactly one final state, the same at the terminal and the centre.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from settlement.errors import UnknownTransaction
from sscard.stack import listening_socket, start_centre
from sscard.world import card_no
from terminal.config import hash_token
from terminal.journal import CONFIRMED, FAILED, REVERSED, Journal
from tests.terminal.conftest import DIALECTS, LINES

VISITS = {"native": 200, "national": 120}  # a national visit is 4 messages (1101, 2201, 2204, 2207), not 2
MONEY = ("medfee_sumamt", "fund_pay_sumamt", "acct_pay", "psn_cash_pay", "hifp_pay", "hifob_pay", "hifmi_pay",
         "maf_pay")
CRASHPOINTS = ",".join(
    f"{p}:0.04"
    for p in ("register.before_send", "register.answered", "settle.journaled", "settle.before_send",
              "settle.answered", "settle.confirmed", "card_record.before_write", "void.before_send")
)


class Daemon:
    def __init__(self, workdir: Path, centre, crash: bool, seed: int, port: int = 0, dialect: str = "native") -> None:
        self.port = port  # 0 until the first start binds one the OS assigns
        self.token = "test-token"
        self.journal = workdir / "T0001-journal.db"
        cfg = workdir / "terminal.toml"
        cfg.write_text(f"""
[terminal]
id = "T0001"
institution = "H11000301"
region = "110000"
journal = "{self.journal}"
[readers]
user_card = "memory:zhang_san"
psam = "memory:psam"
[settlement]
url = "{centre.service.url}"
timeout = 3.0
[centre]
dialect = "{dialect}"
[auth]
tokens_sha256 = ["{hash_token(self.token)}"]
""")
        env = dict(os.environ, SSCARD_TERMINAL_KEY=centre.terminal_keys["T0001"])
        if crash:
            env["SSCARD_CRASHPOINTS"] = CRASHPOINTS
        self.cmd = [sys.executable, "-m", "sscard.cli", "terminal", "serve", "--config", str(cfg)]
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.seed, self.starts = seed, 0
        self.log = open(workdir / "daemon.log", "ab")  # noqa: SIM115 - closed in stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start the daemon on a socket bound here (the first time on a port the OS assigns, then on the same
        port) and handed over by fd; this process lets go of it once the daemon serves, so a killed daemon
        refuses connections until the next start."""
        self.starts += 1
        env = dict(self.env, SSCARD_CRASH_SEED=f"{self.seed}:{self.starts}")
        with listening_socket(self.port) as sock:
            self.port = sock.getsockname()[1]
            fd = str(sock.fileno())
            self.proc = subprocess.Popen([*self.cmd, "--fd", fd], env=env, stdout=self.log, stderr=self.log,
                                         pass_fds=[sock.fileno()])
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"daemon exited with {self.proc.returncode}")
                try:
                    if httpx.get(f"{self.url}/health", timeout=0.5).status_code == 200:
                        return
                except httpx.TransportError:
                    time.sleep(0.05)
        raise RuntimeError("daemon did not come up")

    def kill(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):  # an outside kill's timer may have got there first
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


@pytest.mark.timeout(900)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_sigkill_at_random_points_loses_nothing_and_posts_nothing_twice(tmp_path, seed, dialect):
    rng = random.Random(seed)
    visits = VISITS[dialect]
    centre = start_centre(tmp_path / "centre")
    daemon = Daemon(tmp_path, centre, crash=True, seed=seed, dialect=dialect)
    clean: Daemon | None = None
    kills = {"self": 0, "external": 0}
    outcomes: dict[str, int] = {}
    try:
        for _ in range(visits):
            if not daemon.alive():
                if daemon.proc is not None:
                    kills["self"] += daemon.proc.returncode == -signal.SIGKILL
                daemon.start()
            timer = None
            if rng.random() < 0.08:  # an outside SIGKILL at a random moment of this visit
                timer = threading.Timer(rng.uniform(0.0, 0.08), daemon.kill)
                timer.start()
                kills["external"] += 1
            try:
                with httpx.Client(base_url=daemon.url, headers={"Authorization": f"Bearer {daemon.token}"},
                                  timeout=10) as api:
                    v = api.post("/v1/visits", json={"care": "outpatient"})
                    if v.status_code != 200:
                        outcomes[f"register:{v.json()['code']}"] = outcomes.get(f"register:{v.json()['code']}", 0) + 1
                        continue
                    r = api.post(f"/v1/visits/{v.json()['mdtrt_id']}/settle", json={"lines": LINES, "pin": "123456"})
                    code = "ok" if r.status_code == 200 else r.json()["code"]
                    outcomes[code] = outcomes.get(code, 0) + 1
            except httpx.TransportError:
                outcomes["killed"] = outcomes.get("killed", 0) + 1
            finally:
                if timer is not None:
                    timer.cancel()
        # a clean restart: recovery and the forwarder finish what is in flight
        daemon.kill()
        clean = Daemon(tmp_path, centre, crash=False, seed=seed, port=daemon.port, dialect=dialect)
        clean.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            health = httpx.get(f"{clean.url}/health").json()
            if health["journal"]["pending"] == 0:
                break
            time.sleep(0.2)
        clean.stop()

        journal = Journal(daemon.journal, "T0001")
        entries = journal.all()
        settles = [e for e in entries if e.kind == "settle"]
        client = centre.client()
        final = {CONFIRMED: 0, REVERSED: 0, FAILED: 0}
        for e in entries:
            assert e.state in (CONFIRMED, REVERSED, FAILED), f"{e.key} left {e.state}"
        for e in settles:
            try:
                rec = client.settlement(e.key)
            except UnknownTransaction:
                rec = None
            if e.state == CONFIRMED:
                assert rec is not None and rec.status == "settled", e.key
                posted = client.posting(e.key).payload["result"]["breakdown"]
                assert {m: posted[m] for m in MONEY} == {m: e.response["breakdown"][m] for m in MONEY}, e.key
            elif e.state == REVERSED:
                assert rec is None or rec.status in ("voided", "void_before_arrival"), (e.key, rec)
            else:
                assert rec is None or rec.status == "void_before_arrival", (e.key, rec)
            final[e.state] += 1
        # nothing posted at the centre that the journal does not account for
        journal_keys = {e.key: e for e in entries}
        for _seq, p in centre.engine.ledger.postings(limit=1_000_000):
            if p.key.startswith("T0001:"):
                assert p.key in journal_keys, f"{p.key} posted at the centre but not in the journal"
                e = journal_keys[p.key]
                if e.kind == "settle":
                    assert e.state in (CONFIRMED, REVERSED)
        centre.engine.ledger.check_invariants()
        # no fen lost: the patient's account paid exactly what the confirmed settlements say
        paid = sum(e.response["breakdown"]["acct_pay"] for e in settles if e.state == CONFIRMED)
        balance = client.person_balances("110105198001010016", card_no=card_no("zhang_san")).personal_account
        assert balance == 5_000_00 - paid
        client.close()
        journal.close()
        print(f"dialect={dialect} visits={visits} kills={kills} outcomes={outcomes} final={final}")
        assert kills["self"] + kills["external"] >= visits // 10  # the run really crashed, many times
        assert final[CONFIRMED] > visits // 4 and final[REVERSED] > 0
    finally:
        daemon.kill()
        if clean is not None:
            clean.kill()
        centre.stop()
