"""The region's card blacklist at the counter: fetched from the centre, kept in the journal's SQLite file.

The centre's blacklist (settlement/schemes/cards.py) is versioned; the terminal keeps a copy with the
version and epoch it has reached, asks for the changes after that version on start and then every
`[blacklist] interval` seconds (`BlacklistFetcher`), and applies each answer in one transaction: a card
"active" with nothing to unblock leaves the copy, anything else replaces its entry; a new epoch (another
centre database) or `reset` starts from an empty copy. A malformed answer is refused (BlacklistError) and
the copy stays as it was. Because the copy is in the journal's file it survives restarts and serves while
the centre is unreachable; `age()` says how old it is (since the last fetch that succeeded).

The copy is two tables: `blacklist`, the bulk, and `blacklist_recent`, the changes of the latest answers
(a row there overrides the bulk's row for the card; "active" with no application: the card left the list).
An answer is written to the small table only, so applying 100,000 changes does not rewrite a million-entry
B-tree (card numbers arrive in no useful order: nearly every page of the bulk would change); `merge()` then
moves them into the bulk in chunks, off the card's path (the fetcher does it after each fetch).

Every card the terminal reads is looked up here (`lookup`, by identification code or number: one indexed
statement over both tables, on a connection of its own that writes never block) before anything else
happens with it (terminal/flows.py). The terminal also records here what it did
to cards (APPLICATION BLOCK on a blacklisted card, APPLICATION UNBLOCK once the centre lists it active
again) and whether the centre has been told; the fetcher tells it what it has not yet.

Time is injected (`now`) so tests decide when an interval has passed.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from settlement.errors import SettlementError
from settlement.wire import BlacklistDelta
from terminal.clock import utc_now
from terminal.localdb import immediate
from terminal.logs import event

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS blacklist (
    card_no      TEXT PRIMARY KEY,
    card_id      TEXT,
    status       TEXT NOT NULL,
    application  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS blacklist_card_id ON blacklist (card_id);
CREATE TABLE IF NOT EXISTS blacklist_recent (
    card_no      TEXT PRIMARY KEY,
    card_id      TEXT,
    status       TEXT NOT NULL,
    application  TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blacklist_recent_card_id ON blacklist_recent (card_id);
CREATE TABLE IF NOT EXISTS blacklist_state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    epoch       TEXT NOT NULL,
    version     INTEGER NOT NULL,
    fetched_at  TEXT
);
CREATE TABLE IF NOT EXISTS card_actions (
    seq          INTEGER PRIMARY KEY,
    card_no      TEXT NOT NULL,
    card_id      TEXT NOT NULL,
    action       TEXT NOT NULL CHECK (action IN ('blocked', 'unblocked')),
    application  TEXT NOT NULL,
    status       TEXT NOT NULL,
    at           TEXT NOT NULL,
    reported     INTEGER NOT NULL DEFAULT 0
);
"""


class BlacklistError(Exception):
    """The centre's blacklist answer could not be used (malformed, inconsistent); the copy is unchanged."""


@dataclass(frozen=True)
class Listed:
    """What the copy says of a card: `status` (reported_lost, cancelled, replaced; "active": nothing against
    it, but `application` was blocked by a counter and is to be unblocked)."""

    card_no: str
    card_id: str
    status: str
    application: str

    @property
    def refused(self) -> bool:
        return self.status != "active"


@dataclass(frozen=True)
class Fetched:
    version: int
    entries: int
    pages: int
    reset: bool


