"""PostgreSQL store: psycopg 3 with a psycopg_pool connection pool; same interface as SqliteStore.

Each top-level unit is one READ COMMITTED transaction on a pooled connection. Correctness under
concurrency (many threads, many service processes) comes from the SQL, not from a single writer:
  * idempotency: `INSERT ... ON CONFLICT (key) DO NOTHING` claims a key; a concurrent claim of the
    same key waits for the first transaction and then sees it;
  * balances: accounts are updated with `col = col + delta` in account-code order, and an account
    that may not go negative is first locked with `SELECT ... ORDER BY code FOR UPDATE`
    (`tx.for_update`), so checks and updates cannot interleave and lock order is global;
  * a deadlock or serialization failure (possible when higher layers lock their own rows in another
    order) re-runs the unit from the start, up to `retries` times.
Durability: a unit returns after COMMIT, i.e. after PostgreSQL flushed its WAL (synchronous_commit
on, the default); PostgreSQL group-commits concurrent transactions' WAL flushes itself.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, ClassVar, TypeVar

import psycopg
from psycopg import errors as pgerrors
from psycopg_pool import ConnectionPool

from settlement.errors import StoreUnavailable
from settlement.store.base import Params, Store, Tx

T = TypeVar("T")
_RETRYABLE = (pgerrors.SerializationFailure, pgerrors.DeadlockDetected)
_QMARK = re.compile(r"%|\?")


@lru_cache(maxsize=1024)
def to_pg(sql: str) -> str:
    """Rewrite `?` placeholders to psycopg's `%s` (and a literal `%` to `%%`)."""
    return _QMARK.sub(lambda m: "%s" if m.group() == "?" else "%%", sql)


class PostgresTx(Tx):
    """A transaction on one psycopg connection."""

    dialect: ClassVar[str] = "postgres"
    for_update: ClassVar[str] = " FOR UPDATE"

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.cur = conn.cursor()

    def execute(self, sql: str, params: Params = ()) -> int:
        return self.cur.execute(to_pg(sql), params).rowcount

    def executemany(self, sql: str, seq_of_params: Iterable[Params]) -> int:
        cur = self.cur
        cur.executemany(to_pg(sql), seq_of_params)
        return cur.rowcount

    def fetch(self, sql: str, params: Params = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        cur = self.cur.execute(to_pg(sql), params)
        if cur.description is None:
            return [], []
        return [d.name for d in cur.description], cur.fetchall()

    def rows(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        return self.cur.execute(to_pg(sql), params).fetchall()

    @contextmanager
    def savepoint(self) -> Iterator[PostgresTx]:
        with self.conn.transaction():
            yield self


class PostgresStore(Store):
    """`PostgresStore(conninfo, min_size=1, max_size=16)`; use as a context manager or call `close()`."""

    dialect: ClassVar[str] = "postgres"

    def __init__(self, conninfo: str, *, min_size: int = 1, max_size: int = 16, retries: int = 20) -> None:
        super().__init__()
        self.conninfo = conninfo
        self.retries = retries
        self.pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            conninfo, min_size=min_size, max_size=max_size, kwargs={"autocommit": True}, open=True
        )
        self.pool.wait(timeout=30)
        self._closed = False

    def _run_top(self, fn: Callable[[Tx], T]) -> T:
        for attempt in range(self.retries + 1):
            try:
                with self._top_transaction() as tx:
                    return fn(tx)
            except _RETRYABLE:
                if attempt == self.retries:
                    raise
                time.sleep(random.uniform(0, 0.002 * 2 ** min(attempt, 6)))
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def _top_transaction(self) -> Iterator[Tx]:
        if self._closed:
            raise StoreUnavailable("store is closed")
        try:
            with self.pool.connection() as conn:
                tx = PostgresTx(conn)
                self._local.tx = tx
                try:
                    with conn.transaction():
                        yield tx
                finally:
                    self._local.tx = None
        except psycopg.OperationalError as e:
            if isinstance(e, _RETRYABLE):
                raise
            raise StoreUnavailable(f"database unavailable; retry with the same key: {e}") from e

    def _read_top(self, fn: Callable[[Tx], T]) -> T:
        if self._closed:
            raise StoreUnavailable("store is closed")
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            return fn(PostgresTx(conn))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.pool.close()
