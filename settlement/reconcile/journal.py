"""Reading terminal journal files for day-end reconciliation: whole files, and chunks for the import.

The line layout (CSV and JSON lines, every field and check) is the wire contract: `settlement.wire`
(`JournalLine`, `row_from_csv`, `row_from_json`). Readers validate every row and raise `InvalidJournalRow`
naming the file, the row (1 = first data row) and the field; they never return a partly valid file.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from settlement.errors import IncompleteJournal, InvalidJournalRow, SettlementError, UnknownTerminal
from settlement.reconcile.encoding import DEFAULT, hint, undecodable
from settlement.wire import (
    AMOUNTS,
    CSV_HEADER,
    FIELDS,
    ID_FORM,
    MAX_FEN,
    ORIGINALS,
    TRAILER_TAG,
    JournalLine,
    LineError,
    Row,
    Trailer,
    check_request_text,
    row_from_csv,
    row_from_json,
    valid_days,
)

IMPORT_COLS = ("business_day", "terminal_id", "key", "kind", "original_key", "status", *AMOUNTS, "parts_known",
               "institution_id", "request")
"""What the import stores of a line, in this order; the import adds `row_no`."""


# -- reading --------------------------------------------------------------------------------------------
def _bad_row(name: str, row: int, e: LineError) -> InvalidJournalRow:
    return InvalidJournalRow(f"{name} row {row}: {e.field}: {e.message}", file=name, row=row, field=e.field)


def _open(src: str | Path | IO[str], encoding: str = DEFAULT) -> tuple[IO[str], str, bool]:
    if isinstance(src, (str, Path)):
        try:
            return open(src, encoding=encoding, newline=""), Path(src).name, True  # noqa: SIM115
        except OSError as e:
            raise InvalidJournalRow(f"cannot read journal file {src}: {e.strerror}", file=str(src), row=0) from None
    return src, getattr(src, "name", "journal"), False


def _undecodable(src: str | Path | IO[str], name: str, encoding: str, row: int, *,
                 header: bool = True) -> InvalidJournalRow:
    """The error for a file that does not decode: the row is found again from the file's bytes (`row`, where
    reading stopped, is only a guess: text is decoded ahead in blocks)."""
    what = f"not {encoding.upper()} text"
    if isinstance(src, (str, Path)):
        row, what = undecodable(src, encoding, header=header)
    return InvalidJournalRow(f"{name} row {row}: {what}; {hint(encoding)}", file=name, row=row, field="(encoding)",
                             encoding=encoding)


def _after_trailer(rest: Iterable[str], name: str, row: int) -> None:
    """The trailer ends a file: anything but blank lines after it is refused."""
    for n, text in enumerate(rest, row + 1):
        if text.strip():
            raise InvalidJournalRow(f"{name} row {n}: a line after the trailer (the trailer ends the file)",
                                    file=name, row=n)


def _csv_records(f: IO[str], name: str, src: str | Path | IO[str] | None = None, encoding: str = DEFAULT
                 ) -> Iterator[tuple[int, list[str]]]:
    """(record number, values) of each CSV record of `f` after its header; 1 = first data record, and a
    blank line counts (values [])."""
    reader = csv.reader(f, strict=True)
    n = 0
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError:
            raise _undecodable(f if src is None else src, name, encoding, n + 1) from None
        except csv.Error as e:
            raise InvalidJournalRow(f"{name} row {n + 1}: unreadable CSV: {e}", file=name, row=n + 1) from None
        n += 1
        if values and values[0] == TRAILER_TAG:
            _after_trailer((",".join(v) for v in reader), name, n)
            return
        yield n, values


def _csv_header(f: IO[str], name: str, src: str | Path | IO[str] | None = None, encoding: str = DEFAULT) -> None:
    try:
        header = next(csv.reader(f, strict=True), None)
    except UnicodeDecodeError:
        raise _undecodable(f if src is None else src, name, encoding, 0) from None
    except csv.Error as e:
        raise InvalidJournalRow(f"{name}: not a CSV journal: {e}", file=name, row=0) from None
    if header is None or [h.strip().lstrip("\ufeff") for h in header] != list(FIELDS):
        raise InvalidJournalRow(f"{name}: line 1 must be the header {CSV_HEADER}", file=name, row=0)


def iter_csv_rows(src: str | Path | IO[str], *, check_request: bool = True, encoding: str = DEFAULT
                  ) -> Iterator[Row]:
    """Validated DB rows of a CSV journal file, in file order."""
    f, name, close = _open(src, encoding)
    try:
        _csv_header(f, name, src, encoding)
        for n, values in _csv_records(f, name, src, encoding):
            if not values:
                continue
            try:
                yield row_from_csv(values, check_request=check_request)
            except LineError as e:
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
                    file_index: int = 0, size: int = 20_000, encoding: str = DEFAULT) -> Iterator[Chunk]:
    """`chunks()` of a CSV journal file, validated exactly as `iter_csv_rows` does (same checks, same
    errors) but faster. A plain line (its first 17 fields match `_HEAD`, the request is the rest of the line,
    quoted or not, with no line break inside) is split by the regex and checked inline against the caches of
    values already validated; any other record is read by csv.reader from this line on (so a field running
    over several lines reads as csv reads it) and validated by `_row_from_csv`, which names the bad field."""
    f, name, close = _open(src, encoding)
    days, originals = valid_days, ORIGINALS
    head, fromiso = _HEAD.match, dt.datetime.fromisoformat
    limit = csv.field_size_limit()
    # registered terminal -> (the id, its institution or None), for ids of the right form
    registered = {t: (t, i) for t, i in terminals.items() if type(t) is str and ID_FORM.fullmatch(t)}
    no = (None, False)
    base = file_index * ROWS_PER_FILE
    chunk = Chunk(name, file_index)
    groups = chunk.groups
    lines = n = 0
    try:
        _csv_header(f, name, src, encoding)
        it = iter(f)
        while True:
            try:
                line = next(it)
            except StopIteration:
                break
            except UnicodeDecodeError:
                if lines:
                    chunk.lines = lines
                    yield chunk
                raise _undecodable(src, name, encoding, n + 1) from None
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
                                    check_request_text(req)
                                except LineError as err:
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
            if line.startswith(TRAILER_TAG):
                _after_trailer(it, name, n)
                break
            # anything else: csv.reader reads this record (and any lines it runs over), the slow path checks it
            try:
                try:
                    v = next(csv.reader(itertools.chain((line,), it), strict=True))
                except UnicodeDecodeError:
                    raise _undecodable(src, name, encoding, n) from None
                except csv.Error as err:
                    raise InvalidJournalRow(f"{name} row {n}: unreadable CSV: {err}", file=name, row=n) from None
                if not v:
                    continue
                full = row_from_csv(v, check_request=check_request)
                _terminal_check(terminals, full[0], full[14], name, n)
            except (LineError, SettlementError) as err:
                if lines:
                    chunk.lines = lines
                    yield chunk
                if isinstance(err, LineError):
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


def iter_jsonl_rows(src: str | Path | IO[str], *, encoding: str = DEFAULT) -> Iterator[Row]:
    """Validated DB rows of a JSON-lines journal file, in file order."""
    return (row for _, row in iter_jsonl_numbered(src, encoding=encoding))


def iter_jsonl_numbered(src: str | Path | IO[str], *, encoding: str = DEFAULT) -> Iterator[tuple[int, Row]]:
    """(file row, validated DB row) of each line of a JSON-lines journal file, in file order."""
    f, name, close = _open(src, encoding)
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
                    raise _bad_row(name, n, LineError("(row)", f"not a JSON object: {e}")) from None
                if isinstance(obj, dict) and "trailer" in obj:
                    _after_trailer(f, name, n)
                    return
                try:
                    yield n, row_from_json(obj)
                except LineError as e:
                    raise _bad_row(name, n, e) from None
        except UnicodeDecodeError:
            raise _undecodable(src, name, encoding, n + 1, header=False) from None
    finally:
        if close:
            f.close()


def iter_import(path: str | Path, terminals: Terminals, *, check_request: bool = True, file_index: int = 0,
                encoding: str = DEFAULT) -> Iterator[Chunk]:
    """The import's chunks of a journal file: `.jsonl`/`.ndjson` as JSON lines, anything else as CSV."""
    if str(path).endswith((".jsonl", ".ndjson")):
        return chunks(iter_jsonl_numbered(path, encoding=encoding), Path(path).name, terminals,
                      file_index=file_index)
    return iter_csv_import(path, terminals, check_request=check_request, file_index=file_index, encoding=encoding)


