"""Getting data into the reconciliation tables: terminal journals, statements, and the centre's side copied
from the ledger (incrementally, by ledger seq). Every write is one unit of the store."""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from settlement.errors import DayClosed, InvalidJournalRow, InvalidRequest, InvalidStatementRow
from settlement.ledger import Store, Tx
from settlement.reconcile import sql as q
from settlement.reconcile.journal import ROWS_PER_FILE, Chunk, Terminals
from settlement.reconcile.statement import iter_statement

_WINDOW = 20_000  # journal lines gathered, then written per (day, terminal) in key order
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


def import_rows(store: Store, at: str, chunks: Callable[[Terminals], Iterator[Chunk]], *, actor: str,
                sources: list[str], complete: Sequence[bool], progress: Callable[[int], None] | None = None,
                run: Callable[[Callable[[Tx], Any]], Any] | None = None) -> ImportResult:
    """Import journal lines in one unit: all or none. `chunks(terminals)` gives the validated lines
    (recon_journal.Chunk), checked against the registered terminals. The unit runs with `run` where the
    journal lives (the SQLite scratch file's `write`), then the audit is written in `store`; by default both
    are one unit of `store`.

    Each (business day, terminal) met replaces what an earlier import brought for it. Lines are gathered a
    window at a time (small: its rows are still in the CPU's caches when written) and written per (day,
    terminal) in key order, the table's clustering; duplicate keys are counted here. `complete[i]`: whether
    file i had a complete trailer; a (day, terminal) is recorded complete (recon_trailers) when every file
    that brought lines for it was."""
    insert = q.journal_insert(store.dialect)

    def unit(tx: Tx) -> ImportResult:
        known = dict(tx.rows("SELECT terminal_id, institution_id FROM recon_terminals"))
        checked: set[str] = set()
        days: dict[tuple[str, str], int] = {}
        top: dict[tuple[str, str], str] = {}  # greatest key written per (day, terminal)
        copies: dict[tuple[str, str, str], int] = {}
        window: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
        names: dict[int, str] = {}
        whole: dict[tuple[str, str], bool] = {}
        size = n = 0

        def flush() -> None:
            for pair in sorted(window):
                rows = window[pair]
                rows.sort()  # by key; lines come in key order from a terminal, so this is a linear pass
                if pair not in days:
                    tx.execute("DELETE FROM recon_journal WHERE business_day = ? AND terminal_id = ?", pair)
                    days[pair] = 0
                _count_copies(tx, pair, rows, top.get(pair), copies)
                try:
                    tx.executemany(insert, rows)
                except Exception:
                    bad = _bad_request(tx, window, names)
                    if bad is not None:
                        raise bad from None
                    raise
                days[pair] += len(rows)
                top[pair] = rows[-1][2]
            if progress is not None and size:
                progress(size)
            window.clear()

        for chunk in chunks(known):
            names[chunk.file_index] = chunk.name
            for d in sorted({d for d, _ in chunk.groups} - checked):
                check_open(tx, d)
                checked.add(d)
            for pair, rows in chunk.groups.items():
                whole[pair] = whole.get(pair, True) and complete[chunk.file_index]
                have = window.get(pair)
                if have is None:
                    window[pair] = rows
                else:
                    have += rows
            size += chunk.lines
            n += chunk.lines
            if size >= _WINDOW:
                flush()
                size = 0
        flush()
        if tx.dialect != "sqlite":  # (SQLite's insert leaves them out already)
            tx.executemany(q.DROP_POSTED_REQUESTS, sorted(days))
        tx.executemany("UPDATE recon_journal SET copies = ? WHERE business_day = ? AND terminal_id = ? AND key = ?",
                       [(c, *k) for k, c in sorted(copies.items())])
        tx.executemany(
            "INSERT INTO recon_receipts (business_day, terminal_id, lines, sources, imported_at, imported_by)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (business_day, terminal_id) DO UPDATE SET"
            " lines = excluded.lines, sources = excluded.sources, imported_at = excluded.imported_at,"
            " imported_by = excluded.imported_by",
            [(d, t, c, " ".join(sources), at, actor) for (d, t), c in sorted(days.items())])
        tx.executemany("INSERT INTO recon_trailers (business_day, terminal_id, complete) VALUES (?, ?, ?)"
                       " ON CONFLICT (business_day, terminal_id) DO UPDATE SET complete = excluded.complete",
                       [(d, t, int(whole[(d, t)])) for d, t in sorted(days)])
        if run is None:
            audit_import(tx, at, actor, sources, days)
        return ImportResult(n, days)

    if run is None:
        return store.run(unit)
    result: ImportResult = run(unit)
    store.run(lambda tx: audit_import(tx, at, actor, sources, result.days))
    return result


