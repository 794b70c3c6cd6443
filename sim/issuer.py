"""The card issuer's keys, for simulated cards and PSAMs.

An `Issuer` holds one master key per key type (IAK, EAK, CMK, MAK_DF0x, PUK, PRK) for each cipher
suite, in memory only: fresh random keys each run unless given (a test may pass its own). Each card gets
keys diversified from its card identification code (`card_keys()`); a PSAM is loaded with the masters.
A counterfeit is a card issued by another Issuer: same data, wrong keys.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from cardlib.crypto import CipherSuite, Suite, factor, suite_for
from cardlib.layout import KeyType


@dataclass(frozen=True)
class CardKeys:
    """One card's diversified keys for one suite. Lives inside the simulated card only."""

    suite: CipherSuite
    keys: dict[KeyType, bytes] = field(repr=False)

    def __getitem__(self, kt: KeyType) -> bytes:
        return self.keys[kt]


class Issuer:
    """Master keys by (suite, key type). `factor_offset` picks the diversification bytes of the card id."""

    def __init__(self, masters: dict[tuple[Suite, KeyType], bytes] | None = None, factor_offset: int = 8) -> None:
        self.masters: dict[tuple[Suite, KeyType], bytes] = masters or {
            (s, kt): os.urandom(16) for s in Suite for kt in KeyType
        }
        self.factor_offset = factor_offset

    def __repr__(self) -> str:  # never show key material
        return f"Issuer({len(self.masters)} master keys)"

    def master(self, suite: Suite | str, kt: KeyType) -> bytes:
        return self.masters[(Suite(suite), kt)]

    def card_keys(self, card_id: bytes, suite: Suite | str) -> CardKeys:
        cs = suite_for(suite)
        d = factor(card_id, self.factor_offset)
        return CardKeys(cs, {kt: cs.diversify(self.master(cs.suite, kt), d) for kt in KeyType})


#: One issuer for a whole process by default, so sample cards and sample PSAMs agree.
DEFAULT_ISSUER = Issuer()
