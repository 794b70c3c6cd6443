"""Everything a card lets a terminal read, file by file and record by record, raw and decoded.

Like pySim's `export`, the walk follows the file map (cardlib.layout): SSSE's EF05 and EF06, then each of
DF01..DF04 and its files. Each record file is read by record number (`00 B2 n (SFI<<3|4)`, Le 00) from
record 1 until the card says there is no such record (6A83); a file the card refuses (6982: only for an
authenticated terminal or after the PIN; 6A82: not on this card) is listed with its refusal and the walk
goes on. With `probe`, every other SFI (1..30) of each DF is tried too, to find files the layout does not
name. A record whose tag the layout knows is decoded by its format (tolerantly for EF05/EF06 items, as
`read_basic` would); one that does not decode keeps its raw bytes and says why. A file that is not a
record file (6981 to READ RECORD: a transparent EF, such as a photo) is read with READ BINARY instead.

The walk never stops at a card's refusal, only at a transport failure (card removed, timeout).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from cardlib import layout
from cardlib.apdu import CommandAPDU
from cardlib.basic import DECODERS, decode
from cardlib.card import SocialSecurityCard
from cardlib.errors import (
    CardBlocked,
    CommandNotAllowed,
    FieldError,
    RecordNotFound,
    SecurityStatusNotSatisfied,
    StatusError,
    TlvError,
)
from cardlib.layout import DedicatedFile, RecordFile
from cardlib.profiles import GENERATION_2
from cardlib.security import SecurityModule
from cardlib.tlv import parse_record

MAX_RECORD = 254  # P1 of READ RECORD; a card that never says 6A83 is read this far and no further
MAX_BINARY = 0x8000  # READ BINARY offsets are 15 bits
CHUNK = 256
PROBE_SFIS = range(1, 31)


@dataclass
class RecordDump:
    number: int
    raw: bytes
    tag: int | None = None
    item: str | None = None
    label: str = ""
    value: Any = None
    warning: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "raw": self.raw.hex().upper(),
                "tag": None if self.tag is None else f"{self.tag:02X}", "item": self.item, "label": self.label,
                "value": _plain(self.value), "warning": self.warning}


@dataclass
class FileDump:
    path: str  # e.g. "SSSE/DF04/EF15"
    sfi: int | None
    records: list[RecordDump] = field(default_factory=list)
    end: str = ""  # why the walk of this file stopped (a status word and its meaning), or why it was not read
    known: bool = True  # named by the layout (False: found by probing)
    binary: bytes | None = None  # a transparent file's contents

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sfi": None if self.sfi is None else f"{self.sfi:02X}", "known": self.known,
                "end": self.end, "records": [r.to_dict() for r in self.records],
                "binary": None if self.binary is None else self.binary.hex().upper()}


@dataclass
class CardDump:
    reader: str
    atr: bytes
    files: list[FileDump] = field(default_factory=list)
    authenticated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"reader": self.reader, "atr": self.atr.hex().upper(), "authenticated": self.authenticated,
                "files": [f.to_dict() for f in self.files]}


def _plain(v: Any) -> Any:
    """A decoded value as JSON can hold it."""
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, bytes | bytearray):
        return bytes(v).hex().upper()
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items() if not k.startswith("_")}
    return v


def _decode(file: RecordFile, number: int, raw: bytes) -> RecordDump:
    rec = RecordDump(number, raw)
    if not file.items:  # fixed-length records (DF04 transactions)
        if file is layout.DF04_TRANSACTIONS and any(raw):
            try:
                rec.value = dict(layout.TransactionRecord.parse(raw))
            except Exception as e:  # construct raises several kinds; the raw bytes stay either way
                rec.warning = f"not a transaction record: {e}"
        return rec
    try:
        rec.tag, value = parse_record(raw)
    except TlvError as e:
        rec.warning = str(e)
        return rec
    item = next((i for i in file.items if i.tag == rec.tag), None)
    if item is None:
        rec.warning = f"tag {rec.tag:02X} is not in the layout of {file.name}"
        return rec
    rec.item, rec.label = item.name, item.label
    try:
        rec.value = item.fmt.parse(value) if len(value) == item.length else None
        if rec.value is None:
            raise FieldError(f"{len(value)} bytes, layout says {item.length}")
    except FieldError as e:
        if item.name not in DECODERS:
            rec.warning = str(e)
            return rec
        try:
            rec.value = decode(item, value, GENERATION_2)
            rec.warning = f"decoded tolerantly ({e})"
        except FieldError as e2:
            rec.warning = str(e2)
    return rec


class _Walk:
    def __init__(self, card: SocialSecurityCard, security: SecurityModule | None) -> None:
        self.card = card
        self.security = security
        self.authenticated = False

    def records(self, file: RecordFile, path: str, known: bool = True) -> FileDump:
        out = FileDump(path, file.sfi, known=known)
        n = 1
        while n <= MAX_RECORD:
            try:
                raw = self.card.read_record(file.sfi, n)
            except RecordNotFound as e:
                out.end = f"{e.sw:04X} after {n - 1} records"
                break
            except SecurityStatusNotSatisfied as e:
                if self.security is not None and not self.authenticated:
                    self.card.authenticate_terminal(self.security)
                    self.authenticated = True
                    continue
                out.end = f"{e.sw:04X} {e.message}"
                break
            except CommandNotAllowed as e:
                if n == 1 and e.sw == 0x6981:  # not a record file
                    return self.binary(file.sfi, path, known)
                out.end = f"{e.sw:04X} {e.message}"
                break
            except StatusError as e:
                out.end = f"{e.sw:04X} {e.message}"
                break
            out.records.append(_decode(file, n, raw))
            n += 1
        else:
            out.end = f"stopped at record {MAX_RECORD}"
        return out

    def binary(self, sfi: int, path: str, known: bool) -> FileDump:
        """A transparent file: READ BINARY by SFI (offset 0), then from the current file, 256 bytes at a time."""
        out = FileDump(path, sfi, known=known)
        data = bytearray()
        while len(data) < MAX_BINARY:
            offset = len(data)
            p1, p2 = (0x80 | sfi, 0) if offset == 0 else (offset >> 8, offset & 0xFF)
            resp = self.card.channel.send(CommandAPDU(0x00, 0xB0, p1, p2, b"", CHUNK))
            data += resp.data
            if not resp.ok:
                out.end = f"{resp.sw:04X} after {len(data)} bytes"
                break
            if len(resp.data) < CHUNK:
                out.end = f"end of file after {len(data)} bytes"
                break
        out.binary = bytes(data)
        return out

    def directory(self, df: DedicatedFile | None, files: tuple[RecordFile, ...], probe: bool) -> list[FileDump]:
        base = "SSSE" if df is None else f"SSSE/{df.name}"
        found = [self.records(f, f"{base}/{f.name}") for f in files]
        if probe:
            for sfi in PROBE_SFIS:
                if any(f.sfi == sfi for f in files):
                    continue
                d = self.records(RecordFile(f"SFI{sfi:02X}", 0, sfi), f"{base}/SFI {sfi:02X}", known=False)
                if d.records or not d.end.startswith("6A82"):
                    found.append(d)
        return found


def dump_card(card: SocialSecurityCard, *, security: SecurityModule | None = None, probe: bool = False) -> CardDump:
    """Read every record of every file the layout names (and, with `probe`, any other SFI) that the card
    lets this terminal read; with `security`, authenticate the terminal when a file asks for it."""
    walk = _Walk(card, security)
    card.select_ssse()
    out = CardDump(card.reader.name, card.reader.atr)
    out.files += walk.directory(None, layout.SSSE_FILES, probe)
    for df in layout.APPLICATIONS:
        try:
            card.select_application(df)
        except (StatusError, CardBlocked) as e:
            out.files.append(FileDump(f"SSSE/{df.name}", None, end=str(e)))
            continue
        out.files += walk.directory(df, df.files, probe)
    out.authenticated = walk.authenticated
    return out

