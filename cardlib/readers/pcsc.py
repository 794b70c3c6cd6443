"""PC/SC readers through pyscard's `smartcard.scard` layer (the thin wrapper over libpcsclite).

The low-level layer is used on purpose: it gives the exact PC/SC return codes (each becomes the typed error
cardlib.readers.pcsc_errors names for it) and keeps cardlib's overhead per APDU to a list conversion.

**Deadlines.** A card that never answers blocks SCardTransmit for good: the reader driver waits for it,
and pcscd holds the reader (every other call on it, SCardDisconnect, SCardReconnect and a new SCardConnect
from another context included, waits behind it) until the card is pulled. SCardCancel only cancels
SCardGetStatusChange. What does return at once is the client side: each PC/SC context talks to pcscd over
its own socket, and when that socket is shut down, the blocked call returns SCARD_F_COMM_ERROR. So every
blocking call of a `PcscReader` (connect, transmit, reconnect) runs against a deadline (`timeout`, default
DEFAULT_TIMEOUT); one watchdog thread shuts the context's socket when a call overruns it; the caller gets
CardTimeout naming the command; the reader drops that context and opens a new one on the next connect.
pcscd resets the card of a vanished client as soon as the reader gives the card up (on real readers,
when their own mute-card timeout expires; behind vpcd, when the card is pulled), and the reader serves the
next card. Measured with pcscd + vpcd and a mute simulated card (tests/integration/test_pcsc_faults.py).
The watchdog costs a clock read and a lock per call, nothing else on the path (a worker thread per
call would cost ~70 us per APDU here, half an APDU's round trip).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from smartcard import scard

from cardlib.errors import CardRemoved, CardTimeout, NoCard, ReaderNotFound, ServiceUnavailable, TransportError
from cardlib.readers.base import DEFAULT_TIMEOUT, Reader
from cardlib.readers.pcsc_errors import NO_READERS, SUCCESS, TIMEOUT, describe, pcsc_error, u32
from cardlib.trace import describe_apdu

log = logging.getLogger(__name__)
T = TypeVar("T")

#: pcsc-lite's client socket (the daemon's path is compiled in; the client honours this variable)
PCSCD_SOCKET = os.environ.get("PCSCLITE_CSOCK_NAME", "/run/pcscd/pcscd.comm")


# ---- contexts -------------------------------------------------------------------------------------------
def _pcscd_sockets() -> set[int]:
    """File descriptors of this process that are sockets connected to pcscd."""
    out: set[int] = set()
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return out
    for name in fds:
        fd = int(name)
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            s = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            if s.family == socket.AF_UNIX and s.getpeername() == PCSCD_SOCKET:
                out.add(fd)
        except OSError:
            pass
        finally:
            s.close()
    return out


_establish_lock = threading.Lock()


class _Context:
    """A PC/SC context, established lazily. With `cuttable`, it learns its socket to pcscd so that a call
    blocked on it can be ended with `cut()`."""

    def __init__(self, cuttable: bool = False) -> None:
        self.handle: int | None = None
        self.cuttable = cuttable
        self.fd: int | None = None

    def get(self) -> int:
        if self.handle is None:
            if self.cuttable:
                for attempt in range(3):  # another thread may open a pcscd socket at the same moment
                    with _establish_lock:
                        before = _pcscd_sockets()
                        rv, h = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
                        new = _pcscd_sockets() - before if rv == SUCCESS else set()
                    if rv != SUCCESS or len(new) == 1 or attempt == 2:
                        break
                    scard.SCardReleaseContext(h)
                self.fd = new.pop() if len(new) == 1 else None
                if rv == SUCCESS and self.fd is None:
                    log.warning("cannot tell this PC/SC context's socket: a card that never answers will hang")
            else:
                rv, h = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            if rv != SUCCESS:
                raise pcsc_error(rv, "PC/SC service not available")
            self.handle = h
        return self.handle

    def cut(self) -> bool:
        """Shut the context's socket: a call blocked on it returns SCARD_F_COMM_ERROR at once."""
        if self.fd is None:
            return False
        try:
            s = socket.socket(fileno=os.dup(self.fd))
        except OSError:
            return False
        try:
            if s.family != socket.AF_UNIX or s.getpeername() != PCSCD_SOCKET:
                return False  # not our socket to pcscd any more: touch nothing
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            return False
        finally:
            s.close()
        return True

    def release(self) -> None:
        if self.handle is not None:
            scard.SCardReleaseContext(self.handle)  # errors ignored: pcscd may be gone or the socket cut
            self.handle = None
            self.fd = None


