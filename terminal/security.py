"""The centre's HSM as the terminal's security module (the national interface's two-step HSM variant).

When the PSAM cannot handle a card (another province's keys) the terminal sends the card's data and
challenges to the HSM and gets cryptograms and MACs back. `HsmSecurity` wraps any `HsmApi` (in-process
`LocalHsm` or the TCP `HsmClient`) into cardlib's `SecurityModule`, so the card code is the same either way.
Master keys are named `<prefix>-<suite>-<key type>` (see sim.issuer.hsm_label).

PIN blocks: with no PSAM, the PIN the holder typed goes to the HSM's `encrypt_pin` (host command BA) and
comes back as a format-0 block under the terminal PIN key `<prefix>-<pin_suite>-PIK`, the same key the
PSAMs hold, so the centre verifies it either way. The clear PIN crosses the HSM link once (in production
that link is a protected channel, or the PIN pad itself encrypts); it is never logged or kept.
"""

from __future__ import annotations

import os

from cardlib.crypto import suite_for
from cardlib.errors import SecurityModuleError
from cardlib.layout import KeyType
from cardlib.psam import pan_field, pin_field
from hsm_client.api import HsmApi
from hsm_client.errors import HsmError, VerificationFailed


class HsmSecurity:
    """cardlib `SecurityModule` backed by the HSM; every HSM failure becomes a SecurityModuleError."""

    def __init__(self, hsm: HsmApi, prefix: str = "SSSE", pin_suite: str = "SM4") -> None:
        self.hsm = hsm
        self.prefix = prefix
        self.pin_suite = suite_for(pin_suite).suite.value

    def _label(self, suite: str, key: KeyType) -> str:
        return f"{self.prefix}-{suite_for(suite).suite.value}-{key.name}"

    def external_auth_cryptogram(self, card_id: bytes, suite: str, challenge: bytes) -> bytes:
        try:
            return self.hsm.ext_auth_cryptogram(self._label(suite, KeyType.EAK), card_id, challenge)
        except HsmError as e:
            raise SecurityModuleError(f"HSM could not make the external-authentication cryptogram: {e}") from e

    def terminal_random(self, suite: str) -> bytes:
        return os.urandom(suite_for(suite).block)

    def verify_internal_auth(self, card_id: bytes, suite: str, random: bytes, response: bytes) -> bool:
        try:
            self.hsm.verify_int_auth(self._label(suite, KeyType.IAK), card_id, random, response)
        except VerificationFailed:
            return False
        except HsmError as e:
            raise SecurityModuleError(f"HSM could not check the card's authentication: {e}") from e
        return True

    def command_mac(
        self, key: KeyType, card_id: bytes, suite: str, challenge: bytes, header: bytes, data: bytes
    ) -> bytes:
        message = header + bytes([len(data) + 4]) + data
        try:
            return self.hsm.session_mac(self._label(suite, key), card_id, challenge, message)
        except HsmError as e:
            raise SecurityModuleError(f"HSM could not MAC the command: {e}") from e

    def pin_block(self, pin: str, pan: str) -> bytes:
        pin_field(pin), pan_field(pan)  # ValueError before anything leaves the terminal
        try:
            return self.hsm.encrypt_pin(f"{self.prefix}-{self.pin_suite}-PIK", pin, pan)
        except HsmError as e:  # the message never quotes the PIN (hsm_client.errors)
            raise SecurityModuleError(f"HSM could not encipher the PIN: {e}") from e
