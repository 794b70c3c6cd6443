"""Benchmark what a page does through the reader bridge: iReadCardBas, card behind pcscd, beside cardlib alone.

The whole path a page sees (a WebSocket message to the daemon, the card read afresh with its 14 APDUs after
a reconnect, the card's INTERNAL AUTHENTICATE checked by the PSAM, the national string back) beside its
parts, measured side by side in short alternating rounds on the same card and PSAM: the same call over HTTP
(one POST per call); cardlib doing the same card work without the daemon (`connect()`, `read_basic()`,
`authenticate_card()` with the PSAM, `national()`: what a vendor DLL does for iReadCardBas); and cardlib's
`connect()` + `read_basic()` alone. The daemon runs as its own process, as at a counter, and so does the
cardlib client (this script again, `--cardlib`, timing its own calls), so neither shares an interpreter with
the simulated card (slot 0) and PSAM (slot 1) behind our pcscd, which run in this process with the centre.
All hold the readers shared, one call at a time. Medians, and medians of per-round ratios (robust on a
shared machine).

Run: .venv/bin/python bench/reader_bridge.py [--rounds 100] [--calls 5]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# This script's directory holds bench/terminal.py, whose name is the `terminal` package's: keep it off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import httpx  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from cardlib.card import SocialSecurityCard  # noqa: E402
from cardlib.psam import Psam, PsamSecurity  # noqa: E402
from cardlib.readers.pcsc import PcscReader, wait_present  # noqa: E402

TOKEN, PAGE, DEVICE = "bench-token", "bench-page-token", "T0001"
CALL = json.dumps({"function": "iReadCardBas", "iType": 3})
PATHS = ("ws", "http", "dll", "read")


def cardlib_client(user_reader: str, psam_reader: str) -> int:
    """`--cardlib`: for each line `dll N` or `read N` on stdin, N calls; prints seconds per call, then the
    national string of the last."""
    with PcscReader(user_reader) as ur, PcscReader(psam_reader) as pr:
        card, sm = SocialSecurityCard(ur), PsamSecurity(Psam(pr))
        terminal_number = sm.psam.terminal_number()
        for line in sys.stdin:
            kind, n = line.split()
            t0 = time.perf_counter()
            for _ in range(int(n)):
                card.connect()
                info = card.read_basic()
                if kind == "dll":
                    card.authenticate_card(sm)
                out = info.national(terminal_number, DEVICE)
            print((time.perf_counter() - t0) / int(n), out, flush=True)
    return 0


def start_daemon(workdir: Path, centre, readers: tuple[str, str]) -> tuple[subprocess.Popen, int]:
    from sscard.stack import listening_socket
    from terminal.config import hash_token

    sock = listening_socket()
    port = sock.getsockname()[1]
    cfg = workdir / "terminal.toml"
    cfg.write_text(f"""
