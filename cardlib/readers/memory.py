"""In-process transport: APDUs go straight into a simulated card object, no PC/SC, no sockets.

The card side is anything with `power_on() -> bytes` (the ATR), `process(apdu: bytes) -> bytes` and
`power_off()`. It signals a pulled card by raising ConnectionError (or `process` returning None), and a
silent card by raising TimeoutError; this reader turns those into CardRemoved and CardTimeout.
"""

from __future__ import annotations

from typing import Protocol

from cardlib.errors import CardRemoved, CardTimeout, NoCard
from cardlib.readers.base import Reader


class CardSide(Protocol):
    def power_on(self) -> bytes: ...
    def process(self, apdu: bytes) -> bytes | None: ...
    def power_off(self) -> None: ...


class MemoryReader(Reader):
    """A reader whose slot holds an in-process card (or nothing, after `remove()`)."""

    def __init__(self, card: CardSide | None, name: str = "Memory Reader 00") -> None:
        self.card = card
        self.name = name
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
        try:
            resp = self.card.process(bytes(apdu))
        except ConnectionError as e:
            self.connected = False
            raise CardRemoved(f"card removed from {self.name} during a command") from e
        except TimeoutError as e:
            raise CardTimeout(f"card in {self.name} did not answer") from e
        if resp is None:
            self.connected = False
            raise CardRemoved(f"card removed from {self.name} during a command")
        return bytes(resp)

    def disconnect(self) -> None:
        if self.connected and self.card is not None:
            try:
                self.card.power_off()
            except ConnectionError:
                pass
        self.connected = False
