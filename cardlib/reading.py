"""One read of a card's item records (EF05, EF06) as its profile numbers them, with the fallbacks real cards need.

`ItemRecords.get(file, item)` reads the item's record by record NUMBER (by SFI: `00 B2 n (SFI<<3|4)`), or by
identifier (`00 B2 tag (SFI<<3)`) where the profile asks, and checks the reply carries the item's tag. When
it does not, the card is numbered differently from its profile: if the other EF06 numbering (with or
without the 4E record) explains the tag found, the read switches to it for the rest of the card; otherwise
it asks for the item by identifier. A card that refuses identifier mode (6A86) is read by number from then
on. Every such turn is a named warning; records read once are not read again.

`value(file, item)` decodes what was read (cardlib.basic): a core item that is missing or does not decode
raises ItemUnreadable naming file, record, tag and the raw bytes; any other item becomes None and a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from cardlib import layout
from cardlib.apdu import CardChannel, CommandAPDU
from cardlib.basic import CORE_ITEMS, BasicInfo, ReadWarning, decode
from cardlib.errors import FieldError, IncorrectParameters, ItemUnreadable, RecordNotFound, StatusError
from cardlib.layout import EF05, EF06, DataItem, RecordFile
from cardlib.profiles import DEFAULT_GENERATION, GENERATION_2, CardProfile, choose, generation_of

log = logging.getLogger("cardlib.card")

INS_READ_RECORD = 0xB2
#: The profile EF05 is read with: its numbering is the same on every card (record n carries tag n).
BASE_PROFILE = GENERATION_2
_REFUSED = object()
_CARD_ID, _SPEC, _EXTENSION = EF05.item("card_id"), EF05.item("spec_version"), EF06.item("name_extension")
_BASIC = tuple((f, f.item(name)) for f, name in layout.BASIC_ITEMS)

Got = tuple[int | None, bytes] | None  # (record number, or None when read by identifier; value) or missing


def located(e: StatusError, where: str) -> StatusError:
    """The same typed error, its message saying where (file, record, tag)."""
    out = type(e)(e.sw, f"{where}: {e.message}")
    out.__cause__ = e
    return out


def read_record_apdu(channel: CardChannel, p1: int, p2: int, le: int, where: Callable[[], str]) -> bytes:
    """READ RECORD; a refusal raises the typed StatusError with `where()` in its message."""
    try:
        return channel.check(CommandAPDU(0x00, INS_READ_RECORD, p1, p2, b"", le))
    except StatusError as e:
        raise located(e, where()) from e


def describe(file: RecordFile, record: int | None, item: DataItem) -> str:
    at = f"record {record}" if record is not None else "by identifier"
    return f"{file.name} {at} (tag {item.tag:02X}, {item.name})"


class ItemRecords:
    """The item records of one card, read as `profile` says and adjusted to what the card shows."""

    def __init__(self, channel: CardChannel, profile: CardProfile = BASE_PROFILE) -> None:
        self.channel = channel
        self.profile = profile
        self.records: dict[tuple[str, int], Got] = {}
        self.warnings: list[ReadWarning] = []
        self._decoded: dict[str, Any] = {}
        self._toggled = False
        self._identifier_refused = False

    def warn(self, code: str, item: DataItem, message: str, file: RecordFile, record: int | None,
             raw: bytes = b"") -> None:
        w = ReadWarning(code, item.name, message, file.name, record, item.tag, raw.hex().upper())
        self.warnings.append(w)
        log.warning("card read: %s (%s)", message, code)

    # ---- fetching ---------------------------------------------------------------------------------------
    def fetch(self, file: RecordFile, items: Iterable[DataItem]) -> None:
        for item in items:
            self.get(file, item)

    def get(self, file: RecordFile, item: DataItem) -> Got:
        """The item's (record number, value), or None when the card does not have it (or it was unreadable,
        with a warning)."""
        key = (file.name, item.tag)
        if key in self.records:
            return self.records[key]
        if self.profile.identifier_mode and not self._identifier_refused:
            got = self._by_identifier(file, item)
            if got is not _REFUSED:
                return self._keep(key, got)  # type: ignore[arg-type]
        recno = self.profile.numbers(file).get(item.tag)
        if recno is None:  # cards of this profile do not have it
            return self._keep(key, None)
        try:
            raw = read_record_apdu(self.channel, recno, file.p2_sfi, 2 + item.length,
                                   lambda: describe(file, recno, item))
        except RecordNotFound:
            return self._keep(key, self._fallback(file, item))
        rec = self._split(raw, file, recno, item)
        if rec is None:
            return self._keep(key, None)
        tag, value = rec
        if tag == item.tag:
            return self._keep(key, (recno, value))
        return self._mismatch(file, item, recno, tag, value)

    def _keep(self, key: tuple[str, int], got: Got) -> Got:
        self.records[key] = got
        return got

    def _mismatch(self, file: RecordFile, item: DataItem, recno: int, tag: int, value: bytes) -> Got:
        known = {i.tag: i for i in file.items}
        if tag in known:
            self.records.setdefault((file.name, tag), (recno, value))
        alt = self.profile.toggled_name_extension()
        if (not self._toggled and 0x4E in known and tag in known and alt.has(known[tag])
                and alt.record_number(file, known[tag]) == recno):
            self._toggled = True
            self.profile = alt
            with_4e = "with" if alt.name_extension else "without"
            self.warn("record_numbering", item, f"{file.name} record {recno} carries tag {tag:02X}, not "
                      f"{item.tag:02X}: the card numbers {file.name} {with_4e} the 4E record", file, recno, value)
            if not alt.has(item):
                return self._keep((file.name, item.tag), None)
            return self.get(file, item)
        self.warn("record_numbering", item, f"{file.name} record {recno} carries tag {tag:02X}, expected "
                  f"{item.tag:02X}", file, recno, value)
        return self._keep((file.name, item.tag), self._fallback(file, item))

    def _fallback(self, file: RecordFile, item: DataItem) -> Got:
        """The item by identifier when its record number did not give it (unless the card refuses that)."""
        if self._identifier_refused:
            return None
        got = self._by_identifier(file, item)
        return None if got is _REFUSED else got  # type: ignore[return-value]

    def _by_identifier(self, file: RecordFile, item: DataItem) -> Got | object:
        try:
            raw = read_record_apdu(self.channel, item.tag, file.p2_identifier, 2 + item.length,
                                   lambda: describe(file, None, item))
        except IncorrectParameters:
            self._identifier_refused = True
            if self.profile.identifier_mode:
                self.warn("identifier_mode_refused", item, f"the card refuses READ RECORD by identifier (6A86): "
                          f"profile {self.profile.name} asks for it, reading by record number", file, None)
                self.profile = replace(self.profile, identifier_mode=False)
            return _REFUSED
        except RecordNotFound:
            return None
        rec = self._split(raw, file, None, item)
        if rec is None:
            return None
        if rec[0] != item.tag:
            self.warn("record_numbering", item, f"{file.name} answered identifier {item.tag:02X} with a record "
                      f"of tag {rec[0]:02X}", file, None, raw)
            return None
        return (None, rec[1])

    def _split(self, raw: bytes, file: RecordFile, recno: int | None, item: DataItem) -> tuple[int, bytes] | None:
        """(tag, value) of a record; trailing padding after the TLV is tolerated with a warning. A malformed
        record: ItemUnreadable for a core item, else a warning and None."""
        if len(raw) >= 2 and len(raw) >= 2 + raw[1]:
            end = 2 + raw[1]
            trailing = raw[end:]
            if not trailing.strip(self.profile.padding):
                if trailing:
                    self.warn("record_trailing_bytes", item, f"{describe(file, recno, item)}: "
                              f"{len(trailing)} padding bytes after the record", file, recno, raw)
                return raw[0], raw[2:end]
        message = "not a record TLV (tag, length, value)"
        if item.name in CORE_ITEMS:
            raise ItemUnreadable(message, file=file.name, record=recno, tag=item.tag, item=item.name, raw=raw)
        self.warn("undecodable", item, f"{describe(file, recno, item)}: {message}", file, recno, raw)
        return None

    # ---- decoding ---------------------------------------------------------------------------------------
    def value(self, file: RecordFile, item: DataItem) -> Any:
        """The decoded value of an item fetched before (None if it was not fetched or could not be read)."""
        if item.name in self._decoded:
            return self._decoded[item.name]
        key = (file.name, item.tag)
        if key not in self.records:
            return None
        got = self.records[key]
        out = None
        if got is None:
            if item.name in CORE_ITEMS:
                recno = self.profile.record_number(file, item) if self.profile.has(item) else None
                raise ItemUnreadable("the card does not have it", file=file.name, record=recno, tag=item.tag,
                                     item=item.name)
            if item.tag != 0x4E:  # an absent name extension is what most cards have
                self.warn("missing", item, f"{file.name} has no {item.name} item (tag {item.tag:02X})", file, None)
        else:
            recno, raw = got
            try:
                decoded = decode(item, raw, self.profile)
            except FieldError as e:
                if item.name in CORE_ITEMS:
                    raise ItemUnreadable(str(e), file=file.name, record=recno, tag=item.tag, item=item.name,
                                         raw=raw) from e
                self.warn("undecodable", item, f"{describe(file, recno, item)}: {e}", file, recno, raw)
            else:
                out = decoded.value
                for note in decoded.notes:
                    self.warn(note.code, item, note.message, file, recno, raw)
        self._decoded[item.name] = out
        return out

    def identify(self, profiles: Iterable[CardProfile] = ()) -> tuple[bytes, CardProfile]:
        """(card identification code, profile) from EF05 records 1 and 3 (read now unless read before); the
        profile is chosen by region code and generation and used from here on."""
        self.fetch(EF05, (_CARD_ID, _SPEC))
        card_id = self.value(EF05, _CARD_ID)
        self.value(EF05, _SPEC)  # its warnings
        spec = self.records[(EF05.name, 0x03)]
        generation = generation_of(spec[1], self.profile.padding).generation if spec else DEFAULT_GENERATION
        if spec is None:
            self.warn("generation_assumed", _SPEC,
                      f"no spec version on the card: assuming generation {generation}", EF05, None)
        chosen = choose(card_id[:6], generation, profiles)
        if self.profile.identifier_mode != chosen.identifier_mode and self._identifier_refused:
            chosen = replace(chosen, identifier_mode=False)
        self.profile = chosen
        return bytes.fromhex(card_id), chosen

    def name_is_full(self) -> bool:
        """Whether the name record (09) is full to its last byte, so a 4E name extension may follow."""
        got = self.records.get((EF06.name, 0x09))
        return bool(got) and bool(got[1]) and got[1][-1] not in self.profile.padding  # type: ignore[index]

    def fetch_holder(self) -> None:
        """The EF06 items read_basic reports; the 4E extension only when the name fills its record."""
        for item in EF06.items:
            if not self.profile.has(item) or (item.tag == 0x4E and not self.name_is_full()):
                continue
            self.get(EF06, item)

    def basic_info(self, atr: bytes) -> BasicInfo:
        """Everything fetched, decoded into a BasicInfo (core items strictly)."""
        v = {item.name: self.value(f, item) for f, item in _BASIC}
        extension = self.value(EF06, _EXTENSION) or ""
        v["name"] = v["name"] + extension
        return BasicInfo(region_code=v["card_id"][:6], atr=atr, profile=self.profile.name,
                         warnings=tuple(self.warnings), **v)
