"""PC/SC readers through pyscard's `smartcard.scard` layer (the thin wrapper over libpcsclite).

The low-level layer is used on purpose: it gives the exact PC/SC return codes (so a pulled card, whether
reported as 0x80100016 "transaction failed" or 0x80100069 "card removed", becomes one CardRemoved) and it
keeps cardlib's overhead per APDU to a list conversion.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from smartcard import scard

from cardlib.errors import (
    CardRemoved,
    CardTimeout,
    NoCard,
    ReaderNotFound,
    ServiceUnavailable,
    TransportError,
)
from cardlib.readers.base import Reader

#: PC/SC return codes that mean "the card is gone" (observed with pcscd + vpcd, see design/PCSC.md §6)
REMOVED_CODES = {
    0x80100016,  # SCARD_E_NOT_TRANSACTED: first error after the card died
    0x80100069,  # SCARD_W_REMOVED_CARD
    0x80100068,  # SCARD_W_RESET_CARD
    0x80100067,  # SCARD_W_UNPOWERED_CARD
    0x80100066,  # SCARD_W_UNRESPONSIVE_CARD
    0x8010000C,  # SCARD_E_NO_SMARTCARD (during a session)
}
SERVICE_CODES = {0x8010001D, 0x8010001E, 0x80100003}  # no service, service stopped, invalid handle
READER_CODES = {0x80100009, 0x80100017, 0x8010002E}  # unknown reader, reader unavailable, no readers
NO_CARD_CODES = {0x8010000C, 0x80100069, 0x80100066, 0x80100067}


def _u32(code: int) -> int:
    return code & 0xFFFFFFFF


def _message(code: int) -> str:
    try:
        return f"{scard.SCardGetErrorMessage(code)} (0x{_u32(code):08X})"
    except Exception:  # pragma: no cover - pyscard always has a message
        return f"PC/SC error 0x{_u32(code):08X}"


class _Context:
    """A PC/SC context, established lazily; re-established once when pcscd was restarted."""

    def __init__(self) -> None:
        self.handle: int | None = None

    def get(self) -> int:
        if self.handle is None:
            rv, h = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            if rv != scard.SCARD_S_SUCCESS:
                raise ServiceUnavailable(f"PC/SC service not available: {_message(rv)}")
            self.handle = h
        return self.handle

    def release(self) -> None:
        if self.handle is not None:
            scard.SCardReleaseContext(self.handle)
            self.handle = None


def list_readers() -> list[str]:
    """Names of the PC/SC readers. Raises ServiceUnavailable when pcscd is not running."""
    ctx = _Context()
    try:
        rv, names = scard.SCardListReaders(ctx.get(), [])
        if _u32(rv) == 0x8010002E:  # SCARD_E_NO_READERS_AVAILABLE
            return []
        if rv != scard.SCARD_S_SUCCESS:
            raise ServiceUnavailable(f"cannot list readers: {_message(rv)}")
        return list(names)
    finally:
        ctx.release()


@dataclass(frozen=True)
class SlotState:
    reader: str
    present: bool
    atr: bytes


def reader_states(names: list[str] | None = None) -> list[SlotState]:
    """Whether each reader has a card in it, and its ATR (one SCardGetStatusChange call, no waiting)."""
    ctx = _Context()
    try:
        names = names if names is not None else list_readers()
        if not names:
            return []
        rv, states = scard.SCardGetStatusChange(ctx.get(), 0, [(n, scard.SCARD_STATE_UNAWARE) for n in names])
        if rv != scard.SCARD_S_SUCCESS and _u32(rv) != 0x8010000A:  # timeout is fine
            raise TransportError(f"status query failed: {_message(rv)}")
        return [SlotState(n, bool(s & scard.SCARD_STATE_PRESENT), bytes(a)) for n, s, a in states]
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


class PcscReader(Reader):
    """One PC/SC reader slot."""

    def __init__(self, name: str, share: int = scard.SCARD_SHARE_SHARED) -> None:
        self.name = name
        self.share = share
        self._ctx = _Context()
        self._card: int | None = None
        self._pci = scard.SCARD_PCI_T1
        self.protocol = 0

    def connect(self) -> bytes:
        self.disconnect()
        ctx = self._ctx.get()
        protocols = scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        rv, card, proto = scard.SCardConnect(ctx, self.name, self.share, protocols)
        if rv != scard.SCARD_S_SUCCESS:
            code = _u32(rv)
            if code in SERVICE_CODES:
                self._ctx.release()
                raise ServiceUnavailable(f"PC/SC service not available: {_message(rv)}")
            if code in READER_CODES:
                raise ReaderNotFound(f"reader {self.name!r}: {_message(rv)}")
            if code in NO_CARD_CODES:
                raise NoCard(f"no card in {self.name}: {_message(rv)}")
            raise TransportError(f"cannot connect to {self.name}: {_message(rv)}")
        self._card, self.protocol = card, proto
        self._pci = scard.SCARD_PCI_T0 if proto == scard.SCARD_PROTOCOL_T0 else scard.SCARD_PCI_T1
        rv, _reader, _state, _proto, atr = scard.SCardStatus(card)
        self.atr = bytes(atr) if rv == scard.SCARD_S_SUCCESS else b""
        return self.atr

    def _raise(self, rv: int, what: str) -> None:
        code = _u32(rv)
        if code in REMOVED_CODES:
            raise CardRemoved(f"card removed from {self.name} ({what}): {_message(rv)}", code)
        if code in SERVICE_CODES:
            raise ServiceUnavailable(f"PC/SC service went away ({what}): {_message(rv)}")
        if code == 0x8010000A:  # SCARD_E_TIMEOUT
            raise CardTimeout(f"{self.name} timed out ({what})")
        raise TransportError(f"{self.name}: {what} failed: {_message(rv)}")

    def transmit(self, apdu: bytes) -> bytes:
        if self._card is None:
            raise NoCard(f"not connected to a card in {self.name}")
        rv, resp = scard.SCardTransmit(self._card, self._pci, list(apdu))
        if rv != scard.SCARD_S_SUCCESS:
            self._raise(rv, "transmit")
        if not resp:
            # vpcd reports a card that went away mid-command as an empty answer with success.
            raise CardRemoved(f"card in {self.name} answered nothing: removed during the command")
        return bytes(resp)

    def reconnect(self) -> bytes:
        if self._card is None:
            return self.connect()
        rv, proto = scard.SCardReconnect(
            self._card, self.share, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1, scard.SCARD_RESET_CARD
        )
        if rv != scard.SCARD_S_SUCCESS:
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
            if _u32(rv) == 0x8010000A:
                return False
            if rv != scard.SCARD_S_SUCCESS:
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


def watch(names: list[str], timeout: float, poll_ms: int = 500) -> Iterator[tuple[str, str, bytes]]:
    """Yield ("inserted"|"removed", reader, atr) events for `names` until `timeout` seconds pass."""
    ctx = _Context()
    try:
        h = ctx.get()
        rv, states = scard.SCardGetStatusChange(h, 0, [(n, scard.SCARD_STATE_UNAWARE) for n in names])
        current = {n: s & ~scard.SCARD_STATE_CHANGED for n, s, _ in states}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            wait_ms = int(min(poll_ms, max(0.0, deadline - time.monotonic()) * 1000))
            rv, states = scard.SCardGetStatusChange(h, wait_ms, list(current.items()))
            if _u32(rv) == 0x8010000A:
                continue
            if rv != scard.SCARD_S_SUCCESS:
                raise TransportError(f"watching readers failed: {_message(rv)}")
            for n, s, atr in states:
                was = bool(current[n] & scard.SCARD_STATE_PRESENT)
                now = bool(s & scard.SCARD_STATE_PRESENT)
                if now != was:
                    yield ("inserted" if now else "removed", n, bytes(atr))
                current[n] = s & ~scard.SCARD_STATE_CHANGED
    finally:
        ctx.release()
