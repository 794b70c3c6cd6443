"""Card sessions: one per reader, one flow at a time, and what the terminal knows of the card in it.

A `ReaderSession` owns a reader and the `SocialSecurityCard` on it. A flow takes the session with
`claim()` (a second flow on a busy reader gets ReaderBusy at once rather than queueing behind a card
holder), works with the card, and releases it. The session keeps the card's basic data from the first
read and checks, before anything is sent to the centre and again after, that the same card is still in
the reader (`still_present()`): one READ RECORD of the card identification code.

Readers are named by a spec (`cardlib.readers.open_reader`): a PC/SC reader name (or `pcsc:NAME`),
`serial:URL`, or a scheme the composition root registered (`memory:SAMPLE` in demos and tests).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cardlib import layout
from cardlib.card import BasicInfo, SocialSecurityCard
from cardlib.errors import CardError, CardRemoved, CardTimeout, NoCard, ReaderUnavailable
from cardlib.readers.base import Reader
from terminal.logs import event

if TYPE_CHECKING:
    from terminal.streams import Waiter


class SessionError(Exception):
    """A reader-level refusal with a stable code (mapped to HTTP by terminal.errors)."""

    code = "READER_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ReaderBusy(SessionError):
    code = "READER_BUSY"


class UnknownReader(SessionError):
    code = "UNKNOWN_READER"


@dataclass
class CardEvent:
    kind: str  # "inserted" | "removed" (the card), "reader_unavailable" | "reader_available" (the reader)
    reader: str
    at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())

    @property
    def stream(self) -> str:
        """The server-sent event name: `reader` for the reader's own events, `card` for the card's."""
        return "reader" if self.kind.startswith("reader_") else "card"


class ReaderSession:
    """The user-card reader of a counter and the card in it."""

    def __init__(self, name: str, reader: Reader) -> None:
        self.name = name
        self.reader = reader
        self.card = SocialSecurityCard(reader)
        self.info: BasicInfo | None = None
        self.card_seen: bool | None = None  # whether the last exchange found a card (None: not asked yet)
        self.available = True  # False while the reader (or pcscd) is gone, as the watcher or a read saw
        self._lock = threading.Lock()
        self.busy_with: str | None = None
        self.events: list[tuple[int, CardEvent]] = []  # (sequence number, event), the last 100
        self._seq = 0
        self._event_lock = threading.Lock()
        self._subscribers: set[Waiter] = set()  # event streams waiting for the next event
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()

    # ---- one flow at a time ---------------------------------------------------------------------------
    @contextmanager
    def claim(self, flow: str) -> Iterator[ReaderSession]:
        if not self._lock.acquire(blocking=False):
            raise ReaderBusy(f"reader {self.name} is busy with {self.busy_with or 'another flow'}")
        self.busy_with = flow
        try:
            yield self
        finally:
            self.busy_with = None
            self._lock.release()

    # ---- the card ------------------------------------------------------------------------------------
    def read(self) -> BasicInfo:
        """Connect (again) and read the card's basic data; the session remembers it."""
        self.info = None
        try:
            self.card.connect()
            self.card_seen = self.available = True
            self.info = self.card.read_basic()
        except CardError as e:
            self._saw(e)
            self._disconnect_quietly()
            raise
        return self.info

    def _saw(self, e: CardError) -> None:
        """What a failed exchange says about the card and the reader."""
        if isinstance(e, (NoCard, CardRemoved)):
            self.card_seen = False
        elif isinstance(e, CardTimeout):
            self.card_seen = True  # a card that does not answer is still a card in the reader
        elif isinstance(e, ReaderUnavailable):
            self.available = False

    def ensure_read(self) -> BasicInfo:
        """The card's basic data, reading the card when the session has none or the card changed."""
        if self.info is not None and self.still_present():
            return self.info
        return self.read()

    def still_present(self) -> bool:
        """Whether the card read earlier is still in the reader (same card identification code)."""
        if self.info is None:
            return False
        try:
            self.card.select_ssse()
            card_id = self.card.read_item(layout.EF05, "card_id")
        except CardError as e:
            self._saw(e)
            self.info = None
            self._disconnect_quietly()
            return False
        return card_id.hex().upper() == self.info.card_id

    def require_present(self) -> None:
        if not self.still_present():
            raise CardRemoved(f"the card was removed from {self.name}")

    def _disconnect_quietly(self) -> None:
        try:
            self.card.disconnect()
        except CardError:
            pass

    def _card_in_reader(self) -> bool:
        """Whether a card is in the reader without touching it (a flow holds it): pcscd knows for a PC/SC
        reader; for others, what the flow's last exchange showed."""
        from cardlib.readers.pcsc import PcscReader, reader_states

        if isinstance(self.reader, PcscReader):
            try:
                return reader_states([self.reader.name])[0].present
            except CardError:
                pass
        return bool(self.card_seen)

    def status(self) -> dict[str, object]:
        """Reader and card state. An idle reader is asked; a busy one is not disturbed: `busy` says a flow
        holds it, and `card_present` still says whether a card is in it."""
        if not self._lock.locked():
            try:
                with self.claim("status"):
                    try:
                        self.still_present() or self.read()
                    except CardError:
                        pass  # read() noted what the failure says
            except ReaderBusy:
                pass
        busy_with = self.busy_with
        present = self._card_in_reader() if busy_with else bool(self.card_seen) and self.available
        return {
            "reader": self.name,
            "available": self.available,
            "busy": busy_with is not None,
            "busy_with": busy_with,
            "card_present": present,
            "card_no": self.info.card_number if self.info else None,
        }

    # ---- events (server-sent to front ends) ---------------------------------------------------------------
    def publish(self, kind: str) -> None:
        event(f"reader.{kind}", reader=self.name)
        with self._event_lock:
            self._seq += 1
            self.events.append((self._seq, CardEvent(kind, self.name)))
            del self.events[:-100]
            waiting = list(self._subscribers)
        for w in waiting:
            w.wake()

    def last_event(self) -> int:
        """The sequence number of the latest event (0: none yet)."""
        with self._event_lock:
            return self.events[-1][0] if self.events else 0

    def events_after(self, after: int) -> list[tuple[int, CardEvent]]:
        with self._event_lock:
            return [(n, e) for n, e in self.events if n > after]

    def subscribe(self, waiter: Waiter) -> None:
        """Wake `waiter` on every event from now on (until `unsubscribe`)."""
        with self._event_lock:
            self._subscribers.add(waiter)

    def unsubscribe(self, waiter: Waiter) -> None:
        with self._event_lock:
            self._subscribers.discard(waiter)

    def watch(self) -> None:
        """Publish a PC/SC reader's events from a background thread: the card inserted or removed (pcscd
        polls every 0.4 s), and the reader unavailable or available again (pcscd stopped or restarted,
        reader unplugged). The card's data is forgotten on removal and on an outage."""
        from cardlib.readers import pcsc

        if not isinstance(self.reader, pcsc.PcscReader) or self._watcher is not None:
            return

        def run() -> None:
            while not self._stop.is_set():
                for kind, _reader, _atr in pcsc.watch([self.reader.name], timeout=3600.0, stop=self._stop.is_set):
                    if kind in (pcsc.REMOVED, pcsc.READER_UNAVAILABLE):
                        self.info = None
                    if kind in (pcsc.READER_UNAVAILABLE, pcsc.READER_AVAILABLE):
                        self.available = kind == pcsc.READER_AVAILABLE
                        self.card_seen = None if self.available else False
                    else:
                        self.card_seen = kind == pcsc.INSERTED
                    self.publish(kind)

        self._watcher = threading.Thread(target=run, name=f"watch:{self.name}", daemon=True)
        self._watcher.start()

    def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(3)
        close = getattr(self.reader, "close", None)
        try:
            close() if close else self.reader.disconnect()
        except CardError:
            pass
