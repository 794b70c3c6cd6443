"""Getting data into the reconciliation tables: terminal journals, statements, and the centre's side copied
from the ledger (incrementally, by ledger seq). Every write is one unit of the store."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from settlement import recon_sql as q
from settlement.errors import DayClosed, InvalidJournalRow, InvalidRequest, InvalidStatementRow, UnknownTerminal
from settlement.recon_journal import AMOUNTS, Row
from settlement.recon_statement import iter_statement
from settlement.store.base import Store, Tx

_CHUNK = 5_000
_SORT_CHUNK = 200_000
_ORDER = operator.itemgetter(1, 0, 2)  # business_day, terminal_id, key of a journal DB row
_EXTRACT_CHUNK = 250_000


@dataclass(frozen=True)
class ImportResult:
    """What an import brought in: lines per (business day, terminal)."""

    lines: int
    days: dict[tuple[str, str], int]


def transfer_link(store: Store) -> str:
    """How this ledger's transfers name their posting ("seq" or "key"; see recon_sql.transfer_link)."""
    cols = store.read(lambda tx: tx.fetch("SELECT * FROM ledger_transfers WHERE 1 = 0")[0])
    return q.transfer_link(cols)


def import_rows(store: Store, at: str, rows: Callable[[], Iterator[tuple[Row, str, int]]], *, actor: str,
                sources: list[str], json_in_sql: bool, progress: Callable[[int], None] | None = None) -> ImportResult:
    """Import journal rows `(db row, file name, file row)` in one unit of `store`: all or none.

    Each (business day, terminal) met replaces what an earlier import brought for it. Rows are written in
    (day, terminal, key) order, the table's clustering, a chunk at a time; duplicate keys are counted here."""
    cols = ("terminal_id", "business_day", "key", "kind", "original_key", "status", *AMOUNTS, "parts_known",
            "institution_id", "insured_region", "treatment_region", "at", "request", "row_no", "source",
            "source_row")
    insert = f"INSERT INTO recon_journal ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"

    def unit(tx: Tx) -> ImportResult:
        known = dict(tx.rows("SELECT terminal_id, institution_id FROM recon_terminals"))
        days: dict[tuple[str, str], int] = {}
        seen: dict[str, set[str]] = {}  # keys per day in this import: duplicates are counted here
        copies: dict[tuple[str, str, str], int] = {}
        buf: list[tuple[Any, ...]] = []
        n = 0

        def flush() -> None:  # in key order: the table is clustered by (day, terminal, key)
            buf.sort(key=_ORDER)
            for i in range(0, len(buf), _CHUNK):
                tx.executemany(insert, buf[i:i + _CHUNK])
            if progress is not None:
                progress(len(buf))
            buf.clear()

        for row, name, row_no in rows():
            pair = (row[1], row[0])
            count = days.get(pair)
            if count is None:
                count = _new_pair(tx, pair, known, name, row_no)
            inst = known[pair[1]]
            if inst is not None and row[14] != inst:
                raise InvalidJournalRow(f"{name} row {row_no}: institution_id: terminal {pair[1]} belongs to "
                                        f"{inst}, not {row[14]}", file=name, row=row_no, field="institution_id")
            days[pair] = count + 1
            n += 1
            keys = seen.get(pair[0])
            if keys is None:
                keys = seen[pair[0]] = set()
            if row[2] in keys:
                dup = (pair[0], pair[1], row[2])
                copies[dup] = copies.get(dup, 1) + 1
            else:
                keys.add(row[2])
            buf.append((*row, n, name, row_no))
            if len(buf) >= _SORT_CHUNK:
                flush()
        if buf:
            flush()
        seen.clear()
        tx.executemany("UPDATE recon_journal SET copies = ? WHERE business_day = ? AND terminal_id = ? AND key = ?",
                       [(c, *k) for k, c in sorted(copies.items())])
        if json_in_sql:
            for day in sorted({d for d, _ in days}):
                bad = tx.one(
                    "SELECT source, source_row FROM recon_journal WHERE business_day = ? AND request <> ''"
                    " AND (CASE WHEN json_valid(request) THEN json_type(request) ELSE '' END) <> 'object'"
                    " ORDER BY row_no LIMIT 1", (day,))
                if bad is not None:
                    raise InvalidJournalRow(f"{bad['source']} row {bad['source_row']}: request: not a JSON object",
                                            file=bad["source"], row=bad["source_row"], field="request")
        tx.executemany(
            "INSERT INTO recon_receipts (business_day, terminal_id, lines, sources, imported_at, imported_by)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (business_day, terminal_id) DO UPDATE SET"
            " lines = excluded.lines, sources = excluded.sources, imported_at = excluded.imported_at,"
            " imported_by = excluded.imported_by",
            [(d, t, c, " ".join(sources), at, actor) for (d, t), c in sorted(days.items())])
        for d in sorted({d for d, _ in days}):
            audit(tx, at, actor, d, "import_journal", "", "", "ok",
                  {"sources": sources, "terminals": {t: c for (dd, t), c in sorted(days.items()) if dd == d}})
        return ImportResult(n, days)

    return store.run(unit)

