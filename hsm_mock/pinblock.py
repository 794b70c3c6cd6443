"""ISO 9564-1 format-0 PIN blocks (ANSI X9.8), clear form; encryption happens in `hsm_mock.commands`.

- PIN field: nibble 0 (format), nibble PIN length (4..12), the PIN digits, F nibbles to the block end.
- PAN field: zero nibbles, then the 12 rightmost PAN digits excluding the check digit (left-padded with 0
  if the PAN is shorter).
- Clear PIN block = PIN field XOR PAN field.

For 3DES keys the block is 8 bytes (16 nibbles). For SM4 keys (16-byte blocks) we follow the common
Chinese bank-terminal practice: the same fields widened to 32 nibbles (PIN field F-padded to 32 nibbles,
PAN field 20 zero nibbles and the 12 PAN digits).
"""

from __future__ import annotations

from hsm_client.errors import InvalidInput, PinBlockError
from hsm_mock.suites import xor

MIN_PIN, MAX_PIN = 4, 12


def pan_digits(pan: str) -> str:
    """The 12 PAN digits that enter the PAN field (rightmost 12 excluding the check digit)."""
    if not (2 <= len(pan) <= 19 and pan.isascii() and pan.isdigit()):
        raise InvalidInput("PAN must be 2..19 decimal digits")
    return pan[:-1][-12:].rjust(12, "0")


def _pan_field(pan: str, size: int) -> bytes:
    return bytes.fromhex(pan_digits(pan).rjust(2 * size, "0"))


def encode_format0(pin: str, pan: str, size: int = 8) -> bytes:
    """The clear format-0 PIN block of `size` bytes (8 for 3DES, 16 for SM4)."""
    if not (MIN_PIN <= len(pin) <= MAX_PIN and pin.isascii() and pin.isdigit()):
        raise InvalidInput(f"PIN must be {MIN_PIN}..{MAX_PIN} decimal digits")
    if size not in (8, 16):
        raise InvalidInput("PIN block size is 8 or 16 bytes")
    pin_field = bytes.fromhex(f"0{len(pin):X}{pin}".ljust(2 * size, "F"))
    return xor(pin_field, _pan_field(pan, size))


def decode_format0(block: bytes, pan: str) -> str:
    """The PIN in a clear format-0 block; PinBlockError if the block is not well formed for this PAN."""
    if len(block) not in (8, 16):
        raise InvalidInput("PIN block size is 8 or 16 bytes")
    field = xor(block, _pan_field(pan, len(block))).hex().upper()
    n = int(field[1], 16)
    pin, pad = field[2 : 2 + n], field[2 + n :]
    if field[0] != "0" or not MIN_PIN <= n <= MAX_PIN or not pin.isdigit() or pad != "F" * len(pad):
        raise PinBlockError()
    return pin
