"""The card's basic data (EF05 + EF06) as a counter needs it, decoded tolerantly from what cards really hold.

Cards in the field do not all hold their items in the form the spec gives (cardlib.layout): text padded
with 20 or FF instead of 00, the issuer code in ASCII instead of BCD, a spec version "0200", a nation byte
written as ASCII, dates 00000000 or FFFFFFFF, a card number padded with FF. `decode()` reads each item in
the forms seen in the field (as the card's profile declares them, see cardlib.profiles) and reports what
was odd as notes. The items a counter cannot work without (`CORE_ITEMS`: card identification code and
region code, social security number, name, card number, expiry) are strict: when they do not decode the
read fails with ItemUnreadable. Any other item that does not decode is left None in `BasicInfo` and comes
back as a `ReadWarning` carrying its raw bytes, so one odd item never costs the counter the whole card.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from cardlib.errors import FieldError
from cardlib.layout import DataItem
from cardlib.profiles import CardProfile, generation_of
from cardlib.readers.base import historical_bytes

#: The items read_basic() must decode; any other item is read tolerantly (None plus a warning).
CORE_ITEMS = frozenset({"card_id", "social_security_number", "name", "card_number", "expiry_date"})
CARD_NUMBER_LENGTH = 9  # reader interfaces take the first 9 characters (national interface, 10.4)
_SSN = re.compile(r"\d{17}[\dX]|\d{15}")
_SSN_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


@dataclass(frozen=True)
class ReadWarning:
    """Something odd about one item of a card that was read anyway. `code` is a stable name
    (e.g. "date_absent", "nation_ascii", "undecodable"); `raw` the item's value bytes in hex."""

    code: str
    item: str
    message: str
    file: str = ""
    record: int | None = None
    tag: int | None = None
    raw: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tag"] = f"{self.tag:02X}" if self.tag is not None else None
        return d


class Note(NamedTuple):
    code: str
    message: str


class Decoded(NamedTuple):
    value: Any
    notes: tuple[Note, ...] = ()


def _text(value: bytes, profile: CardProfile, encoding: str = "ascii") -> str:
    """Text trimmed of the profile's padding; GBK is decoded as GB 18030, its superset, so the rare
    characters of some names also read."""
    body = value.rstrip(profile.padding)
    if 0 in body:
        raise FieldError(f"a NUL inside the text: {value.hex().upper()}")
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as e:
        raise FieldError(f"not {'GBK' if encoding == 'gb18030' else encoding} text: {value.hex().upper()}") from e
    if not text.isprintable():
        raise FieldError(f"control characters in the text: {value.hex().upper()}")
    return text


def _bcd(value: bytes) -> str:
    digits = value.hex().upper().rstrip("F")
    if not digits.isdigit() and digits:
        raise FieldError(f"not BCD digits: {value.hex().upper()}")
    return digits


def _text_item(value: bytes, profile: CardProfile) -> Decoded:
    return Decoded(_text(value, profile))


def _name(value: bytes, profile: CardProfile) -> Decoded:
    name = _text(value, profile, "gb18030")
    if not name.strip():
        raise FieldError("the name is empty")
    return Decoded(name)


def _name_extension(value: bytes, profile: CardProfile) -> Decoded:
    return Decoded(_text(value, profile, "gb18030"))


def _card_id(value: bytes, profile: CardProfile) -> Decoded:
    if len(value) != 16:
        raise FieldError(f"{len(value)} bytes, a card identification code has 16")
    if not value[:3].hex().isdigit():
        raise FieldError(f"region code {value[:3].hex().upper()} is not 6 digits")
    return Decoded(value.hex().upper())


def _card_number(value: bytes, profile: CardProfile) -> Decoded:
    number = _text(value, profile)
    if not number or not number.isalnum():
        raise FieldError(f"card number {number!r} is not letters and digits")
    if len(number) > CARD_NUMBER_LENGTH:
        return Decoded(number[:CARD_NUMBER_LENGTH], (Note(
            "card_number_long", f"card number {number!r} is longer than {CARD_NUMBER_LENGTH}: the first "
            f"{CARD_NUMBER_LENGTH} characters are the card number"),))
    return Decoded(number)


def _ssn(value: bytes, profile: CardProfile) -> Decoded:
    ssn = _text(value, profile)
    notes: list[Note] = []
    if ssn.endswith("x"):
        ssn = ssn[:-1] + "X"
        notes.append(Note("ssn_lowercase_x", "social security number ends with a lowercase x: read as X"))
    if not _SSN.fullmatch(ssn):
        raise FieldError(f"social security number {ssn!r} is not 18 characters (17 digits and a check) or 15 digits")
    if len(ssn) == 18:
        check = "10X98765432"[sum(int(d) * w for d, w in zip(ssn, _SSN_WEIGHTS, strict=False)) % 11]
        if check != ssn[-1]:
            notes.append(Note("ssn_check_digit", f"social security number check digit is {ssn[-1]}, expected {check}"))
    return Decoded(ssn, tuple(notes))


def _date(value: bytes, profile: CardProfile) -> Decoded:
    if value in profile.absent_dates:
        return Decoded(None, (Note("date_absent", f"date {value.hex().upper()} means no date"),))
    notes: tuple[Note, ...] = ()
    if len(value) == 8 and value.isdigit():
        digits = value.decode("ascii")
        notes = (Note("date_ascii", f"date written as ASCII {digits!r}, the spec says 4 bytes BCD"),)
    elif len(value) == 4 and value.hex().isdigit():
        digits = value.hex()
    else:
        raise FieldError(f"not a date (4 bytes BCD YYYYMMDD): {value.hex().upper()}")
    try:
        return Decoded(dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8])), notes)
    except ValueError as e:
        raise FieldError(f"not a date: {value.hex().upper()}") from e


