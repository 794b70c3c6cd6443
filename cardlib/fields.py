"""The card's data formats, declared with `construct`, each exact in both directions.

* `cn`  BCD digits, left-justified, padded with F nibbles      (dates, region codes, nation code)
* `an`  ASCII, left-justified, padded with 00 (some cards 20)   (card number, citizen ID, spec version)
* `b`   raw bytes of fixed length (FF-padded by the issuer)     (card identification code)
* `gbk` GBK text, padded with 00                                (names)
* `date` a `cn` of 4 bytes read as YYYYMMDD

Decoding is strict: a value that could not have been produced by encoding raises FieldError, so
`build(parse(raw)) == raw` for every raw value that parses, and `parse(build(v)) == v` for every value.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from construct import Adapter, Bytes, Construct, ConstructError

from cardlib.errors import FieldError


class _CnAdapter(Adapter):
    def __init__(self, n: int) -> None:
        super().__init__(Bytes(n))
        self.n = n

    def _decode(self, obj: bytes, context: Any, path: Any) -> str:
        digits = obj.hex().upper()
        body = digits.rstrip("F")
        if not body.isdigit() and body != "":
            raise FieldError(f"cn value has non-BCD nibbles: {digits}")
        return body

    def _encode(self, obj: str, context: Any, path: Any) -> bytes:
        if not isinstance(obj, str) or (obj and not (obj.isascii() and obj.isdigit())):
            raise FieldError(f"cn value must be a string of digits: {obj!r}")
        if len(obj) > 2 * self.n:
            raise FieldError(f"cn value longer than {2 * self.n} digits: {obj!r}")
        return bytes.fromhex(obj.ljust(2 * self.n, "F"))


class _PaddedTextAdapter(Adapter):
    def __init__(self, n: int, encoding: str, pad: int) -> None:
        super().__init__(Bytes(n))
        self.n, self.encoding, self.pad = n, encoding, pad

    def _decode(self, obj: bytes, context: Any, path: Any) -> str:
        body = obj.rstrip(bytes([self.pad]))
        if 0 in body:  # what encode refuses, decode refuses: build(parse(raw)) == raw
            raise FieldError(f"{self.encoding} value has a NUL inside: {obj.hex()}")
        try:
            text = body.decode(self.encoding)
        except UnicodeDecodeError as e:
            raise FieldError(f"not valid {self.encoding}: {obj.hex()}") from e
        if self.encoding == "ascii" and not text.isprintable():
            raise FieldError(f"an value has control characters: {obj.hex()}")
        return text

    def _encode(self, obj: str, context: Any, path: Any) -> bytes:
        if not isinstance(obj, str):
            raise FieldError(f"text value expected, got {obj!r}")
        try:
            raw = obj.encode(self.encoding)
        except UnicodeEncodeError as e:
            raise FieldError(f"{obj!r} cannot be written in {self.encoding}") from e
        if len(raw) > self.n:
            raise FieldError(f"{obj!r} is {len(raw)} bytes in {self.encoding}, field holds {self.n}")
        if raw.endswith(bytes([self.pad])):
            raise FieldError(f"{obj!r} ends with the padding byte")
        if 0 in raw:
            raise FieldError(f"{obj!r} has a NUL inside")
        if self.encoding == "ascii" and not obj.isprintable():
            raise FieldError(f"an value has control characters: {obj!r}")
        return raw.ljust(self.n, bytes([self.pad]))


class _DateAdapter(Adapter):
    def __init__(self) -> None:
        super().__init__(_CnAdapter(4))

    def _decode(self, obj: str, context: Any, path: Any) -> dt.date:
        if len(obj) != 8:
            raise FieldError(f"date needs 8 digits, got {obj!r}")
        try:
            return dt.date(int(obj[:4]), int(obj[4:6]), int(obj[6:]))
        except ValueError as e:
            raise FieldError(f"not a date: {obj}") from e

    def _encode(self, obj: dt.date, context: Any, path: Any) -> str:
        if not isinstance(obj, dt.date):
            raise FieldError(f"date expected, got {obj!r}")
        return obj.strftime("%Y%m%d") if obj.year >= 1000 else f"{obj.year:04d}{obj.month:02d}{obj.day:02d}"


@dataclass(frozen=True)
class Field:
    """A fixed-length data format: `parse(raw) -> value`, `build(value) -> raw`, FieldError on failure."""

    kind: str
    length: int
    construct: Construct

    def parse(self, raw: bytes) -> Any:
        raw = bytes(raw)
        if len(raw) != self.length:
            raise FieldError(f"{self.kind}{self.length} needs {self.length} bytes, got {len(raw)}")
        try:
            if isinstance(self.construct, Adapter):
                # The length is checked above, so Bytes(n) would hand the adapter `raw` unchanged: decode it
                # directly and skip construct's stream machinery (the hot path of every card read).
                return _decode_chain(self.construct, raw)
            return self.construct.parse(raw)
        except FieldError:
            raise
        except (ConstructError, ValueError, TypeError) as e:
            raise FieldError(f"{self.kind}{self.length}: {e}") from e

    def build(self, value: Any) -> bytes:
        try:
            return self.construct.build(value)
        except FieldError:
            raise
        except (ConstructError, ValueError, TypeError) as e:
            raise FieldError(f"{self.kind}{self.length}: {e}") from e


def _decode_chain(c: Construct, raw: Any) -> Any:
    inner = c.subcon
    value = _decode_chain(inner, raw) if isinstance(inner, Adapter) else raw
    return c._decode(value, None, "")


def cn(n: int) -> Field:
    return Field("cn", n, _CnAdapter(n))


def an(n: int, pad: int = 0x00) -> Field:
    return Field("an", n, _PaddedTextAdapter(n, "ascii", pad))


def gbk(n: int, pad: int = 0x00) -> Field:
    return Field("gbk", n, _PaddedTextAdapter(n, "gbk", pad))


def b(n: int) -> Field:
    return Field("b", n, Bytes(n))


def date() -> Field:
    return Field("date", 4, _DateAdapter())
