"""Server-sent event streams without a thread each, capped per caller, ended when the daemon stops.

Issue 12, finding 6: each `/v1/readers/events` stream held a worker thread, so with 150 streams open a
settlement took 46 s, `/health` 30 s, and SIGTERM did not stop the daemon. Now a stream is a coroutine waiting
on an `asyncio.Event`, which the reader's publisher (its watcher thread) sets through the stream's event loop
(`Waiter.wake`); `EventStreams` counts the open streams per caller (the bearer token's hash, or for an events
token the bearer token that asked for it) and refuses one past `max_per_client` (429 TOO_MANY_STREAMS), and
`close()`, called when the daemon is told to stop, ends them all at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

from terminal.errors import TerminalError


class Waiter:
    """One stream's wake-up call, safe to ring from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, client: str) -> None:
        self.loop, self.client = loop, client
        self._event = asyncio.Event()

    def wake(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self._event.set)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    async def wait(self, timeout: float) -> None:
        """Until woken (or `timeout` seconds); a wake-up while the stream was busy is not lost."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            pass
        self._event.clear()


class EventStreams:
    def __init__(self, max_per_client: int) -> None:
        self.max_per_client = max_per_client
        self.closed = False
        self._lock = threading.Lock()
        self._open: Counter[str] = Counter()
        self._waiters: set[Waiter] = set()

    def open(self, client: str) -> Waiter:
        """A stream for `client` (in the running event loop), or a refusal past the cap or once closing."""
        with self._lock:
            if self.closed:
                raise TerminalError("DAEMON_STOPPING", "the daemon is stopping", 503)
            if self._open[client] >= self.max_per_client:
                raise TerminalError("TOO_MANY_STREAMS", f"{self.max_per_client} event streams are open already for "
                                    "this token", 429, limit=self.max_per_client)
            self._open[client] += 1
            waiter = Waiter(asyncio.get_running_loop(), client)
            self._waiters.add(waiter)
        return waiter

    def release(self, waiter: Waiter) -> None:
        """The stream ended (once per stream; again is a no-op)."""
        with self._lock:
            if waiter not in self._waiters:
                return
            self._waiters.discard(waiter)
            self._open[waiter.client] -= 1
            if not self._open[waiter.client]:
                del self._open[waiter.client]

    def count(self, client: str | None = None) -> int:
        with self._lock:
            return self._open[client] if client is not None else len(self._waiters)

    def close(self) -> None:
        """End every stream now, and open no more (the daemon is stopping)."""
        with self._lock:
            self.closed = True
            waiters = list(self._waiters)
        for w in waiters:
            w.wake()
