"""Fault injection for the simulated card: what a hostile or failing card does, on demand.

Arm a `Fault` on a card (`card.faults.arm(Fault("garbage", ins=0xB2))`); it fires on the matching APDU
after `after` matching APDUs, `count` times (0 = forever).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

FaultKind = Literal["garbage", "truncate", "sw", "slow", "pull", "mute", "no_sw"]


@dataclass
class Fault:
    """One armed fault.

    garbage : replace the response with random bytes (still >= 2 bytes)
    truncate: cut the response to `length` bytes (default 1: no complete SW)
    no_sw   : drop the status word, keep the data
    sw      : answer with status word `sw` and no data
    slow    : answer after `delay` seconds
    pull    : the card is pulled while processing (the reader sees it removed)
    mute    : the card never answers (in-process: TimeoutError)
    """

    kind: FaultKind
    ins: int | None = None  # only APDUs with this INS (None: any)
    after: int = 0  # let this many matching APDUs through first
    count: int = 1  # fire this many times; 0 = every time
    sw: int = 0x6F00
    delay: float = 0.0
    length: int = 1
    fired: int = 0
    seen: int = 0

    def matches(self, apdu: bytes) -> bool:
        if self.ins is not None and (len(apdu) < 2 or apdu[1] != self.ins):
            return False
        self.seen += 1
        if self.seen <= self.after:
            return False
        return self.count == 0 or self.fired < self.count


@dataclass
class FaultSet:
    """The faults armed on one card."""

    armed: list[Fault] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(7816))

    def arm(self, fault: Fault) -> Fault:
        self.armed.append(fault)
        return fault

    def clear(self) -> None:
        self.armed.clear()

    def pick(self, apdu: bytes) -> Fault | None:
        """The first armed fault that fires on this APDU (its counter is advanced)."""
        for f in self.armed:
            if f.matches(apdu):
                f.fired += 1
                return f
        return None

    def garbage(self) -> bytes:
        n = self.rng.randint(2, 40)
        return bytes(self.rng.getrandbits(8) for _ in range(n))
