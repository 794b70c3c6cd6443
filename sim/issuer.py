"""The card issuer's keys, for simulated cards and PSAMs.

An `Issuer` holds one master key per key type (IAK, EAK, CMK, MAK_DF0x, PUK, PRK) for each cipher
suite, in memory only: fresh random keys each run unless given (a test may pass its own). Each card gets
keys diversified from its card identification code (`card_keys()`); a PSAM is loaded with the masters.
A counterfeit is a card issued by another Issuer: same data, wrong keys.

It also holds the terminal PIN key (PIK) of each suite: loaded into every PSAM at personalisation (the
PSAM's PIN ENCIPHER, see cardlib.psam) and, at the key ceremony, into the HSM, so a PIN block a PSAM
makes opens at the centre. The PIN verification key (PVK) is not here: it is generated inside the HSM
by `install_into_hsm` and never leaves it.
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

    def __init__(self, masters: dict[tuple[Suite, KeyType], bytes] | None = None, factor_offset: int = 8,
                 pin_keys: dict[Suite, bytes] | None = None) -> None:
        self.masters: dict[tuple[Suite, KeyType], bytes] = masters or {
            (s, kt): os.urandom(16) for s in Suite for kt in KeyType
        }
        self.factor_offset = factor_offset
        self.pin_keys: dict[Suite, bytes] = pin_keys if pin_keys is not None else {s: os.urandom(16) for s in Suite}

    def __repr__(self) -> str:  # never show key material
        return f"Issuer({len(self.masters)} master keys, {len(self.pin_keys)} PIN keys)"

    def master(self, suite: Suite | str, kt: KeyType) -> bytes:
        return self.masters[(Suite(suite), kt)]

    def pin_key(self, suite: Suite | str) -> bytes:
        """The terminal PIN key (PIK) of a suite; KeyError if this issuer has none for it."""
        return self.pin_keys[Suite(suite)]

    def card_keys(self, card_id: bytes, suite: Suite | str) -> CardKeys:
        cs = suite_for(suite)
        d = factor(card_id, self.factor_offset)
        return CardKeys(cs, {kt: cs.diversify(self.master(cs.suite, kt), d) for kt in KeyType})


#: One issuer for a whole process by default, so sample cards and sample PSAMs agree.
DEFAULT_ISSUER = Issuer()


def hsm_label(suite: Suite | str, kt: KeyType, prefix: str = "SSSE") -> str:
    """The HSM label of an issuer master key, e.g. 'SSSE-3DES-EAK'."""
    return f"{prefix}-{Suite(suite).value}-{kt.name}"


def pik_label(suite: Suite | str, prefix: str = "SSSE") -> str:
    """The HSM label of the terminal PIN key of a suite, e.g. 'SSSE-SM4-PIK'."""
    return f"{prefix}-{Suite(suite).value}-PIK"


#: The suite of the PIN verification key (HMAC-SM3 references).
PVK_SUITE = Suite.SM4


def pvk_label(prefix: str = "SSSE") -> str:
    """The HSM label of the PIN verification key: 'SSSE-SM4-PVK'."""
    return f"{prefix}-{PVK_SUITE.value}-PVK"


def install_into_hsm(issuer: Issuer, hsm, load_kek, prefix: str = "SSSE") -> list[str]:
    """Key ceremony: put the issuer's master keys into an HSM without a clear key crossing its interface.

    For each suite a fresh transport KEK is entered at the HSM's console (`load_kek(label, suite,
    components, kcv)`, e.g. `KeyStore.load_components` with key type KEK); each master key then travels
    ECB-encrypted under it through `hsm.import_key` (the HsmApi call, local or over TCP), checked by KCV.
    The HSM's diversification rule follows the issuer's factor offset.

    PIN keys: the issuer's terminal PIN key of each suite travels the same way (`<prefix>-<suite>-PIK`,
    type PIK; the PSAMs hold the same key), and the PIN verification key `<prefix>-SM4-PVK` is generated
    inside the HSM, once (a second ceremony on the same HSM keeps it, so references stay valid).
    Returns the labels imported or generated.
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
        if suite in issuer.pin_keys:
            pik = issuer.pin_key(suite)
            label = pik_label(suite, prefix)
            hsm.import_key(label, "PIK", suite.value, kek_label, cs.encrypt(kek, pik), cs.kcv(pik))
            labels.append(label)
    pvk = pvk_label(prefix)
    if not any(k.label == pvk for k in hsm.list_keys(pvk)):
        hsm.generate_key(pvk, "PVK", PVK_SUITE.value)
    labels.append(pvk)
    return labels
