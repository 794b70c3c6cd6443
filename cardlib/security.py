"""What the card layer asks of a security module (a PSAM in the second slot, or the centre's HSM).

The terminal never holds card keys: it hands card data and challenges to a `SecurityModule` and gets
cryptograms and MACs back, and hands it the PIN the holder typed to get an encrypted PIN block for the
centre's online PIN check. `cardlib.psam.PsamSecurity` implements it with a PSAM; the terminal wraps
its HSM client in the same protocol (two-step HSM variant of the national interface).
"""

from __future__ import annotations

from typing import Protocol

from cardlib.layout import KeyType


class SecurityModule(Protocol):
    """Card cryptography without the card keys. `card_id` is the 16-byte card identification code,
    `suite` "3DES" or "SM4"."""

    def external_auth_cryptogram(self, card_id: bytes, suite: str, challenge: bytes) -> bytes:
        """E(card's EAK, challenge): proves the terminal to the card."""
        ...

    def terminal_random(self, suite: str) -> bytes:
        """A fresh random (one block) for the card's internal authentication."""
        ...

    def verify_internal_auth(self, card_id: bytes, suite: str, random: bytes, response: bytes) -> bool:
        """Whether `response` = E(card's IAK, random): the card is genuine."""
        ...

    def command_mac(
        self, key: KeyType, card_id: bytes, suite: str, challenge: bytes, header: bytes, data: bytes
    ) -> bytes:
        """The 4-byte MAC of a protected command under the card's `key`, IV = the card's challenge."""
        ...

    def pin_block(self, pin: str, pan: str) -> bytes:
        """The ISO 9564 format-0 PIN block of `pin` for `pan`, encrypted under the terminal PIN key (PIK)
        that the module shares with the centre's HSM: 8 bytes under a 3DES PIK, 16 under SM4. The clear
        PIN goes into the module's encipher command and nowhere else. ValueError for a PIN or PAN that is
        not digits of the right length; SecurityModuleError if the module cannot do it."""
        ...
