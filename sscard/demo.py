"""`make demo`: put simulated cards behind the real PC/SC stack and read them as a counter would.

Starts our own pcscd with the vpcd driver when it is installed and no other pcscd is running (else reads
in-process), inserts two sample cards on the two slots, reads each card's basic data through PC/SC,
verifies one PIN, and prints the data and the national reader-interface string.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.table import Table

from cardlib.card import BasicInfo, SocialSecurityCard
from cardlib.readers.base import Reader
from cardlib.readers.memory import MemoryReader
from sim import pcsc_stack
from sim.personalize import issue_sample, load_holder, sample_holders

console = Console()
SAMPLES = ("zhang_san", "li_si")


def show(info: BasicInfo, how: str, ms: float, apdus: int) -> None:
    t = Table(title=f"{info.name} — read via {how} in {ms:.1f} ms, {apdus} APDUs", show_header=False)
    for k, v in info.to_dict().items():
        t.add_row(k, str(v))
    console.print(t)
    console.print("national form:", info.national("000000000001", "SIM-DEMO"))


def read_one(reader: Reader, how: str, pin: str) -> None:
    card = SocialSecurityCard(reader)
    t = time.perf_counter()
    info = card.read_basic()
    show(info, how, (time.perf_counter() - t) * 1000, card.apdu_count)
    card.verify_pin(pin)
    console.print(f"PIN verified on {info.name}'s card\n")


def main() -> int:
    pins = {s: load_holder(sample_holders()[s]).pin for s in SAMPLES}
    cards = {s: issue_sample(s) for s in SAMPLES}
    if pcsc_stack.available() and pcsc_stack.running_pid() is None:
        from cardlib.readers.pcsc import PcscReader, list_readers
        from sim.vicc import VirtualCardLink

        with pcsc_stack.Pcscd() as pcscd:
            console.print(f"pcscd started (pid {pcscd.proc.pid}); readers: {list_readers()}")
            links = [VirtualCardLink(cards[s], pcscd.port + i) for i, s in enumerate(SAMPLES)]
            for link in links:
                link.insert()
            pcsc_stack.wait_present(list(pcscd.readers))
            try:
                for name, s in zip(pcscd.readers, SAMPLES, strict=True):
                    reader = PcscReader(name)
                    try:
                        read_one(reader, f"PC/SC reader '{name}'", pins[s])
                    finally:
                        reader.close()
            finally:
                for link in links:
                    link.remove()
        console.print("pcscd stopped")
    else:
        why = "pcscd/vpcd not installed" if not pcsc_stack.available() else "another pcscd is running"
        console.print(f"[yellow]{why}: reading in-process[/yellow]")
        for s in SAMPLES:
            read_one(MemoryReader(cards[s]), "in-process reader", pins[s])
    return 0


if __name__ == "__main__":
    sys.exit(main())
