"""The PSAM: the terminal's security module card in the reader's second slot.

It holds the issuer's master keys and derives each card's keys from the card identification code, so
the terminal can authenticate cards and MAC writes without ever holding a key. Commands (the same shape
as field PSAMs; exact codes are ours, see sim/psam.py for the card side):

| command | APDU | answer |
|---|---|---|
| terminal number | 00 B0 96 00 06 (READ BINARY, SFI 16) | 6 bytes BCD = 12 digits |
| random | 00 84 00 00 Le | Le random bytes |
| deliver key | 80 1A <key type> <suite: 01 3DES, 02 SM4> 08 <factor> | 9000: the card key is the working key |
| encrypt | 80 FA 00 00 Lc <whole blocks> | E(working key, data) |
| MAC | 80 FA 05 00 Lc <IV (one block)> <message> | 4-byte MAC (the PSAM pads) |
"""

from __future__ import annotations

import hmac

from cardlib.apdu import CardChannel, CommandAPDU
from cardlib.crypto import factor, suite_for
from cardlib.errors import MalformedResponse, SecurityModuleError, StatusError
from cardlib.layout import KeyType
from cardlib.readers.base import Reader

SUITE_CODES = {"3DES": 0x01, "SM4": 0x02}


class Psam:
    """PSAM commands over a reader."""

    def __init__(self, reader: Reader, *, channel: CardChannel | None = None) -> None:
        self.reader = reader
        self.channel = channel or CardChannel(reader)
        self._terminal_number: str | None = None
        self._connected = False

    def connect(self) -> bytes:
        atr = self.reader.connect()
        self._connected = True
        return atr

    def _ensure(self) -> None:
        if not self._connected:
            self.connect()

    def _check(self, cmd: CommandAPDU) -> bytes:
        self._ensure()
        try:
            return self.channel.check(cmd)
        except StatusError as e:
            raise SecurityModuleError(f"PSAM refused {cmd.ins:02X}: {e}") from e

    def terminal_number(self) -> str:
        """The PSAM's 12-digit terminal number (read once, then cached)."""
        if self._terminal_number is None:
            raw = self._check(CommandAPDU(0x00, 0xB0, 0x96, 0x00, b"", 6))
            digits = raw.hex().upper()
            if len(raw) != 6 or not digits.isdigit():
                raise MalformedResponse(f"PSAM terminal number is not 12 BCD digits: {digits}")
            self._terminal_number = digits
        return self._terminal_number

    def random(self, n: int) -> bytes:
        raw = self._check(CommandAPDU(0x00, 0x84, 0x00, 0x00, b"", n))
        if len(raw) != n:
            raise MalformedResponse(f"PSAM gave {len(raw)} random bytes, asked {n}")
        return raw

    def deliver_key(self, key: KeyType, suite: str, factor8: bytes) -> None:
        """Make the card key (diversified from `key`'s master with `factor8`) the working key."""
        self._check(CommandAPDU(0x80, 0x1A, key.value, SUITE_CODES[suite], factor8))

    def encrypt(self, data: bytes) -> bytes:
        out = self._check(CommandAPDU(0x80, 0xFA, 0x00, 0x00, data, 256))
        if len(out) != len(data):
            raise MalformedResponse(f"PSAM encrypted {len(data)} bytes into {len(out)}")
        return out

    def mac(self, iv: bytes, message: bytes) -> bytes:
        out = self._check(CommandAPDU(0x80, 0xFA, 0x05, 0x00, iv + message, 256))
        if len(out) != 4:
            raise MalformedResponse(f"PSAM MAC is {len(out)} bytes, expected 4")
        return out


class PsamSecurity:
    """A `SecurityModule` backed by a PSAM. `factor_offset`: which card-id bytes form the diversification
    factor (region configuration). `regions`: region-code prefixes whose issuer keys this PSAM holds (e.g.
    {"11"} for Beijing's cards); a card from elsewhere gets SecurityModuleError, so the terminal can turn to
    the centre's HSM instead of wrongly calling the card a counterfeit. None: every card."""

    def __init__(self, psam: Psam, factor_offset: int = 8, regions: set[str] | None = None) -> None:
        self.psam = psam
        self.factor_offset = factor_offset
        self.regions = regions

    def _load(self, key: KeyType, card_id: bytes, suite: str) -> None:
        region = card_id[:3].hex().upper()
        if self.regions is not None and not any(region.startswith(p) for p in self.regions):
            raise SecurityModuleError(f"this PSAM holds no keys for cards of region {region}")
        self.psam.deliver_key(key, suite, factor(card_id, self.factor_offset))

    def external_auth_cryptogram(self, card_id: bytes, suite: str, challenge: bytes) -> bytes:
        self._load(KeyType.EAK, card_id, suite)
        return self.psam.encrypt(suite_for(suite).iv(challenge))

    def terminal_random(self, suite: str) -> bytes:
        return self.psam.random(suite_for(suite).block)

    def verify_internal_auth(self, card_id: bytes, suite: str, random: bytes, response: bytes) -> bool:
        self._load(KeyType.IAK, card_id, suite)
        return hmac.compare_digest(self.psam.encrypt(random), response)

    def command_mac(
        self, key: KeyType, card_id: bytes, suite: str, challenge: bytes, header: bytes, data: bytes
    ) -> bytes:
        self._load(key, card_id, suite)
        message = header + bytes([len(data) + 4]) + data
        return self.psam.mac(suite_for(suite).iv(challenge), message)