[terminal]
id = "{DEVICE}"
institution = "H11000301"
region = "110000"
journal = "{workdir / 'journal.db'}"
[readers]
user_card = "{readers[0]}"
psam = "{readers[1]}"
[settlement]
url = "{centre.service.url}"
[auth]
tokens_sha256 = ["{hash_token(TOKEN)}"]
[reader_bridge]
tokens_sha256 = ["{hash_token(PAGE)}"]
""")
    env = dict(os.environ, SSCARD_TERMINAL_KEY=centre.terminal_keys[DEVICE])
    with sock, open(workdir / "daemon.log", "wb") as log:  # its JSON log lines, out of the figures' way
        proc = subprocess.Popen([sys.executable, "-m", "sscard.cli", "terminal", "serve", "--config", str(cfg),
                                 "--fd", str(sock.fileno())], env=env, pass_fds=[sock.fileno()], stdout=log,
                                stderr=subprocess.STDOUT)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5).status_code == 200:
                return proc, port
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit("terminal daemon did not start")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--calls", type=int, default=5, help="calls of each kind per round")
    ap.add_argument("--cardlib", nargs=2, metavar=("USER_READER", "PSAM_READER"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.cardlib:
        return cardlib_client(*a.cardlib)

    from sim import pcsc_stack
    from sim.personalize import issue_sample
    from sim.psam import SimPsam
    from sim.vicc import VirtualCardLink
    from sscard.stack import start_centre

    if not pcsc_stack.available() or pcsc_stack.running_pid() is not None:
        print("needs pcscd + vsmartcard-vpcd installed and no other pcscd running")
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="sscard-bench-bridge-"))
    centre = start_centre(workdir)
    with pcsc_stack.Pcscd(workdir=workdir / "pcscd") as pcscd:
        user = VirtualCardLink(issue_sample("zhang_san"), pcscd.port)
        psam = VirtualCardLink(SimPsam(), pcscd.port + 1)
        user.insert()
        psam.insert()
        wait_present(list(pcscd.readers))
        proc, port = start_daemon(workdir, centre, pcscd.readers)
        client = subprocess.Popen([sys.executable, __file__, "--cardlib", *pcscd.readers], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        times: dict[str, list[float]] = {k: [] for k in PATHS}
        try:
            with connect(f"ws://127.0.0.1:{port}/v1/bridge/ws?access_token={PAGE}") as ws, \
                    httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as api:

                def over_ws(n: int) -> tuple[float, str]:
                    t0 = time.perf_counter()
                    for _ in range(n):
                        ws.send(CALL)
                        answer = json.loads(ws.recv(timeout=30))
                        assert answer["result"] == 0, answer
                    return (time.perf_counter() - t0) / n, answer["pOutInfo"]

                def over_http(n: int) -> tuple[float, str]:
                    t0 = time.perf_counter()
                    for _ in range(n):
                        answer = api.post("/v1/bridge", content=CALL,
                                          headers={"Authorization": f"Bearer {TOKEN}"}).json()
                        assert answer["result"] == 0, answer
                    return (time.perf_counter() - t0) / n, answer["pOutInfo"]

                def cardlib(kind: str):
                    def run(n: int) -> tuple[float, str]:
                        assert client.stdin is not None and client.stdout is not None
                        client.stdin.write(f"{kind} {n}\n")
                        client.stdin.flush()
                        seconds, out = client.stdout.readline().split(" ", 1)
                        return float(seconds), out.rstrip("\n")
                    return run

                fns = dict(zip(PATHS, (over_ws, over_http, cardlib("dll"), cardlib("read")), strict=True))
                outs = {name: fn(10)[1] for name, fn in fns.items()}  # warm up
                assert len(set(outs.values())) == 1, outs  # every path gives the same national string
                apdus = {}
                for name, fn in fns.items():
                    before = user.apdus, psam.apdus
                    fn(1)
                    apdus[name] = (user.apdus - before[0], psam.apdus - before[1])
                for r in range(a.rounds):
                    for name in (PATHS if r % 2 == 0 else PATHS[::-1]):
                        times[name].append(fns[name](a.calls)[0])
        finally:
            if client.stdin is not None:
                client.stdin.close()
            client.wait(15)
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
            user.remove()
            psam.remove()
    centre.stop()
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}

    def ratio(x: str, y: str) -> float:
        return statistics.median(p / q for p, q in zip(times[x], times[y], strict=True))

    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {a.rounds} rounds x {a.calls} calls "
          f"of each, card behind pcscd, PSAM in slot 1")
    print("APDUs per call (card + PSAM): " + ", ".join(f"{k} {c} + {q}" for k, (c, q) in apdus.items()))
    print(f"whole: iReadCardBas over WebSocket (what a page does)   {med['ws']:6.2f} ms per call")
    print(f"       iReadCardBas over HTTP                           {med['http']:6.2f} ms "
          f"(HTTP/WS {ratio('http', 'ws'):.2f})")
    print(f"part:  cardlib alone, the same card work (read + IA)    {med['dll']:6.2f} ms "
          f"(WS/cardlib {ratio('ws', 'dll'):.2f}: the daemon and the page's transport add "
          f"{med['ws'] - med['dll']:.2f} ms)")
    print(f"part:  cardlib connect() + read_basic() alone           {med['read']:6.2f} ms "
          f"(WS/read_basic {ratio('ws', 'read'):.2f}; internal authentication with the PSAM "
          f"{med['dll'] - med['read']:.2f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