class Blacklist:
    """The terminal's copy of the blacklist (thread-safe; its own connection to the journal's file)."""

    def __init__(self, path: str | Path, *, now: Callable[[], dt.datetime] = utc_now) -> None:
        self.now = now
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        if str(path) == ":memory:":
            self._rdb, self._rlock = self._db, self._lock
        else:  # lookups read committed data on their own connection (WAL): a write never holds up a card
            self._rdb = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._rdb.execute("PRAGMA busy_timeout=5000")
            self._rlock = threading.Lock()

    def close(self) -> None:
        with self._lock, self._rlock:
            self._db.close()
            self._rdb.close()

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return immediate(self._db, self._lock)

    # ---- reading -----------------------------------------------------------------------------------------
    def lookup(self, card_id: str | None, card_no: str | None) -> Listed | None:
        """The copy's entry for a card (by identification code, or number), or None."""
        card = ((card_id or "").upper(), card_no or "")
        with self._rlock:  # one statement: one snapshot of both tables
            row = self._rdb.execute(
                "SELECT card_no, card_id, status, application FROM (SELECT *, 0 AS layer FROM blacklist_recent"
                " WHERE card_id = ?1 OR card_no = ?2 UNION ALL SELECT *, 1 FROM blacklist WHERE card_id = ?1 OR"
                " card_no = ?2) ORDER BY layer LIMIT 1", card).fetchone()
        if row is None or (row[2] == "active" and not row[3]):  # not listed, or it left the list
            return None
        return Listed(row[0], row[1] or "", row[2], row[3])

    def head(self) -> tuple[int, str | None]:
        """(version, epoch) of the copy: (0, None) when it was never fetched."""
        with self._rlock:
            row = self._rdb.execute("SELECT version, epoch FROM blacklist_state WHERE id = 1").fetchone()
        return (int(row[0]), row[1]) if row else (0, None)

    def state(self) -> dict[str, Any]:
        """epoch, version, entries held, when last fetched, how old (seconds; None: never fetched)."""
        with self._rlock:
            head = self._rdb.execute("SELECT epoch, version, fetched_at FROM blacklist_state WHERE id = 1").fetchone()
            (count,) = self._rdb.execute(
                "SELECT (SELECT COUNT(*) FROM blacklist WHERE card_no NOT IN (SELECT card_no FROM blacklist_recent))"
                " + (SELECT COUNT(*) FROM blacklist_recent WHERE status <> 'active' OR application <> '')").fetchone()
        epoch, version, fetched = head if head else ("", 0, None)
        age = self.age()
        return {"epoch": epoch, "version": version, "entries": count, "fetched_at": fetched,
                "age_seconds": None if age is None else int(age.total_seconds())}

    def age(self) -> dt.timedelta | None:
        """How long since the copy was last brought up to date (None: never)."""
        with self._rlock:
            row = self._rdb.execute("SELECT fetched_at FROM blacklist_state WHERE id = 1").fetchone()
        if row is None or row[0] is None:
            return None
        return max(dt.timedelta(0), self.now() - dt.datetime.fromisoformat(row[0]))

    # ---- updating ----------------------------------------------------------------------------------------
    def apply(self, delta: BlacklistDelta, asked: int, epoch: str | None) -> None:
        """Apply one answer to "changes after version `asked`" (of the copy with `epoch`), atomically."""
        if delta.since != asked or (delta.version < asked and not delta.reset):
            raise BlacklistError(f"the centre answered for version {delta.since} -> {delta.version} when asked "
                                 f"for the changes after {asked}")
        start_over = delta.reset or epoch != delta.epoch
        now = self.now().isoformat()
        rows = sorted(((no, cid or None, status, app) for no, cid, status, app in delta.entries), key=lambda r: r[0])
        with self._tx() as db:
            if start_over:
                db.execute("DELETE FROM blacklist")
                db.execute("DELETE FROM blacklist_recent")
            db.executemany("INSERT OR REPLACE INTO blacklist_recent (card_no, card_id, status, application)"
                           " VALUES (?,?,?,?)", rows)
            db.execute("INSERT INTO blacklist_state (id, epoch, version, fetched_at) VALUES (1, ?, ?, ?)"
                       " ON CONFLICT (id) DO UPDATE SET epoch = excluded.epoch, version = excluded.version,"
                       " fetched_at = excluded.fetched_at", (delta.epoch, delta.version, now))

    def merge(self, chunk: int = 5_000) -> int:
        """Move the recent changes into the bulk, `chunk` cards (in card-number order) per transaction, so a
        write waiting behind it (the journal's too: it is the same file) waits for one chunk at most; lookups
        never wait. Returns how many moved."""
        moved = 0
        while True:
            with self._tx() as db:
                rows = db.execute("SELECT card_no, card_id, status, application FROM blacklist_recent"
                                  " ORDER BY card_no LIMIT ?", (chunk,)).fetchall()
                db.executemany("DELETE FROM blacklist WHERE card_no = ?",
                               [(r[0],) for r in rows if r[2] == "active" and not r[3]])
                db.executemany("INSERT OR REPLACE INTO blacklist (card_no, card_id, status, application)"
                               " VALUES (?,?,?,?)", [r for r in rows if r[2] != "active" or r[3]])
                db.executemany("DELETE FROM blacklist_recent WHERE card_no = ?", [(r[0],) for r in rows])
            moved += len(rows)
            if len(rows) < chunk:
                return moved

    def _forget(self) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM blacklist")
            db.execute("DELETE FROM blacklist_recent")
            db.execute("DELETE FROM blacklist_state")

    def refresh(self, fetch: Callable[[int], BlacklistDelta], max_pages: int = 1000) -> Fetched:
        """Bring the copy up to date with `fetch(since)` (the centre client's `card_blacklist`), page by page.
        BlacklistError for a malformed answer (the pages before it are kept: each is whole);
        ServiceUnreachable when the centre does not answer."""
        entries = pages = 0
        reset = False
        for _ in range(max_pages):
            since, epoch = self.head()
            try:
                delta = fetch(since)
            except ValueError as e:  # pydantic's ValidationError and JSON errors are ValueErrors
                raise BlacklistError(f"malformed blacklist answer: {str(e).splitlines()[0]}") from e
            if epoch is not None and delta.epoch != epoch and since:
                self._forget()  # another centre database: our version means nothing there; start from 0
                reset = True
                continue
            self.apply(delta, since, epoch)
            entries, pages, reset = entries + len(delta.entries), pages + 1, reset or delta.reset
            if not delta.more:
                break
        else:
            raise BlacklistError(f"the blacklist did not end after {max_pages} pages")
        result = Fetched(self.head()[0], entries, pages, reset)
        if entries or reset:
            event("blacklist.updated", version=result.version, entries=entries, pages=pages, reset=reset)
        return result

    # ---- what this terminal did to cards -------------------------------------------------------------------
    def record_action(self, card_no: str, card_id: str, action: str, application: str, status: str) -> None:
        """Record that this terminal blocked or unblocked `application` on a card (to tell the centre), and
        note it in the copy until the centre's next answer: blocked, or nothing left to do."""
        with self._tx() as db:
            db.execute("INSERT INTO card_actions (card_no, card_id, action, application, status, at)"
                       " VALUES (?,?,?,?,?,?)", (card_no, card_id, action, application, status,
                                                 self.now().isoformat()))
            if action == "blocked":
                for table in ("blacklist", "blacklist_recent"):
                    db.execute(f"UPDATE {table} SET application = ? WHERE card_no = ?", (application, card_no))
            else:  # nothing left to do: off the bulk; in the recent table, a row that says it left the list
                db.execute("DELETE FROM blacklist WHERE card_no = ? AND status = 'active'", (card_no,))
                db.execute("UPDATE blacklist_recent SET application = '' WHERE card_no = ? AND status = 'active'",
                           (card_no,))
        event(f"card.application_{action}", card_no=card_no, application=application, status=status)

    def unreported(self) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._db.execute("SELECT seq, card_no, card_id, action, application FROM card_actions"
                                   " WHERE reported = 0 ORDER BY seq")
            return [dict(zip(("seq", "card_no", "card_id", "action", "application"), r, strict=True))
                    for r in cur.fetchall()]

    def mark_reported(self, seq: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE card_actions SET reported = 1 WHERE seq = ?", (seq,))

    def actions(self, card_no: str) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._db.execute("SELECT seq, action, application, status, at, reported FROM card_actions"
                                   " WHERE card_no = ? ORDER BY seq", (card_no,))
            return [dict(zip(("seq", "action", "application", "status", "at", "reported"), r, strict=True))
                    for r in cur.fetchall()]


class BlacklistFetcher:
    """Keeps the copy fresh: `step()` fetches when `interval` has passed on the injected clock since the last
    attempt (and tells the centre what this terminal did to cards); a background thread calls `step()`
    every `poll` seconds of wall time."""

    def __init__(self, blacklist: Blacklist, centre: Any, interval: float, poll: float = 1.0) -> None:
        self.blacklist, self.centre = blacklist, centre
        self.interval, self.poll = dt.timedelta(seconds=interval), poll
        self.last_attempt: dt.datetime | None = None
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="blacklist-fetcher", daemon=True)
        self._step_lock = threading.Lock()

    def due(self) -> bool:
        return self.last_attempt is None or self.blacklist.now() - self.last_attempt >= self.interval

    def step(self, force: bool = False) -> Fetched | None:
        """One pass when due (or `force`d): report card actions, fetch. None when not due or it failed."""
        with self._step_lock:
            if not (force or self.due()):
                return None
            self.last_attempt = self.blacklist.now()
            self.report_actions()
            try:
                result = self.blacklist.refresh(self.centre.card_blacklist)
            except (BlacklistError, SettlementError) as e:
                self.last_error = f"{getattr(e, 'code', type(e).__name__)}: {getattr(e, 'message', e)}"
                event("blacklist.fetch_failed", logging.WARNING, reason=self.last_error)
                return None
            self.last_error = None
            self.blacklist.merge()
            return result

    def report_actions(self) -> None:
        """Tell the centre what this terminal blocked or unblocked (kept until the centre has it)."""
        for a in self.blacklist.unreported():
            try:
                self.centre.report_card_application(a["card_no"], a["card_id"] or None,
                                                    a["application"] if a["action"] == "blocked" else None)
            except SettlementError as e:
                if e.code in ("SERVICE_UNREACHABLE", "STORE_UNAVAILABLE", "INTERNAL_ERROR"):
                    return  # try again next pass
                log.warning("centre refused card action %s of %s: %s", a["action"], a["card_no"], e.code)
            self.blacklist.mark_reported(a["seq"])

    def start(self) -> BlacklistFetcher:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # keep fetching whatever one pass hit
                log.exception("blacklist fetcher pass failed")
            self._stop.wait(self.poll)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
