"""Reconciliation's bulk tables on a SQLite store, in two database files of their own beside the ledger's.

  <ledger>-recon         the imported journals: recon_journal, recon_receipts
  <ledger>-recon-centre  the centre's copy of the ledger: recon_centre and its cursor

Why not in the store: a day-end run writes about a million journal rows and copies about a million postings.
In the store both would queue behind its single writer (settlements included) and one behind the other; here
each file has a writer of its own, so the ledger copy (SQL, which runs without the GIL) proceeds while the
journals are read and stored, and settlements are not held up by either. And their durability can be relaxed
without touching the ledger's: both files use WAL with synchronous=NORMAL (no fsync per commit; a power cut
may lose the last commits, never corrupts a file) and 4 KiB pages. Nothing in them is the only record of
anything: the copy is rebuilt from the ledger by the next `sync()`, and journals are re-importable files (the
audit trail, runs and reports, repairs, acceptances and closed days stay in the store). A file that is lost,
or of another layout, is made again, empty.

Connections open one of these files as `main` and ATTACH the others (reads of the ledger in WAL mode see
committed data and block no one); table names are unique across the files, so reconciliation SQL runs
unchanged on them. A write touches one file only and takes that file's lock first (DEFERRED transactions:
BEGIN IMMEDIATE would lock every attached file, the ledger's too).

PostgreSQL stores keep these tables in the store; nothing here is used then.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable
from typing import TypeVar

from settlement.ledger.store.sqlite import SqliteTx
from settlement.reconcile import sql as q

T = TypeVar("T")

LAYOUT = 1
"""Layout of the files (PRAGMA user_version); a file of another layout is made again."""
_PAGE_SIZE = 4096
_CACHE_KIB = 65536
_MMAP = 2**31 - 2**16  # the most this SQLite maps (SQLITE_MAX_MMAP_SIZE 0x7fff0000)


class _File:
    """One scratch file: its schema, its writer (one connection, one write at a time) and its lock statement."""

    def __init__(self, path: str, schema: list[str], lock_sql: str) -> None:
        self.path, self.schema, self.lock_sql = path, schema, lock_sql
        self.wlock = threading.Lock()
        self.wconn: sqlite3.Connection | None = None
        self.prepare()

    def prepare(self) -> None:
        """Create the file, or make it again if it is of another layout or SQLite cannot read it."""
        for attempt in (1, 2):
            try:
                conn = sqlite3.connect(self.path, isolation_level=None)
                try:
                    version = conn.execute("PRAGMA user_version").fetchone()[0]
                    if version not in (0, LAYOUT):
                        raise sqlite3.DatabaseError(f"layout {version}")
                    if version == 0:
                        conn.execute(f"PRAGMA page_size = {_PAGE_SIZE}")
                        conn.execute("PRAGMA journal_mode = WAL")
                        for sql in self.schema:
                            conn.execute(sql)
                        conn.execute(f"PRAGMA user_version = {LAYOUT}")
                finally:
                    conn.close()
                return
            except sqlite3.DatabaseError:
                if attempt == 2:
                    raise
                self.discard()

    def discard(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{self.path}{suffix}")


class Scratch:
    """The scratch files beside a SQLite ledger. `read(fn)` runs `fn(tx)` in a read transaction that sees
    every reconciliation table and the ledger (on as many connections as reads run at once); `write_journal(fn)` and
    `write_centre(fn)` run `fn(tx)` as a unit writing that file only."""

    def __init__(self, ledger_path: str) -> None:
        self.ledger_path = ledger_path
        self.journal = _File(f"{ledger_path}-recon", q.journal_schema("sqlite"),
                             "UPDATE recon_receipts SET lines = lines WHERE 0")
        self.centre = _File(f"{ledger_path}-recon-centre", q.centre_schema("sqlite"),
                            "UPDATE recon_cursor SET seq = seq WHERE 0")
        self._lock = threading.Lock()  # guards _conns and _idle
        self._conns: list[sqlite3.Connection] = []
        self._idle: list[sqlite3.Connection] = []  # readers not in use
        self._closed = False

    def _connect(self, main: _File) -> sqlite3.Connection:
        conn = sqlite3.connect(main.path, isolation_level=None, check_same_thread=False, cached_statements=256)
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"PRAGMA mmap_size = {_MMAP}")
        conn.execute("PRAGMA threads = 2")  # the sorter may use a helper thread (SQL runs without the GIL)
        for name, path in (("journal", self.journal.path), ("centre", self.centre.path),
                           ("ledger", self.ledger_path)):
            if path != main.path:
                conn.execute(f"ATTACH DATABASE ? AS {name}", (path,))
                conn.execute(f"PRAGMA {name}.cache_size = -{_CACHE_KIB}")  # (a setting of each schema)
        with self._lock:
            if self._closed:
                conn.close()
                raise sqlite3.ProgrammingError("the reconciliation scratch files are closed")
            self._conns.append(conn)
        return conn

    # -- units ------------------------------------------------------------------------------------------------
    def read(self, fn: Callable[[SqliteTx], T]) -> T:
        """`fn(tx)` in a read transaction (one snapshot of each file, taken when first read), on a connection
        of its own while it runs (an idle one, or a new one)."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect(self.journal)
        try:
            conn.execute("BEGIN")
            try:
                return fn(SqliteTx(conn))
            finally:
                conn.execute("ROLLBACK")
        finally:
            with self._lock:
                if self._closed:
                    conn.close()
                else:
                    self._idle.append(conn)

    def write_journal(self, fn: Callable[[SqliteTx], T]) -> T:
        """`fn(tx)` as a unit writing the journals' file: committed if it returns, rolled back if not."""
        return self._write(self.journal, fn)

    def write_centre(self, fn: Callable[[SqliteTx], T]) -> T:
        """`fn(tx)` as a unit writing the copy's file: committed if it returns, rolled back if not."""
        return self._write(self.centre, fn)

    def _write(self, file: _File, fn: Callable[[SqliteTx], T]) -> T:
        with file.wlock:
            if file.wconn is None:
                file.wconn = self._connect(file)
            conn = file.wconn
            conn.execute("BEGIN")
            try:
                conn.execute(file.lock_sql)  # the file's write lock now, before anything is read from it
                result = fn(SqliteTx(conn))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

    def close(self) -> None:
        """Close every connection (idempotent)."""
        with self._lock:
            self._closed = True
            conns, self._conns, self._idle = self._conns, [], []
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
