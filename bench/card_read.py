"""Benchmark `read_basic()`: APDU count, time in-process and through pcscd, and cardlib's overhead over bare pyscard.

Prints the APDUs read_basic() sends (target <= 14, one SELECT), the time per read_basic() in-process and
through the real pcscd + vpcd stack, and the ratio of cardlib's time through pcscd to bare pyscard sending
the same APDU sequence in the same run (target <= 1.20). Through pcscd the simulated card runs in its own
process (`sscard sim run`), as a real card is its own device. The two are measured in alternating rounds so
machine noise hits both alike; medians are reported.

Run: .venv/bin/python bench/card_read.py [--rounds 30] [--reads 50]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from cardlib.apdu import CardChannel
from cardlib.card import SocialSecurityCard
from cardlib.readers.memory import MemoryReader
from cardlib.readers.pcsc import wait_present
from sim import pcsc_stack
from sim.personalize import issue_sample


def per_call(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--reads", type=int, default=50, help="read_basic() calls per round")
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
    t_mem = statistics.median(per_call(in_process, a.reads * 4) for _ in range(a.rounds // 3 or 1))
    print(f"read_basic() in-process: {t_mem * 1e6:8.1f} us")

    if not pcsc_stack.available():
        print("pcscd + vpcd not installed: PC/SC figures skipped (make test installs them)")
        return 0 if ok else 1
    from smartcard import scard
    from smartcard.System import readers as pyscard_readers

    from cardlib.readers.pcsc import PcscReader

    with pcsc_stack.Pcscd() as stack:
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

        def cardlib_read() -> None:
            SocialSecurityCard(ours, connected=True).read_basic()

        def pyscard_read() -> None:
            for c in lists:
                data, sw1, sw2 = bare.transmit(c)

        def scard_read() -> None:
            for c in lists:
                rv, resp = scard.SCardTransmit(hcard, pci, c)

        for f in (cardlib_read, pyscard_read, scard_read):
            per_call(f, 20)  # warm-up
        t_lib, t_py, t_sc = [], [], []
        for _ in range(a.rounds):
            t_lib.append(per_call(cardlib_read, a.reads))
            t_py.append(per_call(pyscard_read, a.reads))
            t_sc.append(per_call(scard_read, a.reads))
        bare.disconnect()
        bare.release()
        ours.close()
        card_proc.terminate()
        card_proc.wait(10)
    lib, py, sc = (statistics.median(x) for x in (t_lib, t_py, t_sc))
    ratio = lib / py
    print(f"read_basic() through pcscd (cardlib):       {lib * 1e3:7.3f} ms  ({lib / len(sequence) * 1e6:.0f} us/APDU)")
    print(f"same {len(sequence)} APDUs, bare pyscard transmit(): {py * 1e3:7.3f} ms")
    print(f"same {len(sequence)} APDUs, raw SCardTransmit():     {sc * 1e3:7.3f} ms")
    print(f"cardlib / bare pyscard: {ratio:.3f}  target <= 1.20: {'PASS' if ratio <= 1.20 else 'FAIL'}")
    print(f"cardlib / raw SCardTransmit: {lib / sc:.3f}")
    print(f"pcscd / in-process: {lib / t_mem:.0f}x")
    ok &= ratio <= 1.20
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
