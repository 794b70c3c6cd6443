"""The terminal's clock: the one source of time for journal stamps, business days, card validity and the
card's transaction records.

Injected (a test or a replay passes its own `now`), never read from the wall behind the terminal's back.
The machine's own time zone plays no part: stamps are UTC, calendar dates (business day, a card's expiry)
and the time written to the card are China Standard Time (UTC+8, no daylight saving).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

CHINA = dt.timezone(dt.timedelta(hours=8), "CST")
"""China Standard Time."""


def utc_now() -> dt.datetime:
    """The wall clock, as an aware UTC datetime."""
    return dt.datetime.now(dt.UTC)


class Clock:
    """`now()` from an injected source of aware datetimes (default: the wall clock)."""

    def __init__(self, now: Callable[[], dt.datetime] = utc_now) -> None:
        self.source = now

    def now(self) -> dt.datetime:
        """The time, as an aware UTC datetime."""
        t = self.source()
        if t.tzinfo is None:
            raise ValueError("the terminal clock must return aware datetimes")
        return t.astimezone(dt.UTC)

    def stamp(self) -> str:
        """Now as the journal's UTC string, with microseconds."""
        return self.now().isoformat(timespec="microseconds")

    def china(self) -> dt.datetime:
        """Now in China Standard Time (what a card's transaction record and a receipt show)."""
        return self.now().astimezone(CHINA)

    def today(self) -> dt.date:
        """The calendar date in China: the business day, and the day a card's validity is judged on."""
        return self.china().date()