def _spec_version(value: bytes, profile: CardProfile) -> Decoded:
    spec = generation_of(value, profile.padding)
    if spec.text is None:
        return Decoded(None, (Note("spec_version_unreadable", spec.note),))
    return Decoded(spec.text, (Note("spec_version_odd", spec.note),) if spec.note else ())


def _issuer_code(value: bytes, profile: CardProfile) -> Decoded:
    """12 bytes BCD (24 digits, F padded) or 12 ASCII; printable ASCII is taken as ASCII."""
    try:
        code, form = _text(value, profile), "an"
    except FieldError:
        code, form = _bcd(value), "cn"
    if form != profile.issuer_code_form:
        names = {"an": "ASCII", "cn": "BCD"}
        return Decoded(code, (Note("issuer_code_form", f"issuer code written as {names[form]}, profile "
                                   f"{profile.name} expects {names[profile.issuer_code_form]}"),))
    return Decoded(code)


def _nation(value: bytes, profile: CardProfile) -> Decoded:
    """GB 3304 code, 1 byte BCD (01 = Han). Cards that wrote ASCII ('1' = 31) read as "01" under the auto
    form, with a note: 31 would also be a valid BCD code (Daur), so a region whose cards are all BCD
    declares nation_form "bcd"."""
    if len(value) == 2 and value.isdigit():
        return Decoded(value.decode("ascii"), (Note("nation_ascii", f"nation written as ASCII {value!r}"),))
    if len(value) != 1:
        raise FieldError(f"{len(value)} bytes, the nation code has 1")
    b = value[0]
    if profile.nation_form == "ascii" or (profile.nation_form == "auto" and 0x30 <= b <= 0x39):
        if not 0x30 <= b <= 0x39:
            raise FieldError(f"nation byte {b:02X} is not an ASCII digit")
        code = f"0{chr(b)}"
        note = () if profile.nation_form == "ascii" else (Note(
            "nation_ascii", f"nation byte {b:02X} read as ASCII {chr(b)!r}: code {code} (as BCD it would be {b:02X})"),)
        return Decoded(code, note)
    return Decoded(_bcd(value))


def _digits(value: bytes, profile: CardProfile) -> Decoded:
    return Decoded(_bcd(value.rstrip(b"\xff")))


DECODERS: dict[str, Callable[[bytes, CardProfile], Decoded]] = {
    "card_id": _card_id,
    "card_type": _text_item,
    "spec_version": _spec_version,
    "issuer_code": _issuer_code,
    "issue_date": _date,
    "expiry_date": _date,
    "card_number": _card_number,
    "social_security_number": _ssn,
    "name": _name,
    "name_extension": _name_extension,
    "sex": _text_item,
    "nation": _nation,
    "birth_place": _digits,
    "birth_date": _date,
}


def decode(item: DataItem, value: bytes, profile: CardProfile) -> Decoded:
    """One item's value as the field writes it; FieldError when it is none of the known forms."""
    return DECODERS[item.name](bytes(value), profile)


@dataclass(frozen=True)
class BasicInfo:
    """The card's basic data (EF05 + EF06) plus the region code and the ATR.

    Items other than the core ones are None when the card's value could not be decoded (the warning
    carries the raw bytes) and the dates also when the card says "no date". `name` includes the name
    extension (4E) when there is one; `profile` names the card profile the read used."""

    card_id: str  # 卡识别码, 32 hex digits
    card_type: str | None
    spec_version: str | None
    issuer_code: str | None
    issue_date: dt.date | None
    expiry_date: dt.date | None
    card_number: str  # 卡号
    social_security_number: str
    name: str
    sex: str | None
    nation: str | None
    birth_place: str | None
    birth_date: dt.date | None
    region_code: str  # 区号: first 6 hex digits of the card identification code
    atr: bytes
    profile: str = ""
    warnings: tuple[ReadWarning, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "warnings"}
        for k, v in d.items():
            if isinstance(v, dt.date):
                d[k] = v.isoformat()
        d["atr"] = self.atr.hex().upper()
        d["warnings"] = [w.to_dict() for w in self.warnings]
        return d

    def national(self, terminal_number: str = "", device_number: str = "") -> str:
        """The national reader-interface basic-data string: 11 fields, each followed by '|'.

        区号|社会保障号码|卡号|卡识别码|姓名|卡复位信息|规范版本|发卡日期|卡有效期|终端机编号|终端设备号|
        卡复位信息 is the ATR's historical bytes in hex; dates are YYYYMMDD (empty when the card has none);
        终端机编号 is the PSAM's 12-digit terminal number.
        """
        fields = [
            self.region_code,
            self.social_security_number,
            self.card_number,
            self.card_id,
            self.name,
            historical_bytes(self.atr).hex().upper(),
            self.spec_version or "",
            self.issue_date.strftime("%Y%m%d") if self.issue_date else "",
            self.expiry_date.strftime("%Y%m%d") if self.expiry_date else "",
            terminal_number,
            device_number,
        ]
        return "".join(f"{f}|" for f in fields)
