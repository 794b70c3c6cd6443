"""One store interface for the ledger and the settlement modules (SQLite embedded, PostgreSQL server).

A store runs *units of work*: `store.run(fn)` calls `fn(tx)` inside one transaction and returns
`fn`'s result only after that transaction is durably committed; if `fn` raises, everything it did is
rolled back and the exception propagates. `with store.transaction() as tx:` is the same thing as a
block. Inside a unit, any further `run()`/`transaction()` on the same store and thread joins it as a
SAVEPOINT (so `ledger.post()` called inside a medical unit is part of that unit, and a failing inner
call undoes only itself).

SQL written against `Tx` is portable between the two stores when it follows these rules:
  * placeholders are `?` (PostgreSQL's store rewrites them; write a literal `%` as-is);
  * types: TEXT, INTEGER/BIGINT (fen), no AUTOINCREMENT/SERIAL;
  * upserts as `INSERT ... ON CONFLICT (cols) DO UPDATE SET x = t.x + excluded.x` / `DO NOTHING`;
  * append `tx.for_update` to a SELECT of rows you will read-modify-write (" FOR UPDATE" on
    PostgreSQL, "" on SQLite where the single writer already serialises units).
Functions passed to `run()` and batch handlers may be re-run on PostgreSQL after a deadlock or
serialization failure (the whole batch is rolled back and run again): keep them free of side effects
outside `tx`. Both stores run units on one writer thread (group commit, see
settlement.ledger.store.batching): a unit must not wait for another thread's store call, and a long unit
(or a long `with store.transaction()` block) delays every other write.

*Deferred increments* (`tx.defer(flush, deltas)`): commutative additions to hot rows (the ledger's
fund, hospital and cash accounts) are summed in Python through the whole transaction and written by
`flush(tx, totals)` once, just before COMMIT. So a server store locks those rows for the commit alone
and always last (after every row lock the transaction's requests took, in account-code order); a
savepoint rolled back drops what was deferred inside it. `tx.deferred(flush)` shows what is pending.

*Units that need not wait for the disk* (`store.run(fn, durable=False)`): for records a caller can send
again, never money. Their commit may return before it is on disk (SQLite: synchronous=NORMAL for that
commit; PostgreSQL: synchronous_commit off): it survives a crash of the process, but a crash of the machine
may lose it until the next durable commit, which writes the same log after it and so makes it durable too.
A batch that holds one durable request commits durably.

*Trials* (`store.trial(fn)`): a unit run and rolled back, its result returned: a plan of a change.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, TypeVar

T = TypeVar("T")
Params = Sequence[Any]


Deltas = dict[str, list[int]]
Flush = Callable[["Tx", Deltas], None]


Pending = dict[Flush, Deltas]  # deferred increments by flush function


def _merge(into: Pending, flush: Flush, deltas: Deltas) -> None:
    total = into.setdefault(flush, {})
    for k, (a, b) in deltas.items():
        t = total.get(k)
        if t is None:
            total[k] = [a, b]
        else:
            t[0] += a
            t[1] += b


class Tx(ABC):
    """A handle on the current transaction. Methods take `?`-placeholder SQL."""

    dialect: ClassVar[str]
    for_update: ClassVar[str]
    _levels: list[Pending]  # deferred increments per savepoint level (0: the transaction)

    # -- deferred increments (see the module docstring) -------------------------------------------
    def defer(self, flush: Flush, deltas: Deltas) -> None:
        """Add `deltas` (key -> [a, b]) to the increments `flush(tx, totals)` writes just before COMMIT."""
        levels = self.__dict__.setdefault("_levels", [{}])
        _merge(levels[-1], flush, deltas)

    def deferred(self, flush: Flush) -> Deltas:
        """Increments deferred for `flush` so far in this transaction (all savepoint levels summed)."""
        out: Pending = {}
        for level in self.__dict__.get("_levels", ()):
            if flush in level:
                _merge(out, flush, level[flush])
        return out.get(flush, {})

    def _sp_begin(self) -> None:
        self.__dict__.setdefault("_levels", [{}]).append({})

    def _sp_end(self, keep: bool) -> None:
        """Leave a savepoint: keep (RELEASE) or drop (ROLLBACK TO) what was deferred inside it."""
        levels = self._levels
        top = levels.pop()
        if keep:
            for flush, deltas in top.items():
                _merge(levels[-1], flush, deltas)

    def _begin(self) -> None:
        self._levels = [{}]

    def _flush(self) -> None:
        """Write the deferred increments (the store calls this just before COMMIT)."""
        levels = self.__dict__.get("_levels")
        if not levels:
            return
        if len(levels) != 1:
            raise RuntimeError("COMMIT inside a savepoint")
        pending, levels[0] = levels[0], {}
        for flush, deltas in pending.items():
            if deltas:
                flush(self, deltas)

    @abstractmethod
    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; return the number of rows it changed."""

    @abstractmethod
    def executemany(self, sql: str, seq_of_params: Iterable[Params]) -> int:
        """Run one statement per parameter tuple; return the total number of rows changed."""

    @abstractmethod
    def fetch(self, sql: str, params: Params = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run a query; return (column names, rows)."""

    @abstractmethod
    def savepoint(self) -> Any:
        """Context manager: a nested unit that is rolled back alone if its block raises."""

    def rows(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """Rows of a query as tuples."""
        return self.fetch(sql, params)[1]

    def query(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        """Rows of a query as dicts keyed by column name."""
        cols, rows = self.fetch(sql, params)
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def one(self, sql: str, params: Params = ()) -> dict[str, Any] | None:
        """The first row as a dict, or None."""
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def value(self, sql: str, params: Params = ()) -> Any:
        """The first column of the first row, or None."""
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None


class Store(ABC):
    """Durable transactional storage. Subclasses: SqliteStore, PostgresStore."""

    dialect: ClassVar[str]

    def __init__(self) -> None:
        self._local = threading.local()

    # -- units of work -------------------------------------------------------------------------
    def current(self) -> Tx | None:
        """The transaction this thread is inside, if any."""
        return getattr(self._local, "tx", None)

    def run(self, fn: Callable[[Tx], T], *, durable: bool = True) -> T:
        """Run `fn(tx)` atomically; return its result once the commit is durable (with `durable=False`: once
        committed, see the module docstring; inside a unit, as that unit)."""
        tx = self.current()
        if tx is not None:
            with tx.savepoint():
                return fn(tx)
        return self._run_top(fn, durable)

    def run_batched(self, handler: Callable[[Tx, list[Any]], list[Any]], item: Any) -> Any:
        """Like `run(lambda tx: handler(tx, [item])[0])`, but the store may hand `handler` the items of
        several concurrent callers at once, in one unit (SQLite group commit: one pass of SQL per batch).

        `handler(tx, items)` returns one result per item, in order. An Exception instance as a result
        is raised in that item's caller, and that item must have written nothing. If `handler` raises,
        everything it wrote is rolled back and the store re-runs the items one at a time.
        """
        tx = self.current()
        if tx is not None:
            with tx.savepoint():
                result = handler(tx, [item])[0]
        else:
            result = self._run_batched_top(handler, item)
        if isinstance(result, BaseException):
            raise result
        return result

    def _run_batched_top(self, handler: Callable[[Tx, list[Any]], list[Any]], item: Any) -> Any:
        return self._run_top(lambda tx: handler(tx, [item])[0])

    @abstractmethod
    def submit(self, handler: Callable[[Tx, list[Any]], list[Any]], item: Any) -> asyncio.Future[Any]:
        """`run_batched` for asyncio callers: call it in an event loop and await the future it returns
        (no thread waits; the result arrives once durable). Refused with StoreUnavailable once closed."""

    def backlog(self) -> int:
        """Write requests queued and not yet taken up (0 for a store without a queue)."""
        return 0

    def trial(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn(tx)` as a unit that is always rolled back, and return its result: what a change would do
        (an operator's plan, shown before the change is applied), its refusals raised as they would be."""
        class Planned(Exception):  # noqa: N818 - not an error: carries the result out of the rolled-back unit
            def __init__(self, result: T) -> None:
                self.result = result

        def unit(tx: Tx) -> T:
            raise Planned(fn(tx))

        try:
            self.run(unit)
        except Planned as p:
            return p.result
        raise AssertionError("unreachable: a trial unit always raises")  # pragma: no cover

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """`with store.transaction() as tx:` one atomic, durable unit (a savepoint when nested)."""
        tx = self.current()
        if tx is not None:
            with tx.savepoint():
                yield tx
            return
        with self._top_transaction() as tx:
            yield tx

    def read(self, fn: Callable[[Tx], T]) -> T:
        """Run read-only `fn(tx)` on committed data (or inside the current transaction, if any)."""
        tx = self.current()
        if tx is not None:
            return fn(tx)
        return self._read_top(fn)

    @abstractmethod
    def _run_top(self, fn: Callable[[Tx], T], durable: bool = True) -> T: ...

    @abstractmethod
    def _top_transaction(self) -> Any: ...

    @abstractmethod
    def _read_top(self, fn: Callable[[Tx], T]) -> T: ...

    # -- schema and lifecycle --------------------------------------------------------------------
    def ensure_schema(self, statements: Iterable[str]) -> None:
        """Run idempotent DDL (`CREATE TABLE IF NOT EXISTS ...`) in one unit."""
        stmts = list(statements)

        def ddl(tx: Tx) -> None:
            for s in stmts:
                tx.execute(s)

        self.run(ddl)

    @abstractmethod
    def close(self) -> None:
        """Finish pending work and release connections. Idempotent."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
