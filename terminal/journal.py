"""The terminal's write-ahead journal (SQLite, WAL, synchronous=FULL).

Every request that moves money or changes state at the centre is written here, durably, *before* it
leaves the terminal, under the idempotency key the centre will see (`{terminal_id}:{serial}`). What the
centre answers is written back. After a timeout or a crash, `pending` entries are resolved (see
`terminal.recovery`): the centre is asked whether it applied the key; applied -> `confirmed`, not
applied -> a void is stored and forwarded until acknowledged, leaving the original `reversed`.

States of an entry:

    pending ──> confirmed ──(void acknowledged)──> reversed
       │  └───> failed       (the centre refused it: nothing was posted)
       └──────> reversed     (never applied; the void's tombstone keeps a late arrival out)

A void is an entry of its own (kind "void", `original_key` = the key it undoes) and goes through the same
states; it is retried until `confirmed`. Nothing here ever holds a PIN or a key. The journal is what
day-end reconciliation reads (`export_day`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from settlement.wire import MONEY_KINDS
from terminal.clock import Clock
from terminal.localdb import immediate
from terminal.logs import event

PENDING, CONFIRMED, FAILED, REVERSED = "pending", "confirmed", "failed", "reversed"
STATES = (PENDING, CONFIRMED, FAILED, REVERSED)
ENTRY_KINDS = ("register", "certify", "identity", *MONEY_KINDS)
"""What the journal records: every request sent to the centre."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    key           TEXT PRIMARY KEY,
    serial        INTEGER NOT NULL UNIQUE,
    kind          TEXT NOT NULL,
    business_day  TEXT NOT NULL,
    state         TEXT NOT NULL,
    original_key  TEXT,
    person_id     TEXT,
    card_no       TEXT,
    amount        INTEGER NOT NULL DEFAULT 0,
    request       TEXT NOT NULL,
    response      TEXT,
    error         TEXT,
    reason        TEXT,
    card_record   TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_state ON journal (state);
CREATE INDEX IF NOT EXISTS journal_day ON journal (business_day);
CREATE INDEX IF NOT EXISTS journal_card ON journal (card_no);
CREATE INDEX IF NOT EXISTS journal_original ON journal (original_key);
CREATE INDEX IF NOT EXISTS journal_visit ON journal (json_extract(response, '$.mdtrt_id')) WHERE kind = 'register';
"""
#: columns added after the first release (journals created before get them on open); receipts read them
ADDED_COLUMNS = {
    "holder_name": "TEXT",  # the holder's name as read from the card
    "operator": "TEXT",  # who did it at the counter (refunds)
}


class JournalError(RuntimeError):
    """The journal cannot do what was asked (unknown key, illegal state change)."""


@dataclass(frozen=True)
class Entry:
    key: str
    serial: int
    kind: str
    business_day: str
    state: str
    original_key: str | None
    person_id: str | None
    card_no: str | None
    amount: int
    request: dict[str, Any]
    response: dict[str, Any] | None
    error: dict[str, Any] | None
    reason: str | None
    card_record: str | None
    attempts: int
    created_at: str
    updated_at: str
    holder_name: str | None = None
    operator: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def business_day_today() -> dt.date:
    """Today's business day in China by the wall clock (a Journal uses its own clock: `journal.clock.today()`)."""
    return Clock().today()


def _row(r: sqlite3.Row) -> Entry:
    d = dict(r)
    for k in ("request", "response", "error"):
        d[k] = json.loads(d[k]) if d[k] else None
    return Entry(**d)


def counting(last: int) -> int:
    """Serials 1, 2, 3... (the native API takes any serial)."""
    return last + 1


