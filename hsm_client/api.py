"""The HSM interface: `HsmApi`, implemented over TCP by `hsm_client.client.HsmClient` (a production
terminal or centre talks to its HSM this way) and in-process by the mock's `hsm_mock.commands.LocalHsm`, and
the value types its methods return (never clear key or PIN material).

Key references are strings: `"label"` names the newest version of a key, `"label@N"` version N.
Verifications return None on success and raise `VerificationFailed` (code "01") otherwise, so a failed
check cannot be ignored by accident.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable


class Suite(StrEnum):
    """The cipher suite a key belongs to."""

    DES3 = "3DES"
    SM4 = "SM4"


class KeyType(StrEnum):
    """What a key may be used for; every command checks it."""

    MK = "MK"  # issuer master key: card keys are diversified from it (ext/int auth, maintenance/MAC)
    MAK = "MAK"  # MAC key (host messages)
    PIK = "PIK"  # PIN encryption key (PIN blocks travel under it)
    PVK = "PVK"  # PIN verification key (keys the one-way PIN reference)
    KEK = "KEK"  # key-encrypting key (import, and export of diversified card keys)


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A key's public description: everything but the key."""

    label: str
    version: int
    key_type: KeyType
    suite: Suite
    kcv: bytes
    div_rule: str  # diversification factor rule (MK only, "" otherwise); see hsm_mock/factors.py
    created: float  # Unix time

    @property
    def ref(self) -> str:
        return f"{self.label}@{self.version}"


@dataclass(frozen=True, slots=True)
class DiversifiedKey:
    """A card key as the HSM hands it out: its KCV, and the key under a KEK (ECB) if one was named."""

    kcv: bytes
    under_kek: bytes | None


@runtime_checkable
class HsmApi(Protocol):
    """Commands of the mock HSM. `mk` names an MK, `card_id` is the 16-byte card identification code."""

    def ping(self) -> str:
        """The HSM's version string."""
        ...

    # ---- key management -----------------------------------------------------------------------------
    def generate_key(
        self, label: str, key_type: KeyType | str, suite: Suite | str, div_rule: str = ""
    ) -> KeyInfo:
        """A new random key (the next version of `label`)."""
        ...

    def import_key(
        self,
        label: str,
        key_type: KeyType | str,
        suite: Suite | str,
        kek: str,
        encrypted_key: bytes,
        kcv: bytes,
        div_rule: str = "",
    ) -> KeyInfo:
        """A key that arrives ECB-encrypted under a KEK of the same suite; `kcv` must match."""
        ...

    def list_keys(self, prefix: str = "") -> list[KeyInfo]:
        """All key versions whose label starts with `prefix`."""
        ...

    def delete_key(self, ref: str) -> int:
        """Delete one version ("label@N") or all versions ("label"); returns how many were deleted."""
        ...

    # ---- card keys ----------------------------------------------------------------------------------
    def diversify(self, mk: str, card_id: bytes, kek: str = "") -> DiversifiedKey:
        """The card key's KCV, and the card key under `kek` if given."""
        ...

    def ext_auth_cryptogram(self, mk: str, card_id: bytes, challenge: bytes) -> bytes:
        """E(card key, challenge): the terminal's EXTERNAL AUTHENTICATE data (one block)."""
        ...

    def verify_ext_auth(self, mk: str, card_id: bytes, challenge: bytes, cryptogram: bytes) -> None:
        """Check an external-authentication cryptogram."""
        ...

    def verify_int_auth(self, mk: str, card_id: bytes, terminal_random: bytes, response: bytes) -> None:
        """Check a card's INTERNAL AUTHENTICATE response = E(card key, terminal random)."""
        ...

    def session_mac(
        self, mk: str, card_id: bytes, challenge: bytes, message: bytes, mac_len: int = 4
    ) -> bytes:
        """MAC for a protected write: card key from `mk`, IV = the card's challenge."""
        ...

    def verify_session_mac(
        self, mk: str, card_id: bytes, challenge: bytes, message: bytes, mac: bytes
    ) -> None:
        """Check a protected-write MAC (leftmost len(mac) bytes)."""
        ...

    # ---- MACs under stored keys ---------------------------------------------------------------------
    def generate_mac(self, key: str, data: bytes, iv: bytes = b"", mac_len: int = 4) -> bytes:
        """MAC under a stored MAK (3DES retail MAC or SM4 CBC-MAC); empty iv = zero IV."""
        ...

    def verify_mac(self, key: str, data: bytes, mac: bytes, iv: bytes = b"") -> None:
        """Check a MAC under a stored MAK."""
        ...

    # ---- PINs ---------------------------------------------------------------------------------------
    def encrypt_pin(self, pik: str, pin: str, pan: str) -> bytes:
        """The ISO 9564 format-0 block of a clear PIN (4..12 digits) under `pik` (8 bytes for a 3DES PIK,
        16 for SM4): a PIN pad's job, for a terminal without a PSAM. The PIN is neither kept nor audited."""
        ...

    def pin_reference(self, pik: str, pvk: str, pin_block: bytes, pan: str) -> bytes:
        """The one-way PIN reference (16 bytes) for a PIN block under `pik`, keyed by `pvk`."""
        ...

    def verify_pin(self, pik: str, pvk: str, pin_block: bytes, pan: str, reference: bytes) -> None:
        """Check a PIN block under `pik` against a stored PIN reference."""
        ...

    def translate_pin(self, src_pik: str, dst_pik: str, pin_block: bytes, pan: str) -> bytes:
        """Re-encrypt a PIN block from one PIN key to another (suites may differ)."""
        ...
