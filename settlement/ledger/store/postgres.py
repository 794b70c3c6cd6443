"""PostgreSQL store: psycopg 3 and psycopg_pool; same interface and SQL semantics as SqliteStore.

Writes go through group commit (settlement.ledger.store.batching) on one dedicated connection per store:
every settlement's transaction updates the same hot rows (pooled fund, hospital payable), so with one
transaction per settlement each would hold those row locks across its own commit; a batch holds them
once for many. Reads use a pool (`max_size` connections), REPEATABLE READ, read only.
`group_commit=False` runs each unit as its own transaction on a pooled connection (the baseline).

Correctness across threads and processes (several service processes share one database: `sscard
settlement serve --workers N`) comes from the SQL, not from the single writer:
  * idempotency: `INSERT ... ON CONFLICT (key) DO NOTHING RETURNING` claims a key; a concurrent claim
    of the same key waits for the first transaction, then sees the key taken;
  * balances: an account that must not go negative is locked with `SELECT ... ORDER BY code FOR
    UPDATE` (`tx.for_update`) before it is checked and changed; every other account (funds, hospital
    and cash accounts: the hot rows every settlement touches) is only ever *incremented*, from
    increments deferred to the end of the transaction and written in account-code order just before
    COMMIT (settlement.ledger.store.base). So locks are taken in one order: the rows a request reads
    to decide (persons, visits, guarded accounts in code order), then the hot accounts in code order,
    held for the commit alone; a batch's many settlements lock each hot row once;
  * a deadlock or serialization failure (still possible between two batches that lock the rows of the
    same persons in other orders) rolls the whole batch back, releasing all its locks, and runs it
    again after a random pause, up to `retries` times (settlement.ledger.store.batching).
Outages: a read or a write that cannot reach the database (no pooled connection within `wait` seconds, a
connection that broke) raises StoreUnavailable, which the service answers 503 with Retry-After; nothing was
posted, and the same key can be sent again.
Durability: a unit returns after COMMIT, i.e. after PostgreSQL flushed its WAL (synchronous_commit on;
off for a batch of units run with `durable=False` only: the next durable commit flushes the WAL past them).
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
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolTimeout

from settlement.errors import StoreUnavailable
from settlement.ledger.store.base import Params, Tx
from settlement.ledger.store.batching import GroupCommitStore, Request

T = TypeVar("T")
_RETRYABLE = (pgerrors.SerializationFailure, pgerrors.DeadlockDetected)
_DOWN = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)  # the database is out of reach
_QMARK = re.compile(r"%|\?")
_IN_TX = (TransactionStatus.INTRANS, TransactionStatus.INERROR)


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
        self._sp_begin()
        try:
            with self.conn.transaction():
                yield self
        except BaseException:
            self._sp_end(keep=False)
            raise
        self._sp_end(keep=True)


class PostgresStore(GroupCommitStore):
    """`PostgresStore(conninfo)`; use as a context manager or call `close()`."""

    dialect: ClassVar[str] = "postgres"

    def __init__(
        self,
        conninfo: str,
        *,
        group_commit: bool = True,
        max_batch: int = 1024,
        min_size: int = 1,
        max_size: int = 16,
        retries: int = 20,
        wait: float = 5.0,
    ) -> None:
        super().__init__()
        self.conninfo = conninfo
        self.retries = retries
        self.pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            conninfo, min_size=min_size, max_size=max_size, kwargs={"autocommit": True}, open=True, timeout=wait
        )
        self.pool.wait(timeout=30)
        self._wconn: psycopg.Connection[Any] | None = None
        self._wtx: PostgresTx | None = None
        self._start_writer(group_commit=group_commit, max_batch=max_batch)

    # -- the write connection (group commit) -------------------------------------------------------
    def _write_tx(self) -> Tx:
        conn = self._wconn
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                conn.close()
            try:
                self._wconn = conn = psycopg.connect(self.conninfo, autocommit=True)
            except psycopg.OperationalError as e:
                raise StoreUnavailable(f"database unavailable: {e}") from e
            self._wtx = PostgresTx(conn)
        assert self._wtx is not None
        return self._wtx

    def _control(self, sql: str) -> None:
        assert self._wconn is not None
        self._wconn.execute(sql)

    def _begin_batch(self, durable: bool) -> None:
        self._control(self.begin_sql)
        if not durable:
            self._control("SET LOCAL synchronous_commit TO OFF")

    def _in_transaction(self) -> bool:
        conn = self._wconn
        return conn is not None and not conn.closed and conn.info.transaction_status in _IN_TX

    def _retryable(self, e: BaseException) -> bool:
        return isinstance(e, _RETRYABLE) or super()._retryable(e)

    # -- without group commit: one pooled connection and transaction per unit ----------------------
    def _run_alone(self, req: Request) -> Any:
        for attempt in range(self.retries + 1):
            try:
                with self._pooled_transaction() as tx:
                    return self._run_request(req, tx)
            except Exception as e:
                if not self._retryable(e) or attempt == self.retries:
                    raise
                time.sleep(random.uniform(0, 0.002 * 2 ** min(attempt, 6)))
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def _top_transaction(self) -> Iterator[Tx]:
        if self.group_commit:
            with super()._top_transaction() as tx:
                yield tx
        else:
            with self._pooled_transaction() as tx:
                yield tx

    @contextmanager
    def _pooled_transaction(self) -> Iterator[Tx]:
        self._check_open()
        try:
            with self.pool.connection() as conn:
                tx = PostgresTx(conn)
                tx._begin()
                self._local.tx = tx
                try:
                    with conn.transaction():
                        yield tx
                        tx._flush()
                finally:
                    self._local.tx = None
        except _DOWN as e:
            if isinstance(e, _RETRYABLE):
                raise
            raise StoreUnavailable(f"database unavailable; retry with the same key: {e}") from e

    # -- reads and lifecycle -----------------------------------------------------------------------
    def _read_top(self, fn: Callable[[Tx], T]) -> T:
        """A read on a pooled connection: StoreUnavailable (503) when the database is out of reach (no connection
        within `wait` seconds, or it broke), run again after a serialization failure or deadlock."""
        self._check_open()
        for attempt in range(self.retries + 1):
            try:
                with self.pool.connection() as conn, conn.transaction():
                    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    return fn(PostgresTx(conn))
            except _RETRYABLE:
                if attempt == self.retries:
                    raise
                time.sleep(random.uniform(0, 0.002 * 2 ** min(attempt, 6)))
            except _DOWN as e:
                raise StoreUnavailable(f"database unavailable; retry: {e}") from e
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        if self._closed:
            return
        self._stop_writer()
        with self._wlock:
            if self._wconn is not None:
                self._wconn.close()
        self.pool.close()
