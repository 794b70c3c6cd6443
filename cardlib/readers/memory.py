"""In-process transport: APDUs go straight into a simulated card object, no PC/SC, no sockets.

The card side is anything with `power_on() -> bytes` (the ATR), `process(apdu: bytes) -> bytes` and
`power_off()`. It signals a pulled card by raising ConnectionError (or `process` returning None), and a
silent card by raising TimeoutError; this reader turns those into CardRemoved and CardTimeout. An
in-process card cannot hang the way a real one does (sim's mute card raises TimeoutError at once), so the
per-command `timeout` is checked when the card returns: a later answer is dropped, as a real reader would
have given up on it, and the card must be connected again.
"""

from __future__ import annotations

import time
from typing import Protocol

from cardlib.errors import CardRemoved, CardTimeout, NoCard
from cardlib.readers.base import DEFAULT_TIMEOUT, Reader
from cardlib.trace import describe_apdu


class CardSide(Protocol):
    def power_on(self) -> bytes: ...
    def process(self, apdu: bytes) -> bytes | None: ...
    def power_off(self) -> None: ...


class MemoryReader(Reader):
    """A reader whose slot holds an in-process card (or nothing, after `remove()`)."""

    def __init__(self, card: CardSide | None, name: str = "Memory Reader 00", *,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.card = card
        self.name = name
        self.timeout = timeout
        self.connected = False

    def insert(self, card: CardSide) -> None:
        self.card = card
        self.connected = False

    def remove(self) -> None:
        self.card = None
        self.connected = False

    def connect(self) -> bytes:
        if self.card is None:
            raise NoCard(f"no card in {self.name}")
        try:
            self.atr = bytes(self.card.power_on())
        except ConnectionError as e:
            raise NoCard(f"no card in {self.name}") from e
        self.connected = True
        return self.atr

    def transmit(self, apdu: bytes) -> bytes:
        if self.card is None:
            raise CardRemoved(f"card removed from {self.name}")
        if not self.connected:
            raise NoCard(f"not connected to a card in {self.name}")
        t0 = time.monotonic()
        try:
            resp = self.card.process(bytes(apdu))
        except ConnectionError as e:
            self.connected = False
            raise CardRemoved(f"{describe_apdu(apdu)}: card removed from {self.name} during the command") from e
        except TimeoutError as e:
            self.connected = False
            raise CardTimeout(f"{describe_apdu(apdu)}: the card in {self.name} did not answer") from e
        if resp is None:
            self.connected = False
            raise CardRemoved(f"{describe_apdu(apdu)}: card removed from {self.name} during the command")
        if time.monotonic() - t0 > self.timeout:
            self.connected = False
            raise CardTimeout(f"{describe_apdu(apdu)}: the card in {self.name} answered after the "
                              f"{self.timeout:g} s timeout")
        return bytes(resp)

    def disconnect(self) -> None:
        if self.connected and self.card is not None:
            try:
                self.card.power_off()
            except ConnectionError:
                pass
        self.connected = False
