"""The terminal-journal contract: what a terminal exports for day-end reconciliation.

Each terminal keeps a write-ahead journal; for its business day it exports one `JournalLine` per request
it sent to the centre, in its final state at export time. Two layouts carry the same fields:

**CSV** (UTF-8, comma-separated, RFC 4180 quoting, this exact header on line 1):

    terminal_id,business_day,key,kind,original_key,status,amount,hifp_pay,hifob_pay,hifmi_pay,maf_pay,
    acct_pay,psn_cash_pay,institution_id,insured_region,treatment_region,at,request

**JSON lines** (UTF-8, one object per line, blank lines ignored): the same names; amounts are JSON
integers, `original_key` is "" or absent, `request` is an object or null/absent.

Fields:
  terminal_id       1-64 of A-Z a-z 0-9 _ . -   (the terminal's registered id)
  business_day      YYYY-MM-DD                   (the terminal's business day)
  key               terminal_id:serial           (the idempotency key used at the centre)
  kind              settle | refund | void | pension_collect
  original_key      the settlement a refund or void refers to; empty for settle and pension_collect
  status            confirmed (answer received) | reversed (voided by the terminal; settle and
                    pension_collect only) | failed (typed error received, nothing posted) | pending
                    (no answer yet: the terminal will void it)
  amount            fen, >= 0: medfee_sumamt for settle, the refunded amount for refund, the amount
                    paid out for pension_collect, what was reversed for void (0 if not known)
  hifp_pay .. psn_cash_pay   the national platform breakdown in fen; for a confirmed settle or refund
                    they sum to `amount`; otherwise all 0 (not known) or summing to `amount`; always 0
                    for pension_collect
  institution_id, insured_region, treatment_region   as in the settlement result
  at                ISO 8601 timestamp with a UTC offset (when the terminal sent the request)
  request           what the centre needs to replay the request (JSON object; CSV: JSON text; may be
                    empty for void): settle {register_key, person_id, institution, care, begntime,
                    mdtrt_id, lines: [{cls, amount, over_limit}], use_account}; refund {setl_id,
                    amount}; pension_collect {person_id, amount, institution}

Readers validate every row and raise `InvalidJournalRow` naming the file, the row (1 = first data row)
and the field; they never return a partly valid file.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from settlement.errors import InvalidJournalRow, SettlementError, UnknownTerminal

KINDS = ("settle", "refund", "void", "pension_collect")
STATUSES = ("confirmed", "reversed", "failed", "pending")
PARTS = ("hifp_pay", "hifob_pay", "hifmi_pay", "maf_pay", "acct_pay", "psn_cash_pay")
AMOUNTS = ("amount", *PARTS)
FIELDS = (
    "terminal_id", "business_day", "key", "kind", "original_key", "status", *AMOUNTS,
    "institution_id", "insured_region", "treatment_region", "at", "request",
)
CSV_HEADER = ",".join(FIELDS)
IMPORT_COLS = ("business_day", "terminal_id", "key", "kind", "original_key", "status", *AMOUNTS, "parts_known",
               "institution_id", "request")
"""What the import stores of a line (recon_journal), in this order; the import adds `row_no`."""
MAX_FEN = 10**15
ORIGINALS = frozenset({"settle", "pension_collect"})
LINKED = frozenset({"refund", "void"})

_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_KEY = re.compile(r"([A-Za-z0-9_.\-]{1,64}):[A-Za-z0-9_.\-]{1,64}")
_AMOUNTS_TEXT = re.compile(r"[0-9]{1,16}(?:,[0-9]{1,16}){6}")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_KINDS = frozenset(KINDS)
_STATUSES = frozenset(STATUSES)
_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode

# DB row layout (recon_journal without source/row_no); `parts_known` is derived.
Row = tuple[Any, ...]


class _Bad(Exception):
    """A field problem inside one row; the reader adds file and row."""

    def __init__(self, fld: str, message: str) -> None:
        super().__init__(message)
        self.field = fld
        self.message = message


def check_day(value: str) -> str:
    """`value` if it is a valid YYYY-MM-DD date (raises ValueError otherwise)."""
    if type(value) is not str or not _DAY.fullmatch(value):
        raise ValueError(f"business day must look like 2024-03-01, got {value!r}")
    dt.date.fromisoformat(value)
    return value


_days: dict[str, str] = {}
_texts: dict[str, str] = {}
_ids: dict[str, str] = {}


def _day(v: str) -> str:
    d = _days.get(v)
    if d is None:
        try:
            d = check_day(v)
        except ValueError as e:
            raise _Bad("business_day", str(e)) from None
        if len(_days) < 10_000:
            _days[v] = d
    return d


def _text(v: object, fld: str) -> str:
    t = _texts.get(v) if type(v) is str else None
    if t is not None:
        return t
    if type(v) is not str or not v.strip() or len(v) > 64:
        raise _Bad(fld, f"{fld} must be a non-empty text of at most 64 characters, got {v!r}")
    if len(_texts) < 100_000:
        _texts[v] = v
    return v


def _fen_text(v: str, fld: str) -> int:
    if not (v.isascii() and v.isdigit()) or len(v) > 16:
        raise _Bad(fld, f"{fld} must be a whole number of fen (digits only, e.g. 12345 for 123.45 yuan), got {v!r}")
    return int(v)


def _fen_json(v: object, fld: str) -> int:
    if type(v) is not int or v < 0 or v > MAX_FEN:
        raise _Bad(fld, f"{fld} must be a whole number of fen (a JSON integer >= 0), got {v!r}")
    return v


def _check(
    terminal_id: object, day: object, key: object, kind: object, original_key: object, status: object,
    amounts: list[int], institution: object, insured: object, treatment: object, at: object, request: str,
) -> Row:
    """Validate one line's values; return the DB row (without source and row number)."""
    if terminal_id not in _ids:
        if type(terminal_id) is not str or not _ID.fullmatch(terminal_id):
            raise _Bad("terminal_id",
                       f"terminal_id must be 1-64 letters, digits, '_', '.' or '-', got {terminal_id!r}")
        if len(_ids) < 100_000:
            _ids[terminal_id] = terminal_id
    m = _KEY.fullmatch(key) if type(key) is str else None
    if m is None or m.group(1) != terminal_id:
        raise _Bad("key", f"key must be {terminal_id}:<serial> (the terminal's own idempotency key), got {key!r}")
    if kind not in _KINDS:
        raise _Bad("kind", f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if status not in _STATUSES:
        raise _Bad("status", f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    if kind in LINKED:
        if type(original_key) is not str or not _KEY.fullmatch(original_key):
            raise _Bad("original_key", f"a {kind} needs original_key, the key of the settlement it refers to")
        if original_key == key:
            raise _Bad("original_key", "original_key must differ from key")
        if status == "reversed":
            raise _Bad("status", f"a {kind} cannot be 'reversed' (only settle and pension_collect can)")
    elif original_key:
        raise _Bad("original_key", f"a {kind} has no original_key, got {original_key!r}")
    amount = amounts[0]
    if amount > MAX_FEN:
        raise _Bad("amount", f"amount {amount} is too large")
    parts = sum(amounts[1:])
    if kind == "pension_collect":
        if parts:
            raise _Bad("hifp_pay", "a pension_collect carries no medical breakdown: hifp_pay..psn_cash_pay must be 0")
        known = 0
    elif (status == "confirmed" and kind != "void") or parts:
        if parts != amount:
            raise _Bad("amount", f"the breakdown sums to {parts} fen but amount is {amount} fen")
        known = 1
    else:
        known = 0
    if kind != "void" and amount == 0:
        raise _Bad("amount", f"a {kind} needs an amount above 0 fen")
    if type(at) is not str:
        raise _Bad("at", f"at must be an ISO 8601 timestamp, got {at!r}")
    try:
        t = dt.datetime.fromisoformat(at)
    except ValueError:
        raise _Bad("at", f"at must be an ISO 8601 timestamp like 2024-03-01T09:30:00+08:00, got {at!r}") from None
    if t.tzinfo is None:
        raise _Bad("at", f"at needs a UTC offset (e.g. +08:00), got {at!r}")
    return (
        terminal_id, _day(day) if type(day) is str else _day(repr(day)), key, kind, original_key or "", status,
        *amounts, known, _text(institution, "institution_id"), _text(insured, "insured_region"),
        _text(treatment, "treatment_region"), at, request,
    )


def _request_text(v: str) -> str:
    if not v:
        return ""
    try:
        obj = json.loads(v)
    except ValueError as e:
        raise _Bad("request", f"request is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise _Bad("request", "request must be a JSON object")
    return v


_fromiso = dt.datetime.fromisoformat
_key_match = _KEY.fullmatch
_amounts_match = _AMOUNTS_TEXT.fullmatch


def row_from_csv(values: list[str], *, check_request: bool = True) -> Row:
    """Validate one CSV record (strings in FIELDS order) into a DB row. With `check_request=False` the
    caller validates the request JSON itself (the SQLite import does it in SQL, in bulk).

    The common case is checked inline against the caches of values already validated; anything unusual
    goes through `_row_from_csv`, which names the field that is wrong."""
    if len(values) == 18:
        tid, day, key, kind, orig, status, a, b, c, d, e, f, g, inst, ins, trt, at, req = values
        m = _key_match(key)
        if (tid in _ids and day in _days and m is not None and m.group(1) == tid and kind in _KINDS
                and status in _STATUSES and inst in _texts and ins in _texts and trt in _texts
                and _amounts_match(f"{a},{b},{c},{d},{e},{f},{g}") is not None
                and (not orig if kind in ORIGINALS else status != "reversed" and orig != key and _key_match(orig))):
            amount, *parts = amounts = [int(a), int(b), int(c), int(d), int(e), int(f), int(g)]
            total = sum(parts)
            if kind == "pension_collect":
                ok, known = total == 0, 0
            elif (status == "confirmed" and kind != "void") or total:
                ok, known = total == amount, 1
            else:
                ok, known = True, 0
            if ok and (amount or kind == "void") and amount <= MAX_FEN and (not req or not check_request
                                                                          or req[0] == "{"):
                try:
                    t = _fromiso(at)
                except ValueError:
                    t = None
                if t is not None and t.tzinfo is not None:
                    if req and check_request:
                        _request_text(req)
                    return (_ids[tid], _days[day], key, kind, orig, status, *amounts, known, _texts[inst],
                            _texts[ins], _texts[trt], at, req)
    return _row_from_csv(values, check_request=check_request)


def _row_from_csv(values: list[str], *, check_request: bool = True) -> Row:
    if len(values) != len(FIELDS):
        raise _Bad("(row)", f"expected {len(FIELDS)} columns ({CSV_HEADER}), got {len(values)}")
    text = values[6:13]
    if _AMOUNTS_TEXT.fullmatch(",".join(text)) is None:
        for v, f in zip(text, AMOUNTS, strict=True):
            _fen_text(v, f)
    request = values[17]
    if request and check_request:
        _request_text(request)
    return _check(values[0], values[1], values[2], values[3], values[4], values[5], list(map(int, text)),
                  values[13], values[14], values[15], values[16], request)


def row_from_json(obj: object) -> Row:
    """Validate one JSON-lines object into a DB row."""
    if not isinstance(obj, dict):
        raise _Bad("(row)", "each line must be a JSON object")
    unknown = set(obj) - set(FIELDS)
    if unknown:
        raise _Bad(sorted(unknown)[0], f"unknown field(s): {', '.join(sorted(unknown))}")
    missing = [f for f in FIELDS if f not in obj and f not in ("original_key", "request")]
    if missing:
        raise _Bad(missing[0], f"missing field(s): {', '.join(missing)}")
    amounts = [_fen_json(obj[f], f) for f in AMOUNTS]
    req = obj.get("request")
    if req is not None and not isinstance(req, dict):
        raise _Bad("request", "request must be a JSON object or null")
    return _check(obj["terminal_id"], obj["business_day"], obj["key"], obj["kind"], obj.get("original_key") or "",
                  obj["status"], amounts, obj["institution_id"], obj["insured_region"], obj["treatment_region"],
                  obj["at"], _canonical(req) if req else "")


@dataclass(frozen=True, slots=True)
class JournalLine:
    """One request a terminal sent, as its journal knows it at day end (see the module docstring)."""

    terminal_id: str
    business_day: str
    key: str
    kind: str
    status: str
    amount: int
    institution_id: str
    insured_region: str
    treatment_region: str
    at: str
    original_key: str = ""
    hifp_pay: int = 0
    hifob_pay: int = 0
    hifmi_pay: int = 0
    maf_pay: int = 0
    acct_pay: int = 0
    psn_cash_pay: int = 0
    request: Mapping[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        try:
            row_from_json(self.to_dict())
        except _Bad as e:
            raise InvalidJournalRow(f"journal line {self.key!r}: {e.field}: {e.message}", field=e.field,
                                    key=self.key) from None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-lines object of this line."""
        return {f: (dict(self.request) if self.request is not None else None) if f == "request"
                else getattr(self, f) for f in FIELDS}

    def csv_values(self) -> list[str]:
        out = []
        for f in FIELDS:
            v = getattr(self, f)
            out.append(("" if v is None else _canonical(dict(v))) if f == "request" else str(v))
        return out

    @classmethod
    def from_row(cls, row: Row) -> JournalLine:
        """A line from a validated DB row (as `row_from_csv`/`row_from_json` return)."""
        (tid, day, key, kind, orig, status, amount, hifp, hifob, hifmi, maf, acct, cash, _known,
         inst, ins, trt, at, req) = row[:19]
        return cls(terminal_id=tid, business_day=day, key=key, kind=kind, status=status, amount=amount,
                   institution_id=inst, insured_region=ins, treatment_region=trt, at=at, original_key=orig or "",
                   hifp_pay=hifp, hifob_pay=hifob, hifmi_pay=hifmi, maf_pay=maf, acct_pay=acct, psn_cash_pay=cash,
                   request=json.loads(req) if req else None)


# -- reading --------------------------------------------------------------------------------------------
def _bad_row(name: str, row: int, e: _Bad) -> InvalidJournalRow:
    return InvalidJournalRow(f"{name} row {row}: {e.field}: {e.message}", file=name, row=row, field=e.field)


def _open(src: str | Path | IO[str]) -> tuple[IO[str], str, bool]:
    if isinstance(src, (str, Path)):
        try:
            return open(src, encoding="utf-8", newline=""), Path(src).name, True  # noqa: SIM115
        except OSError as e:
            raise InvalidJournalRow(f"cannot read journal file {src}: {e.strerror}", file=str(src), row=0) from None
    return src, getattr(src, "name", "journal"), False


def _csv_records(f: IO[str], name: str) -> Iterator[tuple[int, list[str]]]:
    """(record number, values) of each CSV record of `f` after its header; 1 = first data record, and a
    blank line counts (values [])."""
    reader = csv.reader(f, strict=True)
    n = 0
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError) as e:
            raise InvalidJournalRow(f"{name} row {n + 1}: unreadable CSV: {e}", file=name, row=n + 1) from None
        n += 1
        yield n, values


def _csv_header(f: IO[str], name: str) -> None:
    try:
        header = next(csv.reader(f, strict=True), None)
    except (csv.Error, UnicodeDecodeError) as e:
        raise InvalidJournalRow(f"{name}: not a CSV journal: {e}", file=name, row=0) from None
    if header is None or [h.strip().lstrip("\ufeff") for h in header] != list(FIELDS):
        raise InvalidJournalRow(f"{name}: line 1 must be the header {CSV_HEADER}", file=name, row=0)


def iter_csv_rows(src: str | Path | IO[str], *, check_request: bool = True) -> Iterator[Row]:
    """Validated DB rows of a CSV journal file, in file order."""
    f, name, close = _open(src)
    try:
        _csv_header(f, name)
        for n, values in _csv_records(f, name):
            if not values:
                continue
            try:
                yield row_from_csv(values, check_request=check_request)
            except _Bad as e:
                raise _bad_row(name, n, e) from None
    finally:
        if close:
            f.close()


def import_row(row: Row) -> tuple[Any, ...]:
    """The stored columns (IMPORT_COLS) of a validated DB row."""
    return (row[1], row[0], row[2], row[3], row[4], row[5], *row[6:14], row[14], row[18])


ROWS_PER_FILE = 10**12
"""Import row numbers: `file index * ROWS_PER_FILE + file row`, so they follow the files' order and name the
file and row of any line."""


@dataclass
class Chunk:
    """Validated lines of one journal file, as the import stores them: `groups` maps (business day,
    terminal) to rows (IMPORT_COLS, then the import row number), each group in file order."""

    name: str
    file_index: int
    lines: int = 0
    groups: dict[tuple[str, str], list[tuple[Any, ...]]] = field(default_factory=dict)


Terminals = Mapping[str, "str | None"]
"""Registered terminals and their institutions (None: any institution)."""


def _terminal_check(terminals: Terminals, tid: str, inst: str, name: str, n: int) -> None:
    if tid not in terminals:
        raise UnknownTerminal(f"{name} row {n}: terminal {tid} is not registered for reconciliation",
                              terminal_id=tid, file=name, row=n)
    want = terminals[tid]
    if want is not None and inst != want:
        raise InvalidJournalRow(f"{name} row {n}: institution_id: terminal {tid} belongs to {want}, not {inst}",
                                file=name, row=n, field="institution_id")


def chunks(rows: Iterable[tuple[int, Row]], name: str, terminals: Terminals, *, file_index: int = 0,
           size: int = 20_000) -> Iterator[Chunk]:
    """Chunks of (file row, validated DB row) pairs for the import, checking each line's terminal is
    registered (UnknownTerminal) and its institution is the terminal's (InvalidJournalRow). A failing line
    ends the iteration with its error, after the chunk of the lines before it."""
    base = file_index * ROWS_PER_FILE
    chunk = Chunk(name, file_index)
    it = iter(rows)
    while True:
        try:
            item = next(it, None)
            if item is not None:
                _terminal_check(terminals, item[1][0], item[1][14], name, item[0])
        except SettlementError:
            if chunk.lines:
                yield chunk
            raise
        if item is None:
            break
        n, full = item
        r = (*import_row(full), base + n)
        chunk.groups.setdefault((r[0], r[1]), []).append(r)
        chunk.lines += 1
        if chunk.lines >= size:
            yield chunk
            chunk = Chunk(name, file_index)
    if chunk.lines:
        yield chunk


_I = r"[A-Za-z0-9_.\-]{1,64}"
_N = r"([0-9]{1,16})"
_T = r'([^\s,"][^,"\r\n]{0,63})'
_HEAD = re.compile(
    rf"({_I}),([0-9]{{4}}-[0-9][0-9]-[0-9][0-9]),(\1:{_I}),(settle|refund|void|pension_collect),((?:{_I}:{_I})?),"
    rf"(confirmed|reversed|failed|pending),{_N},{_N},{_N},{_N},{_N},{_N},{_N},{_T},{_T},{_T},([^,\"\r\n]+),")
"""The first 17 fields of a plain CSV journal line, each already in a form `_row_from_csv` accepts (terminal
id and key serial of the id characters, the key starting with the terminal id, kind, status, an original
key of the key form or nothing, amounts of 1-16 digits, institution and regions of at most 64 characters
starting with a visible one, no quotes): lines that match need only the checks that span fields."""


def iter_csv_import(src: str | Path | IO[str], terminals: Terminals, *, check_request: bool = True,
                    file_index: int = 0, size: int = 20_000) -> Iterator[Chunk]:
    """`chunks()` of a CSV journal file, validated exactly as `iter_csv_rows` does (same checks, same
    errors) but faster. A plain line (its first 17 fields match `_HEAD`, the request is the rest of the line,
    quoted or not, with no line break inside) is split by the regex and checked inline against the caches of
    values already validated; any other record is read by csv.reader from this line on (so a field running
    over several lines reads as csv reads it) and validated by `_row_from_csv`, which names the bad field."""
    f, name, close = _open(src)
    days, originals = _days, ORIGINALS
    head, fromiso = _HEAD.match, _fromiso
    limit = csv.field_size_limit()
    # registered terminal -> (the id, its institution or None), for ids of the right form
    registered = {t: (t, i) for t, i in terminals.items() if type(t) is str and _ID.fullmatch(t)}
    no = (None, False)
    base = file_index * ROWS_PER_FILE
    chunk = Chunk(name, file_index)
    groups = chunk.groups
    lines = n = 0
    try:
        _csv_header(f, name)
        it = iter(f)
        while True:
            try:
                line = next(it)
            except StopIteration:
                break
            except UnicodeDecodeError as err:
                if lines:
                    chunk.lines = lines
                    yield chunk
                raise InvalidJournalRow(f"{name} row {n + 1}: unreadable CSV: {err}", file=name, row=n + 1) from None
            n += 1
            m = head(line)
            if m is not None and len(line) <= limit:
                req = line[m.end():]
                if req[-1:] == "\n":
                    req = req[:-2] if req[-2:-1] == "\r" else req[:-1]
                elif req[-1:] == "\r":
                    req = req[:-1]
                if req[:1] != '"':
                    plain = '"' not in req and "," not in req
                elif len(req) >= 2 and req[-1] == '"':  # a quoted field closing at the line end...
                    quoted = req[1:-1]
                    req = quoted.replace('""', '"')
                    plain = quoted.count('"') == 2 * (len(quoted) - len(req))  # ...with every quote doubled
                else:
                    plain = False
                tid, day, key, kind, orig, status, a, b, c, d, e, g, h, inst, ins, trt, at = m.groups()
                tid, want = registered.get(tid, no)
                day = days.get(day)
                if (plain and want is not False and (want is None or want == inst) and day is not None
                        and (not orig if kind in originals else status != "reversed" and orig != key and orig)
                        and (not req or not check_request or req[0] == "{")):
                    amount = int(a)
                    b, c, d, e, g, h = int(b), int(c), int(d), int(e), int(g), int(h)
                    total = b + c + d + e + g + h
                    if kind == "pension_collect":
                        ok, known = total == 0, 0
                    elif (status == "confirmed" and kind != "void") or total:
                        ok, known = total == amount, 1
                    else:
                        ok, known = True, 0
                    if ok and (amount or kind == "void") and amount <= MAX_FEN:
                        try:
                            t = fromiso(at)
                        except ValueError:
                            t = None
                        if t is not None and t.tzinfo is not None:
                            if req and check_request:
                                try:
                                    _request_text(req)
                                except _Bad as err:
                                    if lines:
                                        chunk.lines = lines
                                        yield chunk
                                    raise _bad_row(name, n, err) from None
                            row = (day, tid, key, kind, orig, status, amount, b, c, d, e, g, h, known, inst, req,
                                   base + n)
                            group = groups.get((day, tid))
                            if group is None:
                                groups[(day, tid)] = [row]
                            else:
                                group.append(row)
                            lines += 1
                            if lines >= size:
                                chunk.lines = lines
                                yield chunk
                                chunk = Chunk(name, file_index)
                                groups = chunk.groups
                                lines = 0
                            continue
            # anything else: csv.reader reads this record (and any lines it runs over), the slow path checks it
            try:
                try:
                    v = next(csv.reader(itertools.chain((line,), it), strict=True))
                except (csv.Error, UnicodeDecodeError) as err:
                    raise InvalidJournalRow(f"{name} row {n}: unreadable CSV: {err}", file=name, row=n) from None
                if not v:
                    continue
                full = _row_from_csv(v, check_request=check_request)
                _terminal_check(terminals, full[0], full[14], name, n)
            except (_Bad, SettlementError) as err:
                if lines:
                    chunk.lines = lines
                    yield chunk
                if isinstance(err, _Bad):
                    raise _bad_row(name, n, err) from None
                raise
            groups.setdefault((full[1], full[0]), []).append((*import_row(full), base + n))
            lines += 1
            if lines >= size:
                chunk.lines = lines
                yield chunk
                chunk = Chunk(name, file_index)
                groups = chunk.groups
                lines = 0
        if lines:
            chunk.lines = lines
            yield chunk
    finally:
        if close:
            f.close()


def iter_jsonl_rows(src: str | Path | IO[str]) -> Iterator[Row]:
    """Validated DB rows of a JSON-lines journal file, in file order."""
    return (row for _, row in iter_jsonl_numbered(src))


def iter_jsonl_numbered(src: str | Path | IO[str]) -> Iterator[tuple[int, Row]]:
    """(file row, validated DB row) of each line of a JSON-lines journal file, in file order."""
    f, name, close = _open(src)
    try:
        n = 0
        try:
            for text in f:
                n += 1
                if not text.strip():
                    continue
                try:
                    obj = json.loads(text)
                except ValueError as e:
                    raise _bad_row(name, n, _Bad("(row)", f"not a JSON object: {e}")) from None
                try:
                    yield n, row_from_json(obj)
                except _Bad as e:
                    raise _bad_row(name, n, e) from None
        except UnicodeDecodeError as e:
            raise InvalidJournalRow(f"{name} row {n + 1}: not UTF-8: {e}", file=name, row=n + 1) from None
    finally:
        if close:
            f.close()


def iter_import(path: str | Path, terminals: Terminals, *, check_request: bool = True, file_index: int = 0
                ) -> Iterator[Chunk]:
    """The import's chunks of a journal file: `.jsonl`/`.ndjson` as JSON lines, anything else as CSV."""
    if str(path).endswith((".jsonl", ".ndjson")):
        return chunks(iter_jsonl_numbered(path), Path(path).name, terminals, file_index=file_index)
    return iter_csv_import(path, terminals, check_request=check_request, file_index=file_index)


def iter_rows(path: str | Path, *, check_request: bool = True) -> Iterator[Row]:
    """Validated DB rows of a journal file: `.jsonl`/`.ndjson` as JSON lines, anything else as CSV."""
    if str(path).endswith((".jsonl", ".ndjson")):
        return iter_jsonl_rows(path)
    return iter_csv_rows(path, check_request=check_request)


def read_journal(src: str | Path | IO[str], *, jsonl: bool | None = None) -> list[JournalLine]:
    """All lines of a journal file (layout by extension unless `jsonl` is given)."""
    if jsonl is None:
        jsonl = str(getattr(src, "name", src)).endswith((".jsonl", ".ndjson"))
    rows = iter_jsonl_rows(src) if jsonl else iter_csv_rows(src)
    return [JournalLine.from_row(r) for r in rows]


# -- writing --------------------------------------------------------------------------------------------
def write_journal_csv(lines: Iterable[JournalLine], dest: str | Path | IO[str]) -> int:
    """Write lines as a CSV journal; returns the number of lines."""
    if isinstance(dest, (str, Path)):
        with open(dest, "w", encoding="utf-8", newline="") as f:
            return write_journal_csv(lines, f)
    w = csv.writer(dest, lineterminator="\n")
    w.writerow(FIELDS)
    n = 0
    for ln in lines:
        w.writerow(ln.csv_values())
        n += 1
    return n


def write_journal_jsonl(lines: Iterable[JournalLine], dest: str | Path | IO[str]) -> int:
    """Write lines as a JSON-lines journal; returns the number of lines."""
    if isinstance(dest, (str, Path)):
        with open(dest, "w", encoding="utf-8", newline="") as f:
            return write_journal_jsonl(lines, f)
    n = 0
    for ln in lines:
        dest.write(json.dumps(ln.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n")
        n += 1
    return n


def journal_csv_text(lines: Iterable[JournalLine]) -> str:
    buf = io.StringIO()
    write_journal_csv(lines, buf)
    return buf.getvalue()