def iter_rows(path: str | Path, *, check_request: bool = True, encoding: str = DEFAULT) -> Iterator[Row]:
    """Validated DB rows of a journal file: `.jsonl`/`.ndjson` as JSON lines, anything else as CSV."""
    if str(path).endswith((".jsonl", ".ndjson")):
        return iter_jsonl_rows(path, encoding=encoding)
    return iter_csv_rows(path, check_request=check_request, encoding=encoding)


def read_journal(src: str | Path | IO[str], *, jsonl: bool | None = None, encoding: str = DEFAULT
                 ) -> list[JournalLine]:
    """All lines of a journal file (layout by extension unless `jsonl` is given)."""
    if jsonl is None:
        jsonl = str(getattr(src, "name", src)).endswith((".jsonl", ".ndjson"))
    rows = iter_jsonl_rows(src, encoding=encoding) if jsonl else iter_csv_rows(src, encoding=encoding)
    return [JournalLine.from_row(r) for r in rows]


# -- trailers ---------------------------------------------------------------------------------------------
_TAIL = 1 << 16  # how much of a file's end is searched for its trailer (a trailer line is < 200 bytes)


def _parse_trailer(text: str, jsonl: bool) -> Trailer | None:
    try:
        if jsonl:
            t = json.loads(text)["trailer"]
            rows, last, digest = t["rows"], t["last_serial"], t["sha256"]
        else:
            fields = dict(f.partition("=")[::2] for f in next(csv.reader([text]))[1:])
            rows, last, digest = int(fields["rows"]), fields["last_serial"], fields["sha256"]
    except (ValueError, KeyError, TypeError, StopIteration, csv.Error):
        return None
    if type(rows) is not int or rows < 0 or type(last) is not str or not re.fullmatch(r"[0-9a-f]{64}", str(digest)):
        return None
    return Trailer(rows, last, digest)