def _new_pair(tx: Tx, pair: tuple[str, str], known: dict[str, str | None], name: str, row_no: int) -> int:
    """First line of a (day, terminal) in this import: check it, and drop what an earlier import brought."""
    day, tid = pair
    if tid not in known:
        raise UnknownTerminal(f"{name} row {row_no}: terminal {tid} is not registered for reconciliation",
                              terminal_id=tid, file=name, row=row_no)
    check_open(tx, day)
    tx.execute("DELETE FROM recon_journal WHERE business_day = ? AND terminal_id = ?", pair)
    return 0


def import_statement(store: Store, at: str, paths: Sequence[str | Path], *, actor: str) -> int:
    """Import statement files in one unit; each (value date, account) found replaces earlier lines."""
    if not paths:
        raise InvalidRequest("give at least one statement file")

    def unit(tx: Tx) -> int:
        seen: set[tuple[str, str]] = set()
        accounts: dict[str, bool] = {}
        checked: set[str] = set()
        buf: list[tuple[Any, ...]] = []
        n = 0
        for p in paths:
            name = Path(p).name
            for row, line in iter_statement(p):
                acct = line.account
                if acct not in accounts:
                    accounts[acct] = tx.value("SELECT 1 FROM ledger_accounts WHERE code = ?", (acct,)) is not None
                if not accounts[acct]:
                    raise InvalidStatementRow(f"{name} row {row}: account: no ledger account {acct!r}",
                                              file=name, row=row, field="account")
                pair = (line.value_date, acct)
                if pair not in seen:
                    if line.value_date not in checked:
                        check_open(tx, line.value_date)
                        checked.add(line.value_date)
                    tx.execute("DELETE FROM recon_statement WHERE value_date = ? AND account = ?", pair)
                    seen.add(pair)
                n += 1
                buf.append((line.value_date, acct, n, line.reference, line.net, line.description, f"{name}:{row}"))
        tx.executemany("INSERT INTO recon_statement (value_date, account, row_no, reference, net, description,"
                       " source) VALUES (?, ?, ?, ?, ?, ?, ?)", buf)
        for d in sorted({d for d, _ in seen}):
            audit(tx, at, actor, d, "import_statement", "", "", "ok",
                  {"sources": [Path(p).name for p in paths], "lines": sum(1 for b in buf if b[0] == d)})
        return n

    return store.run(unit)


def sync(store: Store, progress: Callable[[int], None] | None = None) -> int:
    """Copy ledger postings not yet extracted into recon_centre; returns how many were copied.

    Incremental (by ledger seq) and cheap when run often: day-end runs copy only what is new."""
    def bound(tx: Tx) -> tuple[int, int]:
        if tx.dialect == "postgres":  # wait out transactions that hold a seq but have not committed
            tx.execute("LOCK TABLE ledger_postings IN SHARE MODE")
        hi = int(tx.value("SELECT COALESCE(MAX(seq), 0) FROM ledger_postings"))
        lo = tx.value("SELECT seq FROM recon_cursor WHERE name = 'ledger'")
        return int(lo or 0), hi

    lo, hi = store.run(bound)
    extract = q.extract_sql(store.dialect, transfer_link(store))
    copied = 0
    while lo < hi:
        top = min(hi, lo + _EXTRACT_CHUNK)

        def unit(tx: Tx, lo: int = lo, top: int = top) -> int:
            cur = tx.value("SELECT seq FROM recon_cursor WHERE name = 'ledger'")
            if int(cur or 0) != lo:
                return 0  # another run extracted this range meanwhile
            n = tx.execute(extract[0], (lo, top))
            tx.execute(extract[1], (lo, top))
            tx.execute("INSERT INTO recon_cursor (name, seq) VALUES ('ledger', ?)"
                       " ON CONFLICT (name) DO UPDATE SET seq = excluded.seq", (top,))
            return n

        n = store.run(unit)
        copied += n
        lo = top
        if progress is not None:
            progress(n)
    return copied


def check_open(tx: Tx, day: str) -> None:
    if tx.value("SELECT status FROM recon_days WHERE business_day = ?", (day,)) == "closed":
        raise DayClosed(f"business day {day} is closed", business_day=day)


def audit(tx: Tx, at: str, actor: str, day: str, action: str, key: str, posting_key: str, outcome: str,
           detail: dict[str, Any]) -> None:
    tx.execute("INSERT INTO recon_audit (at, actor, business_day, action, key, posting_key, outcome, detail)"
               " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (at, actor or "-", day, action, key, posting_key, outcome,
                json.dumps(detail, ensure_ascii=False, sort_keys=True)))
