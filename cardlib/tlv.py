"""TLV codecs.

* Record TLV, as in the social security card's record files: one byte tag, one byte length, value.
  Declared with `construct`; `parse_record()` checks the length exactly (a hostile card cannot make us read
  past the reply or accept trailing bytes).
* BER-TLV (ISO 7816-4 / X.690 subset): multi-byte tags, short and long length forms (up to 3 length bytes),
  constructed objects parsed recursively into `BerTlv` trees.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from construct import Bytes, Int8ub, Struct, this

from cardlib.errors import TlvError

RecordTLV = Struct("tag" / Int8ub, "length" / Int8ub, "value" / Bytes(this.length))


def parse_record(raw: bytes, expected_tag: int | None = None) -> tuple[int, bytes]:
    """Decode one record TLV (the layout `RecordTLV` declares); return (tag, value).

    The record must be exactly tag + length + value. This is on every card read, so it slices directly
    instead of running construct's parser; tests check that both agree on every input.
    """
    raw = bytes(raw)
    if len(raw) < 2:
        raise TlvError(f"record TLV truncated: {raw.hex() or '(empty)'}")
    tag, length = raw[0], raw[1]
    if len(raw) < 2 + length:
        raise TlvError(f"record TLV truncated: {length} bytes declared, {len(raw) - 2} present")
    if len(raw) > 2 + length:
        raise TlvError(f"record TLV has {len(raw) - 2 - length} trailing bytes: {raw.hex()}")
    if expected_tag is not None and tag != expected_tag:
        raise TlvError(f"record tag {tag:02X}, expected {expected_tag:02X}")
    return tag, raw[2:]


def build_record(tag: int, value: bytes) -> bytes:
    if not 0 <= tag <= 0xFF:
        raise TlvError(f"record tag out of range: {tag}")
    if len(value) > 0xFF:
        raise TlvError(f"record value too long for a one-byte length: {len(value)}")
    return RecordTLV.build({"tag": tag, "length": len(value), "value": bytes(value)})


# ---- BER-TLV ----------------------------------------------------------------------------------------------
MAX_DEPTH = 16


@dataclass(frozen=True)
class BerTlv:
    """One BER-TLV object. `children` is filled for constructed tags (bit 6 of the first tag byte)."""

    tag: int
    value: bytes
    children: tuple[BerTlv, ...] = field(default=())

    @property
    def constructed(self) -> bool:
        return is_constructed(self.tag)

    def find(self, tag: int) -> BerTlv | None:
        """Depth-first search for the first object with `tag` (self included)."""
        if self.tag == tag:
            return self
        for c in self.children:
            hit = c.find(tag)
            if hit is not None:
                return hit
        return None

    def to_bytes(self) -> bytes:
        value = b"".join(c.to_bytes() for c in self.children) if self.children else self.value
        return encode_tag(self.tag) + encode_length(len(value)) + value


def is_constructed(tag: int) -> bool:
    first = tag
    while first > 0xFF:
        first >>= 8
    return bool(first & 0x20)


def encode_tag(tag: int) -> bytes:
    if tag < 0:
        raise TlvError(f"negative tag {tag}")
    return tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")


def encode_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    if n <= 0xFF:
        return b"\x81" + bytes([n])
    if n <= 0xFFFF:
        return b"\x82" + n.to_bytes(2, "big")
    if n <= 0xFFFFFF:
        return b"\x83" + n.to_bytes(3, "big")
    raise TlvError(f"length too large: {n}")


def _read_tag(buf: bytes, i: int) -> tuple[int, int]:
    if i >= len(buf):
        raise TlvError("tag expected, data ended")
    first = buf[i]
    tag = first
    i += 1
    if first & 0x1F == 0x1F:
        for n in range(3):
            if i >= len(buf):
                raise TlvError("multi-byte tag truncated")
            b = buf[i]
            tag = (tag << 8) | b
            i += 1
            if not b & 0x80:
                break
            if n == 2:
                raise TlvError("tag longer than 4 bytes")
    return tag, i


def _read_length(buf: bytes, i: int) -> tuple[int, int]:
    if i >= len(buf):
        raise TlvError("length expected, data ended")
    first = buf[i]
    i += 1
    if first < 0x80:
        return first, i
    n = first & 0x7F
    if n == 0 or n > 3:
        raise TlvError(f"unsupported length form {first:02X}")
    if i + n > len(buf):
        raise TlvError("long-form length truncated")
    return int.from_bytes(buf[i : i + n], "big"), i + n


def iter_ber(buf: bytes, depth: int = 0) -> Iterator[BerTlv]:
    """Yield the BER-TLV objects in `buf` (00 and FF padding between objects is skipped)."""
    if depth > MAX_DEPTH:
        raise TlvError("BER-TLV nested too deeply")
    buf = bytes(buf)
    i = 0
    while i < len(buf):
        if buf[i] in (0x00, 0xFF):
            i += 1
            continue
        tag, i = _read_tag(buf, i)
        length, i = _read_length(buf, i)
        if i + length > len(buf):
            raise TlvError(f"value of tag {tag:X} runs past the data ({length} > {len(buf) - i})")
        value = buf[i : i + length]
        i += length
        children = tuple(iter_ber(value, depth + 1)) if is_constructed(tag) else ()
        yield BerTlv(tag, value, children)


def parse_ber(buf: bytes) -> list[BerTlv]:
    """Parse a whole buffer of BER-TLV objects; raises TlvError on anything malformed."""
    return list(iter_ber(buf))
