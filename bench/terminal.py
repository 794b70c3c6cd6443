"""Benchmark a full hospital visit through the terminal daemon's HTTP API, card behind pcscd.

The timed step is POST /v1/visits/{id}/settle, which does everything at the counter: read the card
(14 APDUs), verify the PIN, mutual authentication, journal (durable), presence check, settle at the centre
(durable), presence check, and the transaction record written to the card with a MAC. Registration is timed
on its own. Prints p50/p99 and the split between card I/O, the settlement centre, and the security module
(PSAM in slot 1, or the HSM over TCP), for both security paths. As at a real counter, the daemon runs as
its own process (`sscard terminal serve`); the centre (settlement service, HSM) and the simulated cards run in
this one.

Targets on this machine: p50 < 30 ms and p99 < 60 ms for the full visit.
Run: .venv/bin/python bench/terminal.py [--visits 300]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# This script's name is the `terminal` package's: keep bench/ off the import path so the package is found.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import httpx  # noqa: E402

from cardlib.readers.pcsc import wait_present  # noqa: E402
from sim import pcsc_stack  # noqa: E402
from sim.personalize import issue_sample  # noqa: E402
from sim.psam import SimPsam  # noqa: E402
from sim.vicc import VirtualCardLink  # noqa: E402
from sscard.stack import listening_socket, start_centre  # noqa: E402
from terminal.config import hash_token  # noqa: E402

LINES = [
    {"chrgitm_lv": "A", "det_item_fee_sumamt": 120_00},
    {"chrgitm_lv": "B", "det_item_fee_sumamt": 80_00},
    {"chrgitm_lv": "C", "det_item_fee_sumamt": 15_00},
]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def spent(url: str) -> dict[str, float]:
    """sscard_terminal_time_spent_seconds by part, from the daemon's /metrics."""
    out: dict[str, float] = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("sscard_terminal_time_spent_seconds_total{"):
            part = line.split('part="')[1].split('"')[0]
            out[part] = float(line.rsplit(" ", 1)[1])
    return out


def start_daemon(workdir: Path, centre, readers: tuple[str, str], hsm: bool) -> tuple[subprocess.Popen, str, str]:
    """The terminal daemon as its own process, as at a real counter, on a socket the OS assigned (handed over)."""
    sock, token = listening_socket(), "bench-token"
    port = sock.getsockname()[1]
    cfg = workdir / f"terminal-{port}.toml"
    hsm_host, hsm_port = centre.hsm_address
    cfg.write_text(f"""
[terminal]
id = "T0001"
institution = "H11000301"
region = "110000"
journal = "{workdir / f'journal-{port}.db'}"
[readers]
user_card = "{readers[0]}"
psam = "{readers[1]}"
[settlement]
url = "{centre.service.url}"
[hsm]
host = "{hsm_host if hsm else ''}"
port = {hsm_port}
credential = "{centre.hsm_credential('T0001')}"
[auth]
tokens_sha256 = ["{hash_token(token)}"]
""")
    env = dict(os.environ, SSCARD_TERMINAL_KEY=centre.terminal_keys["T0001"])
    with sock:
        proc = subprocess.Popen([sys.executable, "-m", "sscard.cli", "terminal", "serve", "--config", str(cfg),
                                 "--fd", str(sock.fileno())], env=env, pass_fds=[sock.fileno()])
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/health", timeout=0.5).status_code == 200:
                return proc, url, token
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit("terminal daemon did not start")


def run(visits: int, url: str, token: str) -> dict[str, object]:
    total, register = [], []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
        for i in range(visits + 20):
            if i == 20:
                before = spent(url)
            t0 = time.perf_counter()
            mdtrt = api.post("/v1/visits", json={"care": "outpatient"}).json()["mdtrt_id"]
            t1 = time.perf_counter()
            r = api.post(f"/v1/visits/{mdtrt}/settle", json={"lines": LINES, "pin": "123456"})
            t2 = time.perf_counter()
            if r.status_code != 200 or r.json()["card_record"] != "written":
                raise SystemExit(f"visit failed: {r.status_code} {r.text}")
            if i >= 20:
                register.append(t1 - t0)
                total.append(t2 - t1)
        after = spent(url)
    # the split covers registration + settlement, per visit (means)
    split = {k: (after.get(k, 0.0) - before.get(k, 0.0)) / visits for k in ("card", "centre", "security", "journal")}
    return {"total": total, "register": register, "split": split}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--visits", type=int, default=300)
    a = ap.parse_args()
    if not pcsc_stack.available() or pcsc_stack.running_pid() is not None:
        print("needs pcscd + vsmartcard-vpcd installed and no other pcscd running")
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="sscard-bench-terminal-"))
    centre = start_centre(workdir)
    ok = True
    with pcsc_stack.Pcscd(workdir=workdir / "pcscd") as pcscd:
        user = VirtualCardLink(issue_sample("zhang_san"), pcscd.port)
        psam = VirtualCardLink(SimPsam(), pcscd.port + 1)
        user.insert()
        psam.insert()
        wait_present(list(pcscd.readers))
        for label, readers, hsm in (("PSAM in slot 1", pcscd.readers, False),
                                    ("HSM over TCP", (pcscd.readers[0], ""), True)):
            proc, url, token = start_daemon(workdir, centre, readers, hsm)
            try:
                res = run(a.visits, url, token)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(15)
            total = res["total"]
            p50, p99 = statistics.median(total) * 1e3, pct(total, 0.99) * 1e3
            good = p50 < 30 and p99 < 60
            ok &= good
            print(f"full visit via HTTP, card behind pcscd, {label}: p50 {p50:.1f} ms, p99 {p99:.1f} ms "
                  f"(n={len(total)}; target p50 < 30, p99 < 60: {'PASS' if good else 'FAIL'})")
            parts = ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in res["split"].items())
            whole = (statistics.fmean(total) + statistics.fmean(res["register"])) * 1e3
            print(f"  split per visit (means over register + settle, {whole:.1f} ms in all): {parts}, "
                  f"HTTP and the daemon's own work {whole - sum(res['split'].values()) * 1e3:.1f} ms")
            print(f"  registration (separate call): p50 {statistics.median(res['register']) * 1e3:.1f} ms")
        user.remove()
        psam.remove()
    centre.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
