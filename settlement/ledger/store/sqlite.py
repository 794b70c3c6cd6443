"""SQLite store: WAL, synchronous=FULL, group commit (settlement.ledger.store.batching) on one connection.

Durability: journal_mode=WAL with synchronous=FULL fsyncs the WAL at every COMMIT, and no caller is
answered before the COMMIT of its batch has returned, so an answered request is on disk and survives
a process or machine crash. (synchronous=NORMAL would survive a process crash but could lose the
last commits on power loss; group commit makes FULL affordable: one fsync per batch.) A batch of units
run with `durable=False` only commits with NORMAL; the next FULL commit syncs the log they are in.
Reads use one read-only connection per thread and see committed data only.

`group_commit=False` is the naive mode used as the benchmark's baseline: each unit is its own
transaction and fsync, in the caller's thread under the write lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import sqlite_utils

from settlement.errors import StoreUnavailable
from settlement.ledger.store.base import Params, Tx
from settlement.ledger.store.batching import GroupCommitStore

T = TypeVar("T")


class SqliteTx(Tx):
    """A transaction on one sqlite3 connection (autocommit mode; BEGIN/COMMIT are explicit)."""

    dialect: ClassVar[str] = "sqlite"
    for_update: ClassVar[str] = ""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.cur = conn.cursor()  # one cursor, reused: every method consumes its results at once
        self._depth = 0

    def execute(self, sql: str, params: Params = ()) -> int:
        return self.cur.execute(sql, params).rowcount

    def executemany(self, sql: str, seq_of_params: Iterable[Params]) -> int:
        return self.cur.executemany(sql, seq_of_params).rowcount

    def fetch(self, sql: str, params: Params = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        cur = self.cur.execute(sql, params)
        cols = [d[0] for d in cur.description] if cur.description else []
        return cols, cur.fetchall()

    def rows(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        return self.cur.execute(sql, params).fetchall()

    @contextmanager
    def savepoint(self) -> Iterator[SqliteTx]:
        self._depth += 1
        name = f"sp{self._depth}"
        self.conn.execute(f"SAVEPOINT {name}")
        self._sp_begin()
        try:
            yield self
        except BaseException:
            self._sp_end(keep=False)
            if self.conn.in_transaction:
                self.conn.execute(f"ROLLBACK TO {name}")
                self.conn.execute(f"RELEASE {name}")
            raise
        else:
            self._sp_end(keep=True)
            self.conn.execute(f"RELEASE {name}")
        finally:
            self._depth -= 1


def _connect(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, cached_statements=512)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA cache_size = -65536")  # 64 MiB of page cache
    if readonly:
        conn.execute("PRAGMA query_only = 1")
    return conn


class SqliteStore(GroupCommitStore):
    """SQLite file store. `SqliteStore(path)`; use as a context manager or call `close()`."""

    dialect: ClassVar[str] = "sqlite"
    begin_sql = "BEGIN IMMEDIATE"

    def __init__(
        self,
        path: str | Path,
        *,
        group_commit: bool = True,
        max_batch: int = 1024,
        page_size: int = 2048,
    ) -> None:
        super().__init__()
        self.path = str(path)
        if self.path == ":memory:" or self.path.startswith("file:"):
            raise ValueError("SqliteStore needs a file path (WAL and reader connections)")
        if sqlite3.sqlite_version_info < (3, 35):  # RETURNING, UPDATE ... FROM
            raise RuntimeError(f"SQLite >= 3.35 is required, this Python links {sqlite3.sqlite_version}")
        self._conn = _connect(self.path)
        self.db = sqlite_utils.Database(self._conn)
        self._conn.execute(f"PRAGMA page_size = {int(page_size)}")  # only takes effect on a new file
        self.db.enable_wal()
        self._wtx = SqliteTx(self._conn)
        self._sync = "FULL"  # the write connection's synchronous level (NORMAL for a batch not durable)
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._start_writer(group_commit=group_commit, max_batch=max_batch)

    def _write_tx(self) -> Tx:
        return self._wtx

    def _control(self, sql: str) -> None:
        self._wtx.cur.execute(sql)

    def _begin_batch(self, durable: bool) -> None:
        level = "FULL" if durable else "NORMAL"  # set outside a transaction, as SQLite requires
        if level != self._sync:
            self._wtx.cur.execute(f"PRAGMA synchronous = {level}")
            self._sync = level
        self._control(self.begin_sql)

    def _in_transaction(self) -> bool:
        return self._conn.in_transaction

    # -- reads -------------------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreUnavailable("store is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "reader", None)
        if conn is None:
            conn = _connect(self.path, readonly=True)
            self._local.reader = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _read_top(self, fn: Callable[[Tx], T]) -> T:
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            return fn(SqliteTx(conn))
        finally:
            conn.execute("ROLLBACK")

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Finish queued work (durably), then close every connection. Idempotent."""
        if self._closed:
            return
        self._stop_writer()
        with self._wlock:
            self._conn.close()
        with self._readers_lock:
            for c in self._readers:
                c.close()
            self._readers.clear()
