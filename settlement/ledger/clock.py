"""The engine's clock: the one source of time for stamps, postings and China calendar dates.

Injected (a test, a replay or the load generator passes its own `now`), never read from the wall behind
the engine's back. Times are stored as UTC ISO 8601 strings with microseconds; calendar dates (visit day,
accumulator year, pension month, business day) are China Standard Time (UTC+8, no daylight saving).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

CST = dt.timezone(dt.timedelta(hours=8), "CST")
"""China Standard Time."""


def utc_now() -> dt.datetime:
    """The wall clock, as an aware UTC datetime."""
    return dt.datetime.now(dt.UTC)


_second: tuple[int, str] = (0, "")


def _wall_stamp() -> str:
    """The wall clock as the store's UTC string ("2025-01-02T03:04:05.123456+00:00"), cheaply."""
    global _second
    sec, us = divmod(time.time_ns() // 1000, 1_000_000)
    cached = _second
    if cached[0] != sec:
        cached = _second = (sec, dt.datetime.fromtimestamp(sec, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{cached[1]}.{us:06d}+00:00"


class Clock:
    """`now()` from an injected source of aware datetimes (default: the wall clock); calling a Clock is
    `now()`, so a Clock can be the source of another."""

    def __init__(self, now: Callable[[], dt.datetime] = utc_now) -> None:
        self.source = now.source if isinstance(now, Clock) else now

    def __call__(self) -> dt.datetime:
        return self.now()

    def now(self) -> dt.datetime:
        """The time, as an aware UTC datetime."""
        t = self.source()
        if t.tzinfo is None:
            raise ValueError("the engine clock must return aware datetimes")
        return t.astimezone(dt.UTC)

    def stamp(self, t: dt.datetime | None = None) -> str:
        """A UTC timestamp string for the store (of `t`, default: now)."""
        if t is None and self.source is utc_now:
            return _wall_stamp()
        return (t or self.now()).isoformat(timespec="microseconds")

    def today(self, t: dt.datetime | None = None) -> dt.date:
        """The calendar date in China of `t` (default: now)."""
        return (t or self.now()).astimezone(CST).date()