def _last_key(line: str, jsonl: bool) -> str:
    try:
        if jsonl:
            return str(json.loads(line).get("key", ""))
        return next(csv.reader([line]))[2]
    except (ValueError, IndexError, AttributeError, StopIteration, csv.Error):
        return ""


def _decodes(path: str | Path, size: int) -> bool:
    """Whether the first `size` bytes of `path` are UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with open(path, "rb") as f:
        while size > 0:
            block = f.read(min(size, 1 << 20))
            size -= len(block)
            try:
                decoder.decode(block, final=size <= 0 or not block)
            except UnicodeDecodeError:
                return False
            if not block:
                break
    return True


def check_trailer(path: str | Path, encoding: str = DEFAULT) -> Trailer | None:
    """The trailer of journal file `path` when it has one, checked against the file (rows, last serial, SHA-256
    of the text before it); None when the file has none (a file cut short, or written by an exporter without
    trailers). A trailer that is cut short or disagrees with the file raises IncompleteJournal."""
    name, jsonl = Path(path).name, str(path).endswith((".jsonl", ".ndjson"))
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        f.seek(max(0, size - _TAIL))
        tail = f.read()
        body = tail.rstrip(b"\r\n \t")
        start = body.rfind(b"\n") + 1
        if not body[start:].startswith(TRAILER_TAG.encode() if not jsonl else b'{"trailer"'):
            return None
        at = size - len(tail) + start  # where the trailer line starts
        text = body[start:].decode("ascii", "replace")
        trailer = _parse_trailer(text, jsonl)
        if trailer is None:
            raise IncompleteJournal(f"{name}: the trailer is cut short or malformed: {text[:120]!r}; export the "
                                    "journal again (sscard terminal export)", file=name)
        f.seek(0)
        digest, rows, left, last = hashlib.sha256(), 0, at, b""
        utf8 = codecs.lookup(encoding).name == "utf-8"
        decoder = codecs.getincrementaldecoder(encoding)()  # (another encoding: hashed as UTF-8 text)
        while left:
            block = f.read(min(left, 1 << 20))
            left -= len(block)
            if not block:
                break
            rows += block.count(b"\n")
            if utf8:  # (the bytes are the UTF-8 text: checked to decode only when they disagree, below)
                digest.update(block)
            else:
                try:
                    digest.update(decoder.decode(block, final=not left).encode("utf-8"))
                except UnicodeDecodeError:
                    return None  # (the reader names the row that does not decode)
            last = (last + block)[-_TAIL:]
    lines = last.rstrip(b"\r\n").rsplit(b"\n", 1)
    last_line = lines[-1].decode(encoding, "replace") if rows > (0 if jsonl else 1) else ""
    found = Trailer(rows - (0 if jsonl else 1), _last_key(last_line, jsonl) if last_line else "", digest.hexdigest())
    for what, said, is_ in (("rows", trailer.rows, found.rows), ("last_serial", trailer.last_serial, found.last_serial),
                            ("sha256", trailer.sha256, found.sha256)):
        if said != is_:
            if utf8 and not _decodes(path, at):
                return None  # (the reader names the row that does not decode)
            raise IncompleteJournal(f"{name}: the trailer says {what} {said}, the file has {is_}: the file was cut or "
                                    "changed after export; export the journal again (sscard terminal export)",
                                    file=name, field=what)
    return trailer
