"""Group commit, shared by the SQLite and PostgreSQL stores.

Callers never write. `run(fn)` / `run_batched(handler, item)` / `submit(handler, item)` (asyncio) enqueue
a request; one writer thread (owning the store's one write connection) drains the queue, up to
`max_batch` requests, opens one transaction, runs the batchable requests grouped by handler (each
handler gets all its items at once: one pass of set-based SQL, e.g. the ledger's plain posts or the
medical settlements) and the other units one by one, each group or unit inside its own SAVEPOINT (a
request that raises is rolled back alone and does not poison the batch), and COMMITs once. The
requests of one batch are concurrent (none of their callers has an answer yet), so any order among
them is a valid serial order. Only after that COMMIT has returned (i.e. is durable) are the callers
woken; if the COMMIT fails, every request of the batch fails with StoreUnavailable and nothing of it is
kept (retrying with the same idempotency key is safe).

A deadlock or serialization failure (PostgreSQL), or a handler's `Retry` (a race another process won
between its reads and its writes), rolls the whole batch back, releasing every lock it held, and runs
it again after a short random pause, up to `retries` times: never one request inside a batch that
still holds the locks of the others.

Why: one fsync (SQLite) or one WAL flush and one round of row locks (PostgreSQL: the hot fund and
hospital accounts are updated once per batch, last, from deferred increments, see
settlement.ledger.store.base) per batch instead of per request; and a batch handler does one pass of
SQL for all its items.

The callers of a committed batch are woken just before the next batch's COMMIT when a next batch
is already queued (else at once): the woken callers then run while the writer waits on the disk,
instead of competing with it for the GIL while it runs the next batch's SQL. Asyncio callers
(`submit`) are woken with one call into each event loop per batch, not one per request.

`with store.transaction() as tx:` from any thread takes the write lock and runs on the same write
connection, in the caller's thread (the writer waits); nested units are savepoints.
"""

from __future__ import annotations

import _thread
import asyncio
import queue
import random
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from settlement.errors import StoreUnavailable
from settlement.ledger.store.base import Store, Tx

T = TypeVar("T")
Handler = Callable[[Tx, list[Any]], list[Any]]


class Retry(Exception):
    """Raised by a batch handler that found the state changed under it by another process (a key claimed,
    a row inserted, between its reads and its writes): the store re-runs the whole batch."""


class Request:
    """One caller's unit of work. A thread's request is woken through `done` (released when its outcome
    is final and durable); an asyncio caller's through `future`, set in its event loop."""

    __slots__ = ("fn", "handler", "item", "done", "future", "result", "error", "durable")

    def __init__(self, fn: Callable[[Tx], Any] | None, handler: Handler | None = None, item: Any = None,
                 future: asyncio.Future[Any] | None = None) -> None:
        self.fn = fn
        self.handler = handler
        self.item = item
        self.future = future
        if future is None:
            self.done = _thread.allocate_lock()
            self.done.acquire()
        self.result: Any = None
        self.error: BaseException | None = None
        self.durable = True

    def wait(self) -> Any:
        self.done.acquire()
        if self.error is not None:
            raise self.error
        return self.result


def _resolve(reqs: list[Request]) -> None:
    """In an event loop: hand each asyncio request its outcome."""
    for req in reqs:
        fut = req.future
        assert fut is not None
        if fut.done():  # the caller gave up (cancelled)
            continue
        if req.error is not None:
            fut.set_exception(req.error)
        elif isinstance(req.result, BaseException):
            fut.set_exception(req.result)
        else:
            fut.set_result(req.result)


def _release(reqs: Iterable[Request]) -> None:
    loops: dict[asyncio.AbstractEventLoop, list[Request]] = {}
    for req in reqs:
        if req.future is None:
            req.done.release()
        else:
            loops.setdefault(req.future.get_loop(), []).append(req)
    for loop, waiting in loops.items():
        try:
            loop.call_soon_threadsafe(_resolve, waiting)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass


