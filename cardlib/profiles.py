"""Card profiles: what differs between spec versions and regions, declared once as data.

Cards in the field differ by spec version (generation) and by issuing region. A `CardProfile` says, for one
kind of card, how its EF06 records are numbered (version 1 cards have no 4E name-extension record, so their
records after the name shift by one), whether READ RECORD should address items by identifier instead of
record number, the form of the issuer code (12 bytes BCD, the common form, or 12 ASCII), the padding
bytes its text fields use, how its nation byte is written and which date values mean "no date".

The reader picks the profile from the card's own EF05 (`choose(region_code, generation)`): the region code
is the first 6 hex digits of the card identification code, the generation comes from the spec-version item
(`generation_of`). The three generation defaults cover the common cases with no configuration; a region
whose cards need something else adds a profile with `regions=("65",)` (prefix match, longest wins) and
passes it to `SocialSecurityCard(profiles=...)`.

Field evidence for the facts here (see tests/cardlib/test_card_corpus.py for the sources): version 1 cards
read sex at EF06 record 3 and version 2 cards at record 4 (`00 B2 03 34 03` / `00 B2 04 34 03`); the first
byte of the spec version tells the generation, and reader code takes 00 as well as '2' for a second-
generation card; third-generation cards use SM4.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Literal

from cardlib.layout import DataItem, RecordFile

#: Cipher suite by card generation: first and second generation 3DES, third SM4 (DOMAIN.md, Security).
SUITES: dict[int, str] = {1: "3DES", 2: "3DES", 3: "SM4"}
#: Generation assumed when the spec-version item cannot be read (the most common cards in the field).
DEFAULT_GENERATION = 2
#: Text padding seen in the field: 00 (the spec), 20 (some issuers), FF (an erased-flash fill).
FIELD_PADDING = b"\x00\x20\xff"

_CANONICAL = re.compile(r"[1-9]\.\d\d")
_MAJOR = re.compile(r"0?([1-9])(?:\.?\d{0,2})")


@dataclass(frozen=True)
class CardProfile:
    """How to read one kind of card. `regions`: region-code prefixes it is for (empty: any region)."""

    name: str
    generation: int
    name_extension: bool = True  # EF06 carries the 4E record (spec 2.00 and later)
    identifier_mode: bool = False  # READ RECORD by identifier (P1 = tag) rather than by record number
    issuer_code_form: Literal["cn", "an"] = "cn"
    padding: bytes = FIELD_PADDING
    nation_form: Literal["auto", "bcd", "ascii"] = "auto"  # auto: an ASCII digit (30..39) is read as ASCII
    absent_dates: frozenset[bytes] = field(default_factory=lambda: frozenset({bytes(4), b"\xff" * 4}))
    authenticate_first: bool = False  # EF06 is refused (6982) until the terminal authenticates
    regions: tuple[str, ...] = ()

    @property
    def suite(self) -> str:
        return SUITES[self.generation]

    def has(self, item: DataItem) -> bool:
        """Whether cards of this profile carry `item` at all."""
        if item.tag == 0x4E:
            return self.name_extension
        return item.since_generation <= self.generation

    def items(self, file: RecordFile) -> tuple[DataItem, ...]:
        return tuple(i for i in file.items if self.has(i))

    @cached_property
    def _numbers(self) -> dict[int, dict[int, int]]:
        return {}  # id(file) -> tag -> record number (layout files live as long as the process)

    def numbers(self, file: RecordFile) -> dict[int, int]:
        """Tag -> record number in `file` for the items such a card has (their positions among them)."""
        numbers = self._numbers.get(id(file))
        if numbers is None:
            numbers = self._numbers[id(file)] = {i.tag: n for n, i in enumerate(self.items(file), 1)}
        return numbers

    def record_number(self, file: RecordFile, item: DataItem) -> int:
        """The record number of `item` in `file` on such a card. ValueError if the card has no such item."""
        recno = self.numbers(file).get(item.tag)
        if recno is None:
            raise ValueError(f"cards of profile {self.name} have no {file.name} item {item.name}")
        return recno

    def toggled_name_extension(self) -> CardProfile:
        """The same profile with the other EF06 numbering (with or without the 4E record)."""
        base = self.name.removesuffix(" without 4E").removesuffix(" with 4E")
        return replace(self, name=f"{base} {'without' if self.name_extension else 'with'} 4E",
                       name_extension=not self.name_extension)


GENERATION_1 = CardProfile("generation-1", 1, name_extension=False)
GENERATION_2 = CardProfile("generation-2", 2)
GENERATION_3 = CardProfile("generation-3", 3)
#: The built-in profiles: one per generation, for any region.
PROFILES: tuple[CardProfile, ...] = (GENERATION_1, GENERATION_2, GENERATION_3)


def choose(region_code: str, generation: int, profiles: Iterable[CardProfile] = PROFILES) -> CardProfile:
    """The profile for a card of `generation` from `region_code`: the one whose region prefix matches longest,
    else the one for any region. `profiles` may add regional profiles to the built-in ones."""
    best: tuple[int, CardProfile] | None = None
    for p in (*profiles, *PROFILES):
        if p.generation != generation:
            continue
        for prefix in p.regions or ("",):
            if region_code.startswith(prefix) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), p)
    if best is None:
        raise ValueError(f"no card profile for generation {generation}")
    return best[1]


@dataclass(frozen=True)
class SpecVersion:
    """The spec-version item as read: the generation, the version text to report, and what was odd about it."""

    generation: int
    text: str | None  # "2.00"; None when the bytes are not a version at all
    note: str = ""  # empty for a well-formed version


def generation_of(value: bytes, padding: bytes = FIELD_PADDING) -> SpecVersion:
    """Read the spec-version item (4 ASCII, "2.00"). Odd forms seen in the field ("0200", 00 32 2E 30, "2.0")
    map to their generation with a note; unreadable bytes give the default generation, text None and a note.
    A second-generation card never maps to SM4."""
    raw = bytes(value)
    body = raw.strip(padding)
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        text = ""
    if _CANONICAL.fullmatch(text) and len(raw) == 4 and int(text[0]) in SUITES:
        return SpecVersion(int(text[0]), text)
    m = _MAJOR.fullmatch(text)
    if m and int(m.group(1)) in SUITES:
        gen = int(m.group(1))
        return SpecVersion(gen, f"{gen}.00", f"spec version bytes {raw.hex().upper()} read as {gen}.00")
    if m:  # a later version than we know: the newest generation we know
        gen = max(SUITES)
        return SpecVersion(gen, text, f"spec version {text!r} is newer than {gen}.00: read as generation {gen}")
    return SpecVersion(DEFAULT_GENERATION, None,
                       f"spec version bytes {raw.hex().upper()} unreadable: assuming generation {DEFAULT_GENERATION}")


def suite_for_spec(value: str | bytes) -> str:
    """The cipher suite of a card with this spec-version item ("3.00" -> SM4; "2.00", "0200" -> 3DES)."""
    raw = value.encode("ascii", "replace") if isinstance(value, str) else value
    return SUITES[generation_of(raw).generation]