class _Watchdog:
    """One thread for all PcscReaders: cuts a call that has overrun its reader's deadline."""

    def __init__(self) -> None:
        self.readers: weakref.WeakSet[PcscReader] = weakref.WeakSet()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def add(self, reader: PcscReader) -> None:
        with self.lock:
            self.readers.add(reader)
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="pcsc-watchdog", daemon=True)
                self.thread.start()

    def discard(self, reader: PcscReader) -> None:
        with self.lock:
            self.readers.discard(reader)

    def _run(self) -> None:
        while True:
            with self.lock:
                readers = list(self.readers)
                if not readers:
                    self.thread = None
                    return
            period = min(0.25, max(0.01, min(r.timeout for r in readers) / 8))
            time.sleep(period)
            now = time.monotonic()
            for r in readers:
                r._expire(now)
            del readers


_watchdog = _Watchdog()


# ---- listing and state ----------------------------------------------------------------------------------
def list_readers() -> list[str]:
    """Names of the PC/SC readers. Raises ServiceUnavailable when pcscd is not running."""
    ctx = _Context()
    try:
        rv, names = scard.SCardListReaders(ctx.get(), [])
        if u32(rv) == NO_READERS:
            return []
        if rv != SUCCESS:
            raise pcsc_error(rv, "cannot list readers")
        return list(names)
    finally:
        ctx.release()


@dataclass(frozen=True)
class SlotState:
    reader: str
    present: bool
    atr: bytes
    in_use: bool = False  # another connection (or a call still pending in pcscd) holds the card


def reader_states(names: list[str] | None = None) -> list[SlotState]:
    """Whether each reader has a card in it, and its ATR (one SCardGetStatusChange call, no waiting)."""
    ctx = _Context()
    try:
        names = names if names is not None else list_readers()
        if not names:
            return []
        rv, states = scard.SCardGetStatusChange(ctx.get(), 0, [(n, scard.SCARD_STATE_UNAWARE) for n in names])
        if rv != SUCCESS and u32(rv) != TIMEOUT:
            raise pcsc_error(rv, "reader status query failed")
        return [
            SlotState(n, bool(s & scard.SCARD_STATE_PRESENT), bytes(a), bool(s & scard.SCARD_STATE_INUSE))
            for n, s, a in states
        ]
    finally:
        ctx.release()