def audit_import(tx: Tx, at: str, actor: str, sources: list[str], days: dict[tuple[str, str], int]) -> None:
    for d in sorted({d for d, _ in days}):
        audit(tx, at, actor, d, "import_journal", "", "", "ok",
              {"sources": sources, "terminals": {t: c for (dd, t), c in sorted(days.items()) if dd == d}})


class Background:
    """`fn()` on a thread of its own, started at once; what it raises is dropped (a later call of the same
    work reports it)."""

    def __init__(self, fn: Callable[[], object]) -> None:
        self._thread = threading.Thread(target=self._run, args=(fn,), name="recon-background", daemon=True)
        self._thread.start()

    @staticmethod
    def _run(fn: Callable[[], object]) -> None:
        with contextlib.suppress(Exception):
            fn()

    def join(self) -> None:
        self._thread.join()


def _count_copies(tx: Tx, pair: tuple[str, str], rows: list[tuple[Any, ...]], top: str | None,
                  copies: dict[tuple[str, str, str], int]) -> None:
    """Count the keys of `rows` (one day and terminal, in key order) met more than once in this import."""
    keys = [r[2] for r in rows]
    stored: dict[str, int] = {}
    if top is not None and keys[0] <= top:  # keys written by an earlier window may come again
        stored = {k: int(c) for k, c in tx.rows(
            "SELECT key, COUNT(*) FROM recon_journal WHERE business_day = ? AND terminal_id = ? AND key >= ?"
            " GROUP BY key", (*pair, keys[0]))}
    if not stored and len(set(keys)) == len(keys):
        return
    for key, c in Counter(keys).items():
        total = c + stored.get(key, 0)
        if total > 1:
            copies[(*pair, key)] = total


def _bad_request(tx: Tx, window: dict[tuple[str, str], list[tuple[Any, ...]]], names: dict[int, str]
                 ) -> InvalidJournalRow | None:
    """After a failed write: the error for the first line of the window (in file order) whose request SQL
    refuses, or None if none is refused (the failure was something else)."""
    if tx.dialect != "sqlite":
        return None
    at = q.JOURNAL_COLS.index("request")
    for r in sorted((r for rs in window.values() for r in rs if r[at]), key=lambda r: r[-1]):
        if not tx.value(q.REQUEST_OK, (r[at], r[at], r[at])):
            name, row = names[r[-1] // ROWS_PER_FILE], r[-1] % ROWS_PER_FILE
            return InvalidJournalRow(f"{name} row {row}: request: not a JSON object", file=name, row=row,
                                     field="request")
    return None


def import_statement(store: Store, at: str, paths: Sequence[str | Path], *, actor: str,
                     encoding: str = "utf-8") -> int:
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
            for row, line in iter_statement(p, encoding=encoding):
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


def sync(run: Callable[[Callable[[Tx], Any]], Any], dialect: str, link: str,
         progress: Callable[[int], None] | None = None) -> int:
    """Copy ledger postings not yet extracted into recon_centre; returns how many were copied.

    `run(fn)` runs `fn(tx)` as a unit where recon_centre lives (the store's `run`, or the SQLite scratch
    file's `write`). Incremental (by ledger seq) and cheap when run often: day-end runs copy only what is
    new; a chunk of postings per unit, so no unit holds its writer for long."""
    def bound(tx: Tx) -> tuple[int, int]:
        if tx.dialect == "postgres":  # wait out transactions that hold a seq but have not committed
            tx.execute("LOCK TABLE ledger_postings IN SHARE MODE")
        hi = int(tx.value("SELECT COALESCE(MAX(seq), 0) FROM ledger_postings"))
        lo = int(tx.value("SELECT seq FROM recon_cursor WHERE name = 'ledger'") or 0)
        if lo > hi:  # the copy is ahead of the ledger (restored from a backup?): copy it again, whole
            tx.execute("DELETE FROM recon_centre")
            tx.execute("DELETE FROM recon_cursor")
            lo = 0
        return lo, hi

    lo, hi = run(bound)
    extract = q.extract_sql(dialect, link)
    copied = 0
    while lo < hi:
        top = min(hi, lo + _EXTRACT_CHUNK)

        def unit(tx: Tx, lo: int = lo, top: int = top) -> int:
            cur = tx.value("SELECT seq FROM recon_cursor WHERE name = 'ledger'")
            if int(cur or 0) != lo:
                return 0  # another run extracted this range meanwhile
            n = tx.execute(extract[0], (lo, top))
            for sql in extract[1:]:
                tx.execute(sql, (lo, top))
            tx.execute("INSERT INTO recon_cursor (name, seq) VALUES ('ledger', ?)"
                       " ON CONFLICT (name) DO UPDATE SET seq = excluded.seq", (top,))
            return n

        n = run(unit)
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
