"""Who may call the daemon: bearer tokens for every call, and short-lived tokens for event streams.

Front ends (HIS, kiosk, the counter page) send `Authorization: Bearer <token>`; the configuration holds
only SHA-256 hashes. A browser's `EventSource` cannot send headers, so a page asks for an events token with
an authenticated POST and puts it in the stream's URL (`?access_token=`). That token:
- is good for the event stream of one reader only (no other route takes it);
- expires `events_token_ttl` seconds after issue (a stream is checked when it is opened; a page opens a
  new one with a new token when its stream drops), and is refused after that, however often it is shown;
- is random (256 bits) and kept in memory only: a restart forgets them all.
The clock is injected so tests move it instead of waiting.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class EventsGrant:
    reader: str
    client: str  # which bearer token asked for it (its hash), for the logs
    expires: float


class EventTokens:
    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.clock = ttl, clock
        self._grants: dict[str, EventsGrant] = {}
        self._lock = threading.Lock()

    def issue(self, reader: str, client: str) -> str:
        """A new token for `reader`'s event stream, asked for by `client` (its token's hash prefix)."""
        token = secrets.token_urlsafe(32)
        grant = EventsGrant(reader, client, self.clock() + self.ttl)
        with self._lock:
            now = self.clock()
            self._grants = {t: g for t, g in self._grants.items() if g.expires > now}  # forget the expired
            self._grants[token] = grant
        return token

    def check(self, token: str, reader: str) -> EventsGrant | None:
        """The grant if `token` is live and for `reader`; None otherwise."""
        with self._lock:
            grant = self._grants.get(token)
            if grant is None:
                return None
            if grant.expires <= self.clock():
                del self._grants[token]
                return None
        return grant if grant.reader == reader else None