def wait_present(names: list[str], timeout: float = 5.0, present: bool = True) -> None:
    """Wait until every reader in `names` has a card (or none, with present=False). pcscd polls every 400 ms."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            states = reader_states(names)
            if all(s.present == present for s in states):
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"cards {'not present' if present else 'still present'} in {names} after {timeout} s")
        time.sleep(0.05)


def resolve_reader(name: str | None) -> str:
    """Exact reader name for `name` (exact match, else unique substring); first reader when None."""
    names = list_readers()
    if not names:
        raise ReaderNotFound("no PC/SC readers")
    if name is None:
        return names[0]
    if name in names:
        return name
    hits = [n for n in names if name.lower() in n.lower()]
    if len(hits) == 1:
        return hits[0]
    raise ReaderNotFound(f"no single reader matches {name!r}; readers: {', '.join(names)}")


# ---- one reader -----------------------------------------------------------------------------------------
class PcscReader(Reader):
    """One PC/SC reader slot. Every blocking call ends by `timeout` seconds (see the module docstring)."""

    def __init__(self, name: str, share: int = scard.SCARD_SHARE_SHARED, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.name = name
        self.share = share
        self.timeout = timeout
        self._ctx = _Context(cuttable=True)
        self._card: int | None = None
        self._pci = scard.SCARD_PCI_T1
        self.protocol = 0
        self._deadline: float | None = None
        self._cut = False
        self._cut_lock = threading.Lock()

    # ---- deadlines ----------------------------------------------------------------------------------------
    def _expire(self, now: float) -> None:
        """Called by the watchdog: cut the pending call if it has overrun its deadline."""
        with self._cut_lock:
            if self._deadline is not None and now >= self._deadline and not self._cut:
                self._cut = self._ctx.cut()

    def _settle(self) -> bool:
        """End a bounded call: clear its deadline; True if the watchdog cut it."""
        with self._cut_lock:
            self._deadline = None
            cut, self._cut = self._cut, False
        return cut

    def _timed_out(self, what: str) -> CardTimeout:
        self._card = None
        self._ctx.release()  # its socket is shut: the next connect opens a new context
        return CardTimeout(
            f"{what}: no answer from the card in {self.name} within {self.timeout:g} s; the reader was let go "
            "(pcscd resets the card once the reader gives it up: if this repeats, remove the card)"
        )

    def _bounded(self, what: str, call: Callable[[], T]) -> T:
        """Run one blocking PC/SC call against the deadline; CardTimeout if the watchdog had to cut it."""
        self._deadline = time.monotonic() + self.timeout
        try:
            result = call()
        finally:
            cut = self._settle()
        if cut:
            raise self._timed_out(what)
        return result

    # ---- connection ---------------------------------------------------------------------------------------
    def connect(self) -> bytes:
        self.disconnect()
        _watchdog.add(self)
        try:
            return self._connect()
        except ServiceUnavailable:
            # a context from before a pcscd restart is dead: one more try with a fresh one
            self._ctx.release()
            return self._connect()

    def _connect(self) -> bytes:
        ctx = self._ctx.get()
        protocols = scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        rv, card, proto = self._bounded(
            "connect", lambda: scard.SCardConnect(ctx, self.name, self.share, protocols)
        )
        if rv != SUCCESS:
            err = pcsc_error(rv, f"cannot connect to {self.name}")
            if isinstance(err, ServiceUnavailable):
                self._ctx.release()
            raise err
        self._card, self.protocol = card, proto
        self._pci = scard.SCARD_PCI_T0 if proto == scard.SCARD_PROTOCOL_T0 else scard.SCARD_PCI_T1
        rv, _reader, _state, _proto, atr = scard.SCardStatus(card)
        self.atr = bytes(atr) if rv == SUCCESS else b""
        return self.atr

    def _raise(self, rv: int, what: str) -> None:
        err = pcsc_error(rv, f"{self.name}: {what}")
        if isinstance(err, ServiceUnavailable):
            self._card = None
            self._ctx.release()
        raise err

    def transmit(self, apdu: bytes) -> bytes:
        card = self._card
        if card is None:
            raise NoCard(f"not connected to a card in {self.name}")
        self._deadline = time.monotonic() + self.timeout  # _bounded, inlined on the per-APDU path
        try:
            rv, resp = scard.SCardTransmit(card, self._pci, list(apdu))
        finally:
            cut = self._settle()
        if cut:
            raise self._timed_out(describe_apdu(apdu))
        if rv != SUCCESS:
            self._raise(rv, f"{describe_apdu(apdu)} failed")
        if not resp:
            # vpcd reports a card that went away mid-command as an empty answer with success.
            raise CardRemoved(f"{describe_apdu(apdu)}: the card in {self.name} answered nothing (removed?)")
        return bytes(resp)

    def reconnect(self) -> bytes:
        if self._card is None:
            return self.connect()
        card = self._card
        rv, proto = self._bounded("reset", lambda: scard.SCardReconnect(
            card, self.share, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1, scard.SCARD_RESET_CARD
        ))
        if rv != SUCCESS:
            self._release_card()
            return self.connect()
        self.protocol = proto
        return self.atr

    def _release_card(self) -> None:
        if self._card is not None:
            scard.SCardDisconnect(self._card, scard.SCARD_LEAVE_CARD)  # errors ignored: card may be gone
            self._card = None

    def disconnect(self) -> None:
        self._release_card()

    def close(self) -> None:
        """Disconnect and release the PC/SC context (do this before pcscd stops)."""
        _watchdog.discard(self)
        self._release_card()
        self._ctx.release()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- card presence ---------------------------------------------------------------------------------
    def _wait(self, want_present: bool, timeout: float) -> bool:
        ctx = self._ctx.get()
        deadline = time.monotonic() + timeout
        state = scard.SCARD_STATE_UNAWARE
        while True:
            remaining = deadline - time.monotonic()
            if remaining < 0:
                return False
            rv, states = scard.SCardGetStatusChange(ctx, int(remaining * 1000), [(self.name, state)])
            if u32(rv) == TIMEOUT:
                return False
            if rv != SUCCESS:
                self._raise(rv, "wait for card")
            _name, event, _atr = states[0]
            if bool(event & scard.SCARD_STATE_PRESENT) == want_present:
                return True
            state = event & ~scard.SCARD_STATE_CHANGED

    def wait_for_card(self, timeout: float = 10.0) -> bool:
        """Block until a card is in the reader (True) or `timeout` seconds pass (False)."""
        return self._wait(True, timeout)

    def wait_for_removal(self, timeout: float = 10.0) -> bool:
        """Block until the reader is empty (True) or `timeout` seconds pass (False)."""
        return self._wait(False, timeout)


# ---- watching -------------------------------------------------------------------------------------------
#: what `watch()` yields: (kind, reader, atr)
INSERTED, REMOVED = "inserted", "removed"
READER_UNAVAILABLE, READER_AVAILABLE = "reader_unavailable", "reader_available"


def watch(names: list[str], timeout: float, poll_ms: int = 500, *, retry: float = 0.5,
          stop: Callable[[], bool] | None = None) -> Iterator[tuple[str, str, bytes]]:
    """Yield (kind, reader, atr) events for `names` until `timeout` seconds pass (or `stop()` is true).

    kind is "inserted" / "removed" for the card, "reader_unavailable" / "reader_available" for the reader:
    when pcscd stops or restarts, or a reader is unplugged, the watcher says so, tries again every `retry`
    seconds, and when the reader is back says "reader_available", then "inserted" if a card is in it.
    The state at the start is taken silently: the first event is the first change.
    """
    deadline = time.monotonic() + timeout
    available = dict.fromkeys(names, True)
    present: dict[str, bool] = {}  # what the last event said; an outage makes it "no card"

    def done() -> bool:
        return time.monotonic() >= deadline or (stop is not None and stop())

    def pause() -> None:
        time.sleep(max(0.0, min(retry, deadline - time.monotonic())))

    def outage(which: list[str], why: str) -> Iterator[tuple[str, str, bytes]]:
        for n in which:
            if available[n]:
                log.warning("reader %s unavailable: %s", n, why)
                available[n] = False
                present[n] = False
                yield (READER_UNAVAILABLE, n, b"")

    def changes(states: list) -> Iterator[tuple[str, str, bytes]]:
        for n, s, atr in states:
            now = bool(s & scard.SCARD_STATE_PRESENT)
            if n in present and present[n] != now:
                yield (INSERTED if now else REMOVED, n, bytes(atr))
            present[n] = now
            current[n] = s & ~scard.SCARD_STATE_CHANGED

    while not done():
        ctx = _Context()
        current: dict[str, int] = {}
        try:
            try:
                h = ctx.get()
            except TransportError as e:
                yield from outage(names, str(e))
                pause()
                continue
            rv, listed = scard.SCardListReaders(h, [])
            if rv != SUCCESS and u32(rv) != NO_READERS:
                yield from outage(names, describe(rv))
                pause()
                continue
            listed = list(listed) if rv == SUCCESS else []
            yield from outage([n for n in names if n not in listed], "not listed by pcscd")
            here = [n for n in names if n in listed]
            for n in here:
                if not available[n]:
                    available[n] = True
                    yield (READER_AVAILABLE, n, b"")
            if not here:
                pause()
                continue
            rv, states = scard.SCardGetStatusChange(h, 0, [(n, scard.SCARD_STATE_UNAWARE) for n in here])
            if rv != SUCCESS:
                yield from outage(here, describe(rv))
                pause()
                continue
            yield from changes(states)
            while not done():
                wait_ms = int(min(poll_ms, max(0.0, deadline - time.monotonic()) * 1000))
                rv, states = scard.SCardGetStatusChange(h, wait_ms, list(current.items()))
                if u32(rv) == TIMEOUT:
                    continue
                if rv != SUCCESS:
                    yield from outage(list(current), describe(rv))
                    pause()
                    break
                gone = [n for n, s, _ in states if s & (scard.SCARD_STATE_UNAVAILABLE | scard.SCARD_STATE_UNKNOWN)]
                if gone:
                    yield from outage(gone, "reader state unavailable")
                    pause()
                    break
                yield from changes(states)
        finally:
            ctx.release()
