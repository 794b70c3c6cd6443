"""A card that plays an APDU trace back (cardlib.trace): a card that failed at a counter, reproduced in a test.

It answers with the trace's ATR, and each command with the answer recorded for it, in the recorded order.
A command that differs from the next recorded one (masked bytes, `**`, match anything: a trace never holds
the PIN) is refused as a real card refuses what it does not expect: 6D00 when the trace never used that
instruction, 6F00 otherwise; the mismatch is logged and kept in `mismatches`, and the card stays where it
was in the trace. A recorded transport failure is played back too: a timeout as a card that does not answer
(TimeoutError, see cardlib.readers.memory), anything else as a card that was pulled (ConnectionError).

Use it in-process (`MemoryReader(ReplayCard.load(path))`), behind vpcd (`VirtualCardLink(card, port)`,
`sscard sim run --replay TRACE`) or behind the simulated serial reader.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cardlib.trace import TraceRecord, ins_name, masked_hex, matches, read_trace

log = logging.getLogger(__name__)

SW_NOT_SUPPORTED = b"\x6d\x00"
SW_NO_DIAGNOSIS = b"\x6f\x00"
#: recorded transport errors that mean "the card said nothing" (the rest mean "the card went away")
SILENT_ERRORS = frozenset({"CardTimeout", "CardUnresponsive"})


class ReplayCard:
    """The card side (power_on / process / power_off) of a recorded trace."""

    def __init__(self, records: list[TraceRecord], name: str = "replay") -> None:
        atrs = [r.get("atr") for r in records if r.type in ("connect", "reconnect") and r.get("atr")]
        if not atrs:
            raise ValueError(f"trace {name} has no successful connect: no ATR to answer with")
        self.name = name
        self.label = f"the trace {name}"
        self.atr = bytes.fromhex(atrs[0])
        self.steps = [r for r in records if r.type == "apdu"]
        self.instructions = {r.get("c")[2:4] for r in self.steps}
        self.position = 0
        self.present = True
        self.powered = False
        self.mismatches: list[str] = []

    @classmethod
    def load(cls, path: str | Path) -> ReplayCard:
        return cls(read_trace(path), name=str(path))

    @property
    def finished(self) -> bool:
        """Whether every recorded command was asked for."""
        return self.position == len(self.steps)

    def power_on(self) -> bytes:
        if not self.present:
            raise ConnectionError("card removed")
        self.powered = True
        return self.atr

    def power_off(self) -> None:
        self.powered = False

    def reinsert(self) -> None:
        self.present = True

    def process(self, apdu: bytes) -> bytes:
        if not self.present:
            raise ConnectionError("card removed")
        apdu = bytes(apdu)
        if self.position >= len(self.steps):
            return self._refuse(apdu, "the trace has no more commands")
        step = self.steps[self.position]
        expected = step.get("c")
        if not matches(expected, apdu):
            return self._refuse(apdu, f"expected {step.get('name') or ins_name(bytes.fromhex(expected[:4]))} "
                                      f"{expected}")
        self.position += 1
        error = step.get("error")
        if error in SILENT_ERRORS:
            raise TimeoutError(f"replayed {error}: {step.get('message', '')}")
        if error is not None:
            self.present = False
            raise ConnectionError(f"replayed {error}: {step.get('message', '')}")
        return bytes.fromhex(step.get("r"))

    def _refuse(self, apdu: bytes, why: str) -> bytes:
        n = self.position + 1
        message = f"{self.name}: command {n} {ins_name(apdu)} {masked_hex(apdu)} differs from the trace: {why}"
        log.warning(message)
        self.mismatches.append(message)
        return SW_NO_DIAGNOSIS if apdu[1:2].hex().upper() in self.instructions else SW_NOT_SUPPORTED
