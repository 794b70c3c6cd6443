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


def hsm_label(suite: Suite | str, kt: KeyType, prefix: str = "SSSE") -> str:
    """The HSM label of an issuer master key, e.g. 'SSSE-3DES-EAK'."""
    return f"{prefix}-{Suite(suite).value}-{kt.name}"


def install_into_hsm(issuer: Issuer, hsm, load_kek, prefix: str = "SSSE") -> list[str]:
    """Key ceremony: put the issuer's master keys into an HSM without a clear key crossing its interface.

    For each suite a fresh transport KEK is entered at the HSM's console (`load_kek(label, suite,
    components, kcv)`, e.g. `KeyStore.load_components` with key type KEK); each master key then travels
    ECB-encrypted under it through `hsm.import_key` (the HsmApi call, local or over TCP), checked by KCV.
    Returns the labels imported. The HSM's diversification rule follows the issuer's factor offset.
    """
    rule = "last8" if issuer.factor_offset == 8 else f"offset:{issuer.factor_offset}"
    labels = []
    for suite in Suite:
        cs = suite_for(suite)
        kek = os.urandom(16)
        kek_label = f"{prefix}-{suite.value}-TRANSPORT-KEK"
        load_kek(kek_label, suite.value, [kek, bytes(16)], cs.kcv(kek))
        for kt in KeyType:
            master = issuer.master(suite, kt)
            label = hsm_label(suite, kt, prefix)
            hsm.import_key(label, "MK", suite.value, kek_label, cs.encrypt(kek, master), cs.kcv(master), rule)
            labels.append(label)
    return labels