class Journal:
    """The journal of one terminal. Thread-safe; each method is one durable transaction. `serials` gives the
    next serial from the last one (its form is the upstream's: `terminal.centre.serials_for`)."""

    def __init__(self, path: str | Path, terminal_id: str, serials: Callable[[int], int] = counting, *,
                 clock: Clock | None = None) -> None:
        self.path = str(path)
        self.clock = clock or Clock()
        self.terminal_id = terminal_id
        self.next_serial = serials
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a write that returned is on disk
        self._db.executescript(SCHEMA)
        have = {r["name"] for r in self._db.execute("PRAGMA table_info(journal)")}
        for name, sql_type in ADDED_COLUMNS.items():
            if name not in have:
                self._db.execute(f"ALTER TABLE journal ADD COLUMN {name} {sql_type}")
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return immediate(self._db, self._lock)

    # ---- writing ---------------------------------------------------------------------------------------
    def begin(
        self,
        kind: str,
        request: dict[str, Any],
        *,
        business_day: dt.date | None = None,
        original_key: str | None = None,
        person_id: str | None = None,
        card_no: str | None = None,
        amount: int = 0,
        holder_name: str | None = None,
        operator: str | None = None,
        reason: str | None = None,
    ) -> Entry:
        """Allocate the next serial and journal the request as `pending` (durable before it is sent).

        `request` is what will be sent, minus the serial (added here as `terminal_serial`); it must hold no
        PIN or key: callers pass only what the centre receives.
        """
        if kind not in ENTRY_KINDS:
            raise JournalError(f"unknown journal kind {kind!r}")
        day = (business_day or self.clock.today()).isoformat()
        now = self.clock.stamp()
        with self._tx() as db:
            (last,) = db.execute("SELECT COALESCE(MAX(serial), 0) FROM journal").fetchone()
            serial = self.next_serial(last)
            key = f"{self.terminal_id}:{serial}"
            body = {**request, "terminal_serial": str(serial)}
            db.execute(
                "INSERT INTO journal (key, serial, kind, business_day, state, original_key, person_id, card_no,"
                " amount, request, created_at, updated_at, holder_name, operator, reason)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (key, serial, kind, day, PENDING, original_key, person_id, card_no, amount,
                 json.dumps(body, ensure_ascii=False), now, now, holder_name, operator, reason),
            )
        event("transaction.begin", key=key, kind=kind, amount=amount, original_key=original_key, business_day=day)
        return self.get(key)

    def _set(self, key: str, allowed_from: tuple[str, ...], **fields: Any) -> Entry:
        fields["updated_at"] = self.clock.stamp()
        for k in ("response", "error"):
            if k in fields and fields[k] is not None:
                fields[k] = json.dumps(fields[k], ensure_ascii=False, default=str)
        with self._tx() as db:
            row = db.execute("SELECT state FROM journal WHERE key = ?", (key,)).fetchone()
            if row is None:
                raise JournalError(f"no journal entry {key}")
            if row["state"] not in allowed_from:
                if fields.get("state") == row["state"]:
                    pass  # idempotent repeat of the same transition
                else:
                    raise JournalError(f"{key} is {row['state']}, cannot become {fields.get('state')}")
            cols = ", ".join(f"{k} = ?" for k in fields)
            db.execute(f"UPDATE journal SET {cols} WHERE key = ?", (*fields.values(), key))
        entry = self.get(key)
        if "state" in fields:
            event(f"transaction.{entry.state}", logging.WARNING if entry.state == FAILED else logging.INFO,
                  key=key, kind=entry.kind, amount=entry.amount, original_key=entry.original_key,
                  code=(entry.error or {}).get("code") if entry.state == FAILED else None,
                  reason=entry.reason if entry.state == REVERSED else None)
        return entry

    def confirm(self, key: str, response: dict[str, Any], amount: int | None = None) -> Entry:
        extra = {} if amount is None else {"amount": amount}
        return self._set(key, (PENDING,), state=CONFIRMED, response=response, error=None, **extra)

    def fail(self, key: str, error: dict[str, Any]) -> Entry:
        """The centre refused the request (definitive): nothing was posted."""
        return self._set(key, (PENDING,), state=FAILED, error=error)

    def mark_reversed(self, key: str, reason: str) -> Entry:
        return self._set(key, (PENDING, CONFIRMED), state=REVERSED, reason=reason)

    def note_attempt(self, key: str, error: dict[str, Any] | None = None) -> None:
        event("transaction.retry", logging.WARNING, key=key, code=(error or {}).get("code"))
        with self._tx() as db:
            db.execute(
                "UPDATE journal SET attempts = attempts + 1, error = ?, updated_at = ? WHERE key = ?",
                (json.dumps(error, default=str) if error else None, self.clock.stamp(), key),
            )

    def set_reason(self, key: str, reason: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE journal SET reason = ?, updated_at = ? WHERE key = ?", (reason, self.clock.stamp(), key))

    def set_card_record(self, key: str, outcome: str) -> Entry:
        """Whether the transaction record reached the card ('written' or 'failed: why')."""
        with self._tx() as db:
            db.execute("UPDATE journal SET card_record = ?, updated_at = ? WHERE key = ?",
                       (outcome, self.clock.stamp(), key))
        return self.get(key)

    # ---- reading ---------------------------------------------------------------------------------------
    def get(self, key: str) -> Entry:
        with self._lock:
            r = self._db.execute("SELECT * FROM journal WHERE key = ?", (key,)).fetchone()
        if r is None:
            raise JournalError(f"no journal entry {key}")
        return _row(r)

    def find(self, key: str) -> Entry | None:
        try:
            return self.get(key)
        except JournalError:
            return None

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Entry]:
        with self._lock:
            return [_row(r) for r in self._db.execute(sql, args).fetchall()]

    def in_state(self, state: str, kinds: tuple[str, ...] = ENTRY_KINDS) -> list[Entry]:
        marks = ",".join("?" * len(kinds))
        return self._query(f"SELECT * FROM journal WHERE state = ? AND kind IN ({marks}) ORDER BY serial",
                           (state, *kinds))

    def voids_of(self, original_key: str) -> list[Entry]:
        return self._query("SELECT * FROM journal WHERE kind = 'void' AND original_key = ? ORDER BY serial",
                           (original_key,))

    def by_day(self, day: dt.date) -> list[Entry]:
        return self._query("SELECT * FROM journal WHERE business_day = ? ORDER BY serial", (day.isoformat(),))

    def by_card(self, card_no: str, limit: int = 100) -> list[Entry]:
        return self._query("SELECT * FROM journal WHERE card_no = ? ORDER BY serial DESC LIMIT ?", (card_no, limit))

    def visit(self, mdtrt_id: str) -> dict[str, Any] | None:
        """The centre's answer to a registration made at this terminal (person, institution...), if any."""
        rows = self._query(
            "SELECT * FROM journal WHERE kind = 'register' AND state = 'confirmed'"
            " AND json_extract(response, '$.mdtrt_id') = ? LIMIT 1", (mdtrt_id,))
        return rows[0].response if rows else None

    def all(self) -> list[Entry]:
        return self._query("SELECT * FROM journal ORDER BY serial")

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM journal GROUP BY state").fetchall()
        return {s: 0 for s in STATES} | {r[0]: r[1] for r in rows}
