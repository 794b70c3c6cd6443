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
| PIN encipher | 80 F8 00 <suite> 10 <PIN field (8)> <PAN field (8)> 00 | PIN block under the PIK (8/16 bytes) |

PIN ENCIPHER turns the PIN the holder typed into an ISO 9564 format-0 PIN block under the terminal PIN
key (PIK) of the suite, loaded at personalisation and shared with the centre's HSM (`SSSE-<suite>-PIK`).
The terminal sends the two format-0 fields, never a clear block: PIN field = nibbles 0, PIN length
(4..12), the PIN digits, F to 16 nibbles; PAN field = 4 zero nibbles and the 12 rightmost PAN digits
without the check digit. The PSAM checks both (6A80 otherwise), XORs them (for SM4 both fields are
widened to 32 nibbles, PIN field with F, PAN field with leading zeros, as `hsm_mock.pinblock` does) and
answers E(PIK, block): 8 bytes for 3DES, 16 for SM4. 6A88: no PIK of that suite; 6A86: bad P1/P2.
Nothing of the PIN stays in the PSAM.
"""

from __future__ import annotations

import hmac

from cardlib.apdu import CardChannel, CommandAPDU
from cardlib.crypto import factor, suite_for
from cardlib.errors import MalformedResponse, SecurityModuleError, StatusError
from cardlib.layout import KeyType
from cardlib.readers.base import Reader

SUITE_CODES = {"3DES": 0x01, "SM4": 0x02}
INS_PIN_ENCIPHER = 0xF8
PIN_BLOCK_SIZES = {"3DES": 8, "SM4": 16}


def pin_field(pin: str) -> bytes:
    """The 8-byte ISO 9564 format-0 PIN field: 0, length, digits, F padding. ValueError if not 4..12 digits."""
    if not isinstance(pin, str) or not (pin.isascii() and pin.isdigit()) or not 4 <= len(pin) <= 12:
        raise ValueError("a PIN is 4 to 12 digits")
    return bytes.fromhex(f"0{len(pin):X}{pin}".ljust(16, "F"))


def pan_field(pan: str) -> bytes:
    """The 8-byte format-0 PAN field: 4 zero nibbles, the 12 rightmost PAN digits without the last (check)
    digit, left-padded with 0. ValueError if the PAN is not 2..19 digits."""
    if not isinstance(pan, str) or not (pan.isascii() and pan.isdigit()) or not 2 <= len(pan) <= 19:
        raise ValueError("a PAN is 2 to 19 digits")
    return bytes.fromhex(pan[:-1][-12:].rjust(16, "0"))


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

    def encipher_pin(self, pin: str, pan: str, suite: str = "SM4") -> bytes:
        """PIN ENCIPHER: the format-0 PIN block of `pin` for `pan` under the PSAM's PIK of `suite` (8 bytes
        for 3DES, 16 for SM4). ValueError for a PIN or PAN that is not digits of the right length."""
        data = pin_field(pin) + pan_field(pan)
        out = self._check(CommandAPDU(0x80, INS_PIN_ENCIPHER, 0x00, SUITE_CODES[suite], data, 256))
        if len(out) != PIN_BLOCK_SIZES[suite]:
            raise MalformedResponse(f"PSAM PIN block is {len(out)} bytes, expected {PIN_BLOCK_SIZES[suite]}")
        return out


class PsamSecurity:
    """A `SecurityModule` backed by a PSAM. `factor_offset`: which card-id bytes form the diversification
    factor (region configuration). `regions`: region-code prefixes whose issuer keys this PSAM holds (e.g.
    {"11"} for Beijing's cards); a card from elsewhere gets SecurityModuleError, so the terminal can turn to
    the centre's HSM instead of wrongly calling the card a counterfeit. None: every card. `pin_suite`: the
    suite of the PIN key the PIN blocks are made under ("SM4": 16-byte blocks; "3DES": 8)."""

    def __init__(self, psam: Psam, factor_offset: int = 8, regions: set[str] | None = None,
                 pin_suite: str = "SM4") -> None:
        if pin_suite not in SUITE_CODES:
            raise ValueError(f"unknown PIN key suite {pin_suite!r}; use 3DES or SM4")
        self.psam = psam
        self.factor_offset = factor_offset
        self.regions = regions
        self.pin_suite = pin_suite

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

    def pin_block(self, pin: str, pan: str) -> bytes:
        return self.psam.encipher_pin(pin, pan, self.pin_suite)
