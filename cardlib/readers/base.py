"""What every reader transport offers: connect (ATR), transmit raw APDUs, disconnect."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType

#: Seconds a reader waits for the card's answer to one command before it raises CardTimeout. A social
#: security card answers a READ RECORD in milliseconds and an authentication in well under a second.
DEFAULT_TIMEOUT = 5.0


class Reader(ABC):
    """A card reader slot. Use as a context manager: `with reader: reader.transmit(...)`.

    `timeout` bounds every command: no transport waits longer than that for one answer.
    """

    name: str = ""
    atr: bytes = b""
    timeout: float = DEFAULT_TIMEOUT

    @abstractmethod
    def connect(self) -> bytes:
        """Power the card (or attach to it) and return its ATR. Raises NoCard, ReaderNotFound."""

    @abstractmethod
    def transmit(self, apdu: bytes) -> bytes:
        """Send one raw C-APDU and return the raw R-APDU (data + SW). Raises CardRemoved, CardTimeout."""

    @abstractmethod
    def disconnect(self) -> None:
        """Release the card. Safe to call twice and after the card was removed."""

    def reconnect(self) -> bytes:
        """Reset the card and return the ATR again (default: disconnect + connect)."""
        self.disconnect()
        return self.connect()

    def __enter__(self) -> Reader:
        self.connect()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.disconnect()


def historical_bytes(atr: bytes) -> bytes:
    """The ATR's historical bytes (T0's low nibble says how many), per ISO 7816-3; b'' if malformed."""
    if len(atr) < 2:
        return b""
    t0 = atr[1]
    k = t0 & 0x0F
    i = 2
    y = t0 >> 4
    while True:
        i += bin(y).count("1")
        if i > len(atr):
            return b""
        if not y & 0x8:
            break
        td = atr[i - 1]
        y = td >> 4
    return atr[i : i + k] if i + k <= len(atr) else b""
