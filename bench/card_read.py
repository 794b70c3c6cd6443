"""Benchmark `read_basic()`: APDU count, time in-process and through pcscd, and cardlib's overhead over bare pyscard.

Prints the APDUs read_basic() sends (target <= 14, one SELECT), the time per read_basic() in-process and
through the real pcscd + vpcd stack, and the ratio of cardlib's time through pcscd to bare pyscard sending
    lib, rd, py, sc, tr = (statistics.median(x) for x in (t_lib, t_rd, t_py, t_sc, t_tr))
    ratio = statistics.median(x / y for x, y in zip(t_lib, t_py, strict=True))

Then a third-generation card that refuses EF06 until the terminal authenticates (li_si with
ef06_requires_auth, T=0): the whole authenticate-then-read beside its parts (the same card's read when no
authentication is asked, the terminal authentication alone), with the PSAM on vpcd slot 1 and with the mock
HSM over TCP. Each round resets the card first (it forgets the authentication), as a new visit would. The
card, the PSAM and the HSM server run as threads of this process so they share one issuer's keys.

Run: .venv/bin/python bench/card_read.py [--rounds 300] [--reads 5] [--auth-rounds 200]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# bench/terminal.py would shadow the `terminal` package (its HSM security module): keep bench/ off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from cardlib.apdu import CardChannel  # noqa: E402
from cardlib.card import SocialSecurityCard  # noqa: E402
from cardlib.readers.memory import MemoryReader  # noqa: E402
from cardlib.readers.pcsc import wait_present  # noqa: E402
from cardlib.trace import TraceWriter, TracingReader  # noqa: E402
from sim import pcsc_stack  # noqa: E402
from sim.personalize import issue_sample  # noqa: E402


def per_call(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--reads", type=int, default=5, help="read_basic() calls per round")
    ap.add_argument("--auth-rounds", type=int, default=200, help="authenticate-then-read rounds per module")
    a = ap.parse_args()
    ok = True

    # APDU economy: what read_basic sends on a fresh card.
    reader = MemoryReader(issue_sample("zhang_san"))
    card = SocialSecurityCard(reader, channel=CardChannel(reader, log=[]))
    card.read_basic()
    sequence = [c for c, _ in card.channel.log]
    selects = sum(1 for c in sequence if c[1] == 0xA4)
    print(f"APDUs per read_basic(): {len(sequence)} ({selects} SELECT)  target <= 14, 1 SELECT: "
          f"{'PASS' if len(sequence) <= 14 and selects == 1 else 'FAIL'}")
    ok &= len(sequence) <= 14 and selects == 1

    def in_process() -> None:
        SocialSecurityCard(reader, connected=True).read_basic()

    reader.connect()
    t_mem = statistics.median(per_call(in_process, 100) for _ in range(30))
    print(f"read_basic() in-process: {t_mem * 1e6:8.1f} us")

    if not pcsc_stack.available():
        print("pcscd + vpcd not installed: PC/SC figures skipped (make test installs them)")
        return 0 if ok else 1
    from smartcard import scard
    from smartcard.System import readers as pyscard_readers

    from cardlib.readers.pcsc import PcscReader

    with pcsc_stack.Pcscd() as stack, tempfile.TemporaryFile("w+", encoding="utf-8") as trace_out:
        # The card runs in its own process, as a real card is its own device: its work does not share
        # this process's GIL with the code being measured.
        card_proc = subprocess.Popen(
            [sys.executable, "-m", "sscard.cli", "sim", "run", "--holder", "zhang_san", "--port", str(stack.port)],
            stdout=subprocess.DEVNULL,
        )
        name = stack.readers[0]
        wait_present([name])
        ours = PcscReader(name)
        ours.connect()
        (pr,) = [r for r in pyscard_readers() if str(r) == name]
        bare = pr.createConnection()
        bare.connect()
        lists = [list(c) for c in sequence]
        hcard, pci = ours._card, ours._pci  # the same card handle, for the raw-scard reference
        traced = TracingReader(ours, TraceWriter(trace_out, reader=name))

        def cardlib_read() -> None:
            SocialSecurityCard(ours, connected=True).read_basic()

        def reader_read() -> None:
            for c in sequence:
                ours.transmit(c)

        def traced_read() -> None:
            SocialSecurityCard(traced, connected=True).read_basic()

        def pyscard_read() -> None:
            for c in lists:
                data, sw1, sw2 = bare.transmit(c)

        def scard_read() -> None:
            for c in lists:
                rv, resp = scard.SCardTransmit(hcard, pci, c)

        for f in (cardlib_read, reader_read, pyscard_read, scard_read, traced_read):
            per_call(f, 20)  # warm-up
        t_lib, t_rd, t_py, t_sc, t_tr = [], [], [], [], []
        for _ in range(a.rounds):
            t_lib.append(per_call(cardlib_read, a.reads))
            t_rd.append(per_call(reader_read, a.reads))
            t_py.append(per_call(pyscard_read, a.reads))
            t_sc.append(per_call(scard_read, a.reads))
            t_tr.append(per_call(traced_read, a.reads))
        trace_bytes = trace_out.tell()
        bare.disconnect()
        bare.release()
        ours.close()
        card_proc.terminate()
        card_proc.wait(10)
        wait_present([name], present=False)
        auth_lines = authenticate_then_read(stack, a.auth_rounds)
    lib, rd, py, sc, tr = (statistics.median(x) for x in (t_lib, t_rd, t_py, t_sc, t_tr))
    ratio = statistics.median(x / y for x, y in zip(t_lib, t_py, strict=True))
    print(f"read_basic() through pcscd (cardlib):       {lib * 1e3:7.3f} ms  ({lib / len(sequence) * 1e6:.0f} us/APDU)")
    print(f"same {len(sequence)} APDUs, PcscReader.transmit():  {rd * 1e3:7.3f} ms  (the transport alone)")
    print(f"same {len(sequence)} APDUs, bare pyscard transmit(): {py * 1e3:7.3f} ms")
    print(f"same {len(sequence)} APDUs, raw SCardTransmit():     {sc * 1e3:7.3f} ms")
    print(f"cardlib / bare pyscard: {ratio:.3f}  target <= 1.20: {'PASS' if ratio <= 1.20 else 'FAIL'}")
    print(f"cardlib / raw SCardTransmit: {statistics.median(x / y for x, y in zip(t_lib, t_sc, strict=True)):.3f}")
    print(f"cardlib / PcscReader.transmit (the card layer's share): "
          f"{statistics.median(x / y for x, y in zip(t_lib, t_rd, strict=True)):.3f}")
    print(f"pcscd / in-process: {lib / t_mem:.0f}x")
    reads = a.rounds * a.reads + 20
    print(f"read_basic() through pcscd, traced (--trace): {tr * 1e3:7.3f} ms  (+{(tr - lib) * 1e6:.0f} us per read, "
          f"{tr / lib - 1:+.1%}; {trace_bytes / reads / 1e3:.1f} kB of trace per read)")
    ok &= ratio <= 1.20
    for line in auth_lines:
        print(line)
    return 0 if ok else 1


def authenticate_then_read(stack: pcsc_stack.Pcscd, rounds: int) -> list[str]:
    """A v3 card refusing EF06 until EXTERNAL AUTHENTICATE, read with the PSAM and with the HSM over TCP."""
    from cardlib.psam import Psam, PsamSecurity
    from cardlib.readers.pcsc import PcscReader
    from hsm_client.client import HsmClient
    from hsm_mock import KeyStore, Lmk, LocalHsm
    from hsm_mock.access import AccessPolicy
    from hsm_mock.server import ServerThread
    from sim.issuer import DEFAULT_ISSUER, install_into_hsm
    from sim.psam import SimPsam
    from sim.vicc import VirtualCardLink
    from terminal.security import HsmSecurity

    lmk = Lmk.ephemeral()
    store = KeyStore(lmk)
    hsm = LocalHsm(store)
    install_into_hsm(DEFAULT_ISSUER, hsm, lambda *x: store.load_components(x[0], "KEK", *x[1:]))
    access = AccessPolicy.of(lmk, {"T0001": "terminal"})
    user, second = stack.readers
    lines: list[str] = []
    with (ServerThread(hsm, access=access) as server,
          HsmClient(*server.address, credential=access.credential("T0001"), pool_size=1) as client):
        links = [VirtualCardLink(issue_sample("li_si", ef06_requires_auth=True), stack.port),
                 VirtualCardLink(SimPsam(), stack.port + 1)]
        for link in links:
            link.insert()
        wait_present([user, second])
        with PcscReader(user) as ur, PcscReader(second) as pr:
            psam = Psam(pr)
            modules = (("PSAM", PsamSecurity(psam)), ("HSM over TCP", HsmSecurity(client)))

            def round_(sm, what: str) -> tuple[float, int, int]:
                ur.reconnect()  # a fresh session: the card has forgotten any authentication
                card = SocialSecurityCard(ur, connected=True)
                if what == "auth":
                    card.identity()
                c0, p0 = card.apdu_count, psam.channel.apdu_count
                t0 = time.perf_counter()
                if what == "read":
                    card.read_basic(security=sm)
                else:
                    card.authenticate_terminal(sm)
                return time.perf_counter() - t0, card.apdu_count - c0, psam.channel.apdu_count - p0

            for label, sm in modules:
                for _ in range(10):
                    round_(sm, "read")  # warm-up
                reads, auths = [], []
                for _ in range(rounds):  # alternating, so noise hits both alike
                    reads.append(round_(sm, "read"))
                    auths.append(round_(sm, "auth"))
                t_read, t_auth = statistics.median(r[0] for r in reads), statistics.median(r[0] for r in auths)
                _, card_apdus, psam_apdus = reads[-1]
                extra = f" + {psam_apdus} PSAM APDUs" if label == "PSAM" else " + 1 HSM request"
                lines.append(f"v3 authenticate-then-read, {label}: {t_read * 1e3:7.3f} ms ({card_apdus} card APDUs"
                             f"{extra}); of which terminal authentication {t_auth * 1e3:.3f} ms")
        for link in links:
            link.remove()
    wait_present([user], present=False)
    link = VirtualCardLink(issue_sample("li_si"), stack.port)  # the same card when EF06 is open, for comparison
    link.insert()
    wait_present([user])
    with PcscReader(user) as ur:
        times = []
        for _ in range(rounds):
            ur.reconnect()
            card = SocialSecurityCard(ur, connected=True)
            t0 = time.perf_counter()
            card.read_basic()
            times.append(time.perf_counter() - t0)
        lines.append(f"v3 read_basic() when EF06 is open:        {statistics.median(times) * 1e3:7.3f} ms "
                     f"({card.apdu_count} APDUs)")
    link.remove()
    hsm.close()
    return lines


if __name__ == "__main__":
    sys.exit(main())
