"""SQLite store: WAL, synchronous=FULL, and group commit through a single writer thread.

Durability: journal_mode=WAL with synchronous=FULL fsyncs the WAL at every COMMIT, so a unit whose
`run()` returned is on disk and survives a process or machine crash. (NORMAL in WAL mode would be
crash-safe for the process but could lose the last commits on power loss; we keep FULL, and group
commit pays for it: one fsync per batch, not per settlement.)

Group commit: callers never write. `run(fn)` enqueues `fn`; the writer thread drains the queue
(up to `max_batch` requests), opens one `BEGIN IMMEDIATE`, runs each request inside its own
SAVEPOINT (a request that raises is rolled back alone and does not poison the batch), COMMITs once,
and only then releases every waiter. A request never returns before the commit that holds it; if the
COMMIT itself fails, every request in the batch fails with StoreUnavailable and nothing is posted.
Reads use one read-only connection per thread and see committed data only.

`group_commit=False` gives the naive mode (each unit is its own transaction and fsync, run in the
caller's thread under the write lock): the benchmark's baseline.
"""

from __future__ import annotations

import _thread
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import sqlite_utils

from settlement.errors import StoreUnavailable
from settlement.store.base import Params, Store, Tx

T = TypeVar("T")


class SqliteTx(Tx):
    """A transaction on one sqlite3 connection (autocommit mode; BEGIN/COMMIT are explicit)."""

    dialect: ClassVar[str] = "sqlite"
    for_update: ClassVar[str] = ""

    __slots__ = ("conn", "_depth")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._depth = 0

    def execute(self, sql: str, params: Params = ()) -> int:
        return self.conn.execute(sql, params).rowcount

    def executemany(self, sql: str, seq_of_params: Iterable[Params]) -> int:
        return self.conn.executemany(sql, seq_of_params).rowcount

    def fetch(self, sql: str, params: Params = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        cur = self.conn.execute(sql, params)
        cols = [d[0] for d in cur.description] if cur.description else []
        return cols, cur.fetchall()

    def rows(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    @contextmanager
    def savepoint(self) -> Iterator[SqliteTx]:
        self._depth += 1
        name = f"sp{self._depth}"
        self.conn.execute(f"SAVEPOINT {name}")
        try:
            yield self
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute(f"ROLLBACK TO {name}")
                self.conn.execute(f"RELEASE {name}")
            raise
        else:
            self.conn.execute(f"RELEASE {name}")
        finally:
            self._depth -= 1


class _Request:
    __slots__ = ("fn", "handler", "item", "done", "result", "error")

    def __init__(
        self,
        fn: Callable[[Tx], Any] | None,
        handler: Callable[[Tx, list[Any]], list[Any]] | None = None,
        item: Any = None,
    ) -> None:
        self.fn = fn
        self.handler = handler
        self.item = item
        self.done = _thread.allocate_lock()
        self.done.acquire()
        self.result: Any = None
        self.error: BaseException | None = None


def _release(reqs: list[_Request]) -> None:
    """Wake the waiters of committed (or failed) requests, once each."""
    while reqs:
        reqs.pop().done.release()


def _connect(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, cached_statements=512)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA cache_size = -65536")  # 64 MiB of page cache
    if readonly:
        conn.execute("PRAGMA query_only = 1")
    return conn


class SqliteStore(Store):
    """SQLite file store. `SqliteStore(path)`; use as a context manager or call `close()`."""

    dialect: ClassVar[str] = "sqlite"

    def __init__(self, path: str | Path, *, group_commit: bool = True, max_batch: int = 1024) -> None:
        super().__init__()
        self.path = str(path)
        if self.path == ":memory:" or self.path.startswith("file:"):
            raise ValueError("SqliteStore needs a file path (WAL and reader connections)")
        self._conn = _connect(self.path)
        self.db = sqlite_utils.Database(self._conn)
        self.db.enable_wal()
        self._wtx = SqliteTx(self._conn)
        self._wlock = threading.RLock()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self.group_commit = group_commit
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        if group_commit:
            self._writer = threading.Thread(target=self._writer_loop, name="sqlite-group-commit", daemon=True)
            self._writer.start()

    # -- writes ------------------------------------------------------------------------------------
    def _run_top(self, fn: Callable[[Tx], T]) -> T:
        if self._closed:
            raise StoreUnavailable("store is closed")
        if not self.group_commit:
            with self._top_transaction() as tx:
                return fn(tx)
        req = _Request(fn)
        self._queue.put(req)
        req.done.acquire()
        if req.error is not None:
            raise req.error
        return req.result  # type: ignore[no-any-return]

    def _run_batched_top(self, handler: Callable[[Tx, list[Any]], list[Any]], item: Any) -> Any:
        if not self.group_commit:
            return super()._run_batched_top(handler, item)
        if self._closed:
            raise StoreUnavailable("store is closed")
        req = _Request(None, handler, item)
        self._queue.put(req)
        req.done.acquire()
        if req.error is not None:
            raise req.error
        return req.result

    @contextmanager
    def _top_transaction(self) -> Iterator[Tx]:
        if self._closed:
            raise StoreUnavailable("store is closed")
        with self._wlock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            self._local.tx = self._wtx
            try:
                yield self._wtx
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            else:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as e:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise StoreUnavailable(f"commit failed: {e}") from e
            finally:
                self._local.tx = None

    def _writer_loop(self) -> None:
        """Drain the queue into batches. Waiters of a committed batch are released just before the
        next batch's COMMIT (if one is already queued), so their Python work runs while the writer
        waits on fsync instead of competing with it for the GIL; with an empty queue, at once."""
        q = self._queue
        stop = False
        committed: list[_Request] = []
        while not stop:
            if committed and q.empty():
                _release(committed)
                committed = []
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
            with self._wlock:
                self._run_batch(batch, committed)
            committed = batch
        _release(committed)

    def _run_batch(self, batch: list[_Request], committed: list[_Request]) -> None:
        """One transaction for the whole batch; each request (or run of batchable requests) in a
        SAVEPOINT; one COMMIT; results are handed out by the caller of this method afterwards."""
        conn, tx = self._conn, self._wtx
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            _release(committed)
            for req in batch:
                req.error = StoreUnavailable(f"cannot begin: {e}")
            return
        self._local.tx = tx
        lost: BaseException | None = None
        try:
            i = 0
            while i < len(batch) and lost is None:
                req = batch[i]
                if req.handler is None:
                    lost = self._run_one(req, req.fn, None)
                    i += 1
                    continue
                j = i + 1
                while j < len(batch) and batch[j].handler is not None and batch[j].handler == req.handler:
                    j += 1
                chunk = batch[i:j]
                i = j
                if len(chunk) > 1:
                    conn.execute("SAVEPOINT rq")
                    try:
                        results = req.handler(tx, [r.item for r in chunk])
                        if len(results) != len(chunk):
                            raise RuntimeError("batch handler returned the wrong number of results")
                    except BaseException as e:  # retry the chunk's requests one at a time below
                        if not conn.in_transaction:
                            lost = e
                            break
                        conn.execute("ROLLBACK TO rq")
                        conn.execute("RELEASE rq")
                    else:
                        conn.execute("RELEASE rq")
                        for r, res in zip(chunk, results, strict=True):
                            r.result = res
                        continue
                for r in chunk:
                    lost = self._run_one(r, None, r.handler)
                    if lost is not None:
                        break
            _release(committed)  # durable since the previous COMMIT
            if lost is None:
                conn.execute("COMMIT")
        except Exception as e:
            lost = e
        finally:
            _release(committed)
            self._local.tx = None
        if lost is not None:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for req in batch:
                req.error = StoreUnavailable(f"commit failed, nothing posted; retry with the same key: {lost}")
                req.result = None

    def _run_one(
        self,
        req: _Request,
        fn: Callable[[Tx], Any] | None,
        handler: Callable[[Tx, list[Any]], list[Any]] | None,
    ) -> BaseException | None:
        """Run one request in a SAVEPOINT; return an error only if the whole transaction was lost."""
        conn = self._conn
        conn.execute("SAVEPOINT rq")
        try:
            if fn is not None:
                req.result = fn(self._wtx)
            else:
                assert handler is not None
                req.result = handler(self._wtx, [req.item])[0]
        except BaseException as e:  # the request's own failure: undo it alone
            req.error = e
            if not conn.in_transaction:  # SQLite rolled back everything (I/O error, full disk)
                return e
            conn.execute("ROLLBACK TO rq")
            conn.execute("RELEASE rq")
        else:
            conn.execute("RELEASE rq")
        return None

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
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
            while True:  # requests that raced with close(): fail them, never leave a waiter hanging
                try:
                    req = self._queue.get_nowait()
                except queue.Empty:
                    break
                if req is not None:
                    req.error = StoreUnavailable("store is closed")
                    req.done.release()
        with self._wlock:
            self._conn.close()
        with self._readers_lock:
            for c in self._readers:
                c.close()
            self._readers.clear()
