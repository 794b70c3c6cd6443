"""Serial card readers (pyserial) and their frame protocol.

Frame, both directions (all lengths big-endian):

    STX 0x02 | LEN (2 bytes) | CODE (1 byte) | DATA (LEN-1 bytes) | BCC (1 byte) | ETX 0x03

LEN counts CODE + DATA; BCC is the XOR of the LEN, CODE and DATA bytes. From host to reader CODE is a
command, from reader to host a status:

| command        | code | data out   | reply data (status 00)             |
|----------------|------|------------|------------------------------------|
| POWER_ON       | 0x30 | -          | ATR                                |
| POWER_OFF      | 0x31 | -          | -                                  |
| APDU           | 0x32 | C-APDU     | R-APDU (data + SW)                 |
| STATUS         | 0x33 | -          | 1 byte: 0 empty, 1 card, 2 powered |

| status | meaning                                   | raised as        |
|--------|-------------------------------------------|------------------|
| 0x00   | ok                                        | -                |
| 0x01   | no card in the reader                     | NoCard           |
| 0x02   | card removed or mute during the command   | CardRemoved      |
| 0x03   | frame error (length, BCC, STX/ETX)        | FrameError       |
| 0x04   | unknown command                           | TransportError   |
| 0x05   | card not powered                          | NoCard           |

Use any pyserial URL: `/dev/ttyUSB0`, or `socket://127.0.0.1:7816` for the simulator's serial reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import serial
from construct import Bytes, ConstructError, Int8ub, Int16ub, Struct, this

from cardlib.errors import CardRemoved, CardTimeout, FrameError, NoCard, TransportError
from cardlib.readers.base import Reader

STX, ETX = 0x02, 0x03
MAX_FRAME_DATA = 4096 + 8


class Cmd(IntEnum):
    POWER_ON = 0x30
    POWER_OFF = 0x31
    APDU = 0x32
    STATUS = 0x33


class Status(IntEnum):
    OK = 0x00
    NO_CARD = 0x01
    CARD_REMOVED = 0x02
    FRAME_ERROR = 0x03
    UNKNOWN_COMMAND = 0x04
    NOT_POWERED = 0x05


FrameBody = Struct("length" / Int16ub, "code" / Int8ub, "data" / Bytes(this.length - 1))


@dataclass(frozen=True)
class Frame:
    code: int
    data: bytes = b""

    def to_bytes(self) -> bytes:
        if len(self.data) > MAX_FRAME_DATA:
            raise FrameError(f"frame data too long: {len(self.data)}")
        body = FrameBody.build({"length": len(self.data) + 1, "code": self.code, "data": self.data})
        return bytes([STX]) + body + bytes([bcc(body), ETX])

    @classmethod
    def from_bytes(cls, raw: bytes) -> Frame:
        """Decode one complete frame; FrameError on any defect."""
        raw = bytes(raw)
        if len(raw) < 6 or raw[0] != STX or raw[-1] != ETX:
            raise FrameError(f"not a frame (STX/ETX or size): {raw[:16].hex()}")
        body, check = raw[1:-2], raw[-2]
        try:
            parsed = FrameBody.parse(body)
        except ConstructError as e:
            raise FrameError(f"frame body truncated: {body[:16].hex()}") from e
        if parsed.length < 1 or 2 + parsed.length != len(body):
            raise FrameError(f"frame length {parsed.length} does not match {len(body) - 2} bytes")
        if bcc(body) != check:
            raise FrameError(f"bad BCC {check:02X}, computed {bcc(body):02X}")
        return cls(parsed.code, bytes(parsed.data))


def bcc(data: bytes) -> int:
    x = 0
    for c in data:
        x ^= c
    return x


def read_frame(read, max_skip: int = 64) -> Frame:
    """Read one frame with `read(n) -> bytes` (b'' on timeout). Skips up to `max_skip` noise bytes before STX."""
    for _ in range(max_skip + 1):
        first = read(1)
        if not first:
            raise CardTimeout("reader did not answer")
        if first[0] == STX:
            break
    else:
        raise FrameError(f"no STX in {max_skip} bytes")
    head = _read_exact(read, 2)
    length = int.from_bytes(head, "big")
    if not 1 <= length <= MAX_FRAME_DATA + 1:
        raise FrameError(f"frame length out of range: {length}")
    rest = _read_exact(read, length + 2)
    return Frame.from_bytes(first + head + rest)


def _read_exact(read, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = read(n - len(buf))
        if not chunk:
            raise CardTimeout(f"frame cut short after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


class SerialReader(Reader):
    """A reader on a serial line (or a pyserial URL such as socket://host:port)."""

    def __init__(self, url: str, *, baudrate: int = 115200, timeout: float = 5.0, name: str | None = None) -> None:
        self.url = url
        self.name = name or url
        self.baudrate = baudrate
        self.timeout = timeout
        self._port: serial.SerialBase | None = None

    def _open(self) -> serial.SerialBase:
        if self._port is None:
            try:
                self._port = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=self.timeout)
            except (serial.SerialException, ValueError) as e:
                raise TransportError(f"cannot open serial reader {self.url}: {e}") from e
        return self._port

    def command(self, code: Cmd, data: bytes = b"") -> bytes:
        """Send one command frame, return the reply data; typed error for a non-OK status."""
        port = self._open()
        try:
            port.write(Frame(code, data).to_bytes())
            reply = read_frame(port.read)
        except serial.SerialException as e:
            self.close()
            raise TransportError(f"serial reader {self.url}: {e}") from e
        status = reply.code
        if status == Status.OK:
            return reply.data
        if status in (Status.NO_CARD, Status.NOT_POWERED):
            raise NoCard(f"no powered card in {self.name}")
        if status == Status.CARD_REMOVED:
            raise CardRemoved(f"card removed from {self.name}")
        if status == Status.FRAME_ERROR:
            raise FrameError(f"{self.name} rejected our frame")
        raise TransportError(f"{self.name} answered status {status:02X} to command {int(code):02X}")

    def connect(self) -> bytes:
        self.atr = self.command(Cmd.POWER_ON)
        return self.atr

    def transmit(self, apdu: bytes) -> bytes:
        return self.command(Cmd.APDU, bytes(apdu))

    def card_present(self) -> bool:
        return self.command(Cmd.STATUS)[:1] in (b"\x01", b"\x02")

    def disconnect(self) -> None:
        if self._port is not None:
            try:
                self.command(Cmd.POWER_OFF)
            except TransportError:
                pass

    def close(self) -> None:
        if self._port is not None:
            try:
                self._port.close()
            finally:
                self._port = None

    def __exit__(self, *exc: object) -> None:
        self.disconnect()
        self.close()