class GroupCommitStore(Store):
    """A store whose writes go through one connection and, with `group_commit`, one writer thread.

    Subclasses provide the write connection's Tx and its transaction control statements.
    """

    group_commit: bool
    max_batch: int
    retries: int = 3  # runs of a batch after a retryable failure (PostgreSQL: its constructor sets more)

    def _start_writer(self, *, group_commit: bool, max_batch: int) -> None:
        self.group_commit = group_commit
        self.max_batch = max_batch
        self.batches_retried = 0
        self._wlock = threading.RLock()
        self._closed = False
        self._held: list[Request] = []
        self._queue: queue.SimpleQueue[Request | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        if group_commit:
            t = threading.Thread(target=self._writer_loop, name=f"{self.dialect}-store-writer", daemon=True)
            t.start()
            self._threads.append(t)

    # -- what a subclass provides --------------------------------------------------------------
    @abstractmethod
    def _write_tx(self) -> Tx:
        """The Tx of the write connection (reconnecting first if it was lost)."""

    @abstractmethod
    def _control(self, sql: str) -> None:
        """Run BEGIN / COMMIT / ROLLBACK / SAVEPOINT ... on the write connection."""

    @abstractmethod
    def _in_transaction(self) -> bool:
        """Whether the write connection is still inside the transaction (not rolled back by an error)."""

    begin_sql: str = "BEGIN"

    def _begin_batch(self, durable: bool) -> None:
        """BEGIN the writer's transaction; `durable=False` when no request of the batch needs its commit on
        disk before it is answered (a subclass relaxes the commit, see settlement.ledger.store.base)."""
        self._control(self.begin_sql)

    def _retryable(self, e: BaseException) -> bool:
        """Whether an error means "run the whole batch again" (a subclass adds its deadlock errors)."""
        return isinstance(e, Retry)

    @staticmethod
    def _run_request(req: Request, tx: Tx) -> Any:
        if req.handler is None:
            assert req.fn is not None
            return req.fn(tx)
        return req.handler(tx, [req.item])[0]

    # -- the Store interface ---------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("store is closed")

    def _run_top(self, fn: Callable[[Tx], T], durable: bool = True) -> T:
        self._check_open()
        if not self.group_commit:  # the baseline mode: every unit durable
            return self._run_alone(Request(fn))  # type: ignore[no-any-return]
        req = Request(fn)
        req.durable = durable
        self._queue.put(req)
        return req.wait()  # type: ignore[no-any-return]

    def _run_batched_top(self, handler: Handler, item: Any) -> Any:
        self._check_open()
        req = Request(None, handler, item)
        if not self.group_commit:
            return self._run_alone(req)
        self._queue.put(req)
        return req.wait()

    def submit(self, handler: Handler, item: Any) -> asyncio.Future[Any]:
        """From an event loop: queue a batchable request; the future gets its result once durable."""
        self._check_open()
        loop = asyncio.get_running_loop()
        if not self.group_commit:
            fut = loop.create_future()
            try:
                result = self._run_alone(Request(None, handler, item))
            except Exception as e:
                fut.set_exception(e)
            else:
                fut.set_exception(result) if isinstance(result, BaseException) else fut.set_result(result)
            return fut
        req = Request(None, handler, item, loop.create_future())
        self._queue.put(req)
        assert req.future is not None
        return req.future

    def backlog(self) -> int:
        """Requests queued and not yet taken by the writer (approximate)."""
        return self._queue.qsize()

    def _run_alone(self, req: Request) -> Any:
        """No group commit: the request is its own transaction, run in the caller's thread."""
        with self._top_transaction() as tx:
            return self._run_request(req, tx)

    @contextmanager
    def _top_transaction(self) -> Iterator[Tx]:
        """A unit in the caller's thread, holding the write lock (the writer thread waits)."""
        self._check_open()
        with self._wlock:
            tx = self._write_tx()
            self._control(self.begin_sql)
            tx._begin()
            self._local.tx = tx
            try:
                yield tx
                tx._flush()
            except BaseException:
                if self._in_transaction():
                    self._control("ROLLBACK")
                raise
            else:
                try:
                    self._control("COMMIT")
                except Exception as e:
                    if self._in_transaction():
                        self._control("ROLLBACK")
                    raise StoreUnavailable(f"commit failed; retry with the same key: {e}") from e
            finally:
                self._local.tx = None

    # -- the writer ------------------------------------------------------------------------------
    def _writer_loop(self) -> None:
        q = self._queue
        stop = False
        while not stop:
            if self._held and q.empty():
                self._release_held()
            first = q.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    nxt = q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            try:
                with self._wlock:
                    committed = self._run_batch(batch)
            except BaseException as e:  # a bug in the store itself: fail the batch, keep serving
                committed = False
                for req in batch:
                    req.error = StoreUnavailable(f"internal store error: {e!r}")
            if committed:
                self._on_commit(batch)
            else:
                _release(batch)
        self._release_held()
        self._on_stop()

    def _on_commit(self, batch: list[Request]) -> None:
        """A batch's COMMIT returned (durably): wake its callers just before the next batch's COMMIT."""
        self._release_held()
        self._held = batch

    def _on_stop(self) -> None:
        """The writer is stopping (a subclass may stop its own threads)."""

    def _release_held(self) -> None:
        held, self._held = self._held, []
        _release(held)

    def _run_batch(self, batch: list[Request]) -> bool:
        """Run a batch in one transaction, again from the start after a retryable failure; True if it
        committed (results may include errors)."""
        groups: dict[Any, list[Request]] = {}  # batchable requests by handler, units alone; arrival order
        for req in batch:
            groups.setdefault(req.handler if req.handler is not None else req, []).append(req)
        for attempt in range(self.retries + 1):
            for req in batch:
                req.result = req.error = None
            lost = self._attempt(list(groups.values()), any(r.durable for r in batch))
            if lost is None:
                return True
            if not self._retryable(lost) or attempt == self.retries:
                break
            self.batches_retried += 1
            time.sleep(random.uniform(0, 0.001 * 2 ** min(attempt, 6)))
        for req in batch:
            req.error = StoreUnavailable(f"commit failed, nothing posted; retry with the same key: {lost}")
            req.result = None
        return False

    def _attempt(self, groups: list[list[Request]], durable: bool = True) -> BaseException | None:
        """One try at a batch: None if it committed, else the error that lost the transaction (rolled back)."""
        try:
            tx = self._write_tx()
            self._begin_batch(durable)
        except Exception as e:
            return StoreUnavailable(f"cannot begin a transaction: {e}")
        tx._begin()
        self._local.tx = tx
        lost: BaseException | None = None
        try:
            for group in groups:
                if len(group) > 1 and self._run_chunk(group, tx):
                    continue
                for r in group:
                    lost = self._run_one(r, tx)
                    if lost is not None:
                        break
                if lost is not None:
                    break
            if lost is None:
                tx._flush()
                self._release_held()
                self._control("COMMIT")
        except Exception as e:
            lost = e
        finally:
            self._local.tx = None
        if lost is None:
            return None
        try:
            if self._in_transaction():
                self._control("ROLLBACK")
        except Exception:  # noqa: S110 - the connection is gone; the next batch reconnects
            pass
        return lost

    def _savepoint(self, tx: Tx) -> None:
        self._control("SAVEPOINT rq")
        tx._sp_begin()

    def _end_savepoint(self, tx: Tx, *, keep: bool) -> None:
        tx._sp_end(keep)
        if not keep:
            self._control("ROLLBACK TO SAVEPOINT rq")
        self._control("RELEASE SAVEPOINT rq")

    def _run_chunk(self, chunk: list[Request], tx: Tx) -> bool:
        """Hand a group of batchable requests to their handler at once; False to retry one by one."""
        handler = chunk[0].handler
        assert handler is not None
        self._savepoint(tx)
        try:
            results = handler(tx, [r.item for r in chunk])
            if len(results) != len(chunk):
                raise RuntimeError("batch handler returned the wrong number of results")
        except Exception as e:
            if not self._in_transaction() or self._retryable(e):
                raise
            self._end_savepoint(tx, keep=False)
            return False
        self._end_savepoint(tx, keep=True)
        for r, res in zip(chunk, results, strict=True):
            r.result = res
        return True

    def _run_one(self, req: Request, tx: Tx) -> BaseException | None:
        """Run one request in a SAVEPOINT; return an error only if the whole transaction was lost (or must
        be run again)."""
        self._savepoint(tx)
        try:
            req.result = self._run_request(req, tx)
        except BaseException as e:  # the request's own failure: undo it alone
            req.error = e
            if not self._in_transaction() or self._retryable(e):  # the database rolled back everything
                return e
            self._end_savepoint(tx, keep=False)
        else:
            self._end_savepoint(tx, keep=True)
        return None

    # -- lifecycle -------------------------------------------------------------------------------
    def _stop_writer(self) -> None:
        """Finish queued work, stop the threads, and fail requests that raced with close()."""
        self._closed = True
        if self._threads:
            self._queue.put(None)
            for t in self._threads:
                t.join()
        while True:
            try:
                req = self._queue.get_nowait()
            except queue.Empty:
                break
            if req is not None:
                req.error = StoreUnavailable("store is closed")
                _release([req])
