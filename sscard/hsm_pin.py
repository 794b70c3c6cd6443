"""The centre's online PIN check over its HSM: settlement's `PinVerifier` protocol met by an hsm_mock `HsmApi`.

Composition code (like sscard/stack.py): settlement defines what it needs (settlement.schemes.identity.PinVerifier)
and imports no other layer; this adapter is where the two meet.
"""

from __future__ import annotations

from typing import Any

from hsm_client.errors import HsmError, PinBlockError, VerificationFailed
from settlement.errors import PinCheckUnavailable
from settlement.schemes.identity import PinCheck


class HsmPinVerifier:
    """The centre's `PinVerifier` over its HSM (an hsm_mock `HsmApi`: `LocalHsm` or `HsmClient`).

    Labels follow the issuer's key ceremony (sim.issuer.install_into_hsm): the terminal PIN key is chosen
    by the block's length, `<prefix>-3DES-PIK` for 8 bytes and `<prefix>-SM4-PIK` for 16; the PIN
    verification key is `<prefix>-SM4-PVK`. The HSM opens the block and compares inside itself.
    """

    def __init__(self, hsm: Any, prefix: str = "SSSE") -> None:
        self.hsm = hsm
        self.prefix = prefix

    def pik(self, pin_block: bytes) -> str:
        return f"{self.prefix}-{'3DES' if len(pin_block) == 8 else 'SM4'}-PIK"

    @property
    def pvk(self) -> str:
        return f"{self.prefix}-SM4-PVK"

    def verify(self, pin_block: bytes, pan: str, reference: bytes) -> PinCheck:
        try:
            self.hsm.verify_pin(self.pik(pin_block), self.pvk, pin_block, pan, reference)
        except VerificationFailed:
            return PinCheck.WRONG
        except PinBlockError:
            return PinCheck.UNREADABLE
        except HsmError as e:  # HSM down, key missing: the outcome is unknown, record nothing
            raise PinCheckUnavailable(f"the HSM could not check the PIN block (error {e.code}: {e})",
                                      hsm_error=e.code) from e
        return PinCheck.MATCH

    def reference(self, pin_block: bytes, pan: str) -> bytes:
        """The PIN reference of a block (enrolment at issuance, or after a PIN change)."""
        return self.hsm.pin_reference(self.pik(pin_block), self.pvk, pin_block, pan)
