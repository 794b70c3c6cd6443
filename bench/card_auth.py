"""Benchmark the security path through pcscd: mutual authentication plus one MAC-protected record write.

The user card sits on vpcd slot 0 and the PSAM on slot 1, both simulated (as threads of this process, so
they share one issuer's keys); prints APDUs to each and the time per operation, per cipher suite.

Run: .venv/bin/python bench/card_auth.py [--n 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from cardlib import layout
from cardlib.card import SocialSecurityCard
from cardlib.psam import Psam, PsamSecurity
from cardlib.readers.pcsc import PcscReader, wait_present
from sim import pcsc_stack
from sim.personalize import issue_sample
from sim.psam import SimPsam
from sim.vicc import VirtualCardLink

TX = layout.DF04_TRANSACTIONS


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    a = ap.parse_args()
    if not pcsc_stack.available():
        print("pcscd + vpcd not installed (make test installs them)")
        return 1
    with pcsc_stack.Pcscd() as stack:
        psam_link = VirtualCardLink(SimPsam(), stack.port + 1)
        psam_link.insert()
        for stem, suite in (("zhang_san", "3DES"), ("li_si", "SM4")):
            link = VirtualCardLink(issue_sample(stem), stack.port)
            link.insert()
            wait_present(list(stack.readers))
            with PcscReader(stack.readers[0]) as ur, PcscReader(stack.readers[1]) as pr:
                card, psam = SocialSecurityCard(ur), Psam(pr)
                sm = PsamSecurity(psam)
                card.identity()
                auth_t, write_t = [], []
                c0 = p0 = 0
                for i in range(a.n + 10):
                    c0, p0 = card.apdu_count, psam.channel.apdu_count
                    t0 = time.perf_counter()
                    card.authenticate(sm)
                    t1 = time.perf_counter()
                    c1, p1 = card.apdu_count, psam.channel.apdu_count
                    card.append_record(sm, layout.DF04, TX, bytes([i & 0xFF]) * TX.record_length)
                    t2 = time.perf_counter()
                    c2, p2 = card.apdu_count, psam.channel.apdu_count
                    card.forget_selection()  # each round starts from SSSE, as a new visit would
                    card.select_ssse()
                    if i >= 10:
                        auth_t.append(t1 - t0)
                        write_t.append(t2 - t1)
            auth, write = statistics.median(auth_t), statistics.median(write_t)
            print(f"{suite}: mutual authentication {auth * 1e3:.2f} ms ({c1 - c0} card + {p1 - p0} PSAM APDUs); "
                  f"protected write {write * 1e3:.2f} ms ({c2 - c1} card + {p2 - p1} PSAM APDUs); "
                  f"together {(auth + write) * 1e3:.2f} ms, p99 "
                  f"{sorted(a_ + w_ for a_, w_ in zip(auth_t, write_t, strict=True))[int(0.99 * a.n)] * 1e3:.2f} ms")
            link.remove()
            wait_present([stack.readers[0]], present=False)
        psam_link.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
