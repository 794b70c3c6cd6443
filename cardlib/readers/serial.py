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

**A noisy line.** The protocol has no sequence numbers, so the host keeps host and reader in step itself:
it empties its input before each command (a stray or late frame is dropped, never taken for the next
answer); a frame whose bytes stop for `frame_gap` seconds is cut; after any framing error it waits for the
line to fall quiet and empties the input again. A command whose answer was garbled or cut is sent once
more if running it twice changes nothing (POWER_ON, POWER_OFF, STATUS; SELECT, READ BINARY, READ RECORD,
GET DATA, GET CHALLENGE), and so is one the reader refused as a bad frame (it did not run it); any other
command (VERIFY, a protected write...) fails with FrameError saying the card may have run it. The whole
exchange, retry included, ends within `timeout` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import serial
from construct import Bytes, ConstructError, Int8ub, Int16ub, Struct, this

from cardlib.errors import CardRemoved, CardTimeout, FrameError, NoCard, TransportError
from cardlib.readers.base import DEFAULT_TIMEOUT, Reader
from cardlib.trace import describe_apdu

STX, ETX = 0x02, 0x03
MAX_FRAME_DATA = 4096 + 8
#: Silence inside a frame (seconds) that means the rest of it was lost: a reader sends a frame in one burst.
FRAME_GAP = 0.1
#: APDUs that may run twice when their answer was lost: a second run changes nothing the first did not.
REPEATABLE_INS = frozenset({0xA4, 0xB0, 0xB2, 0xCA, 0x84})


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


def read_frame(read: Callable[[int], bytes], max_skip: int = 64, on_stx: Callable[[], None] | None = None) -> Frame:
    """Read one frame with `read(n) -> bytes` (b'' on timeout). Skips up to `max_skip` noise bytes before
    STX; `on_stx` is called when the frame starts. CardTimeout if nothing came, FrameError if it was cut."""
    for _ in range(max_skip + 1):
        first = read(1)
        if not first:
            raise CardTimeout("reader did not answer")
        if first[0] == STX:
            break
    else:
        raise FrameError(f"no STX in {max_skip} bytes")
    if on_stx is not None:
        on_stx()
    head = _read_exact(read, 2)
    length = int.from_bytes(head, "big")
    if not 1 <= length <= MAX_FRAME_DATA + 1:
        raise FrameError(f"frame length out of range: {length}")
    rest = _read_exact(read, length + 2)
    return Frame.from_bytes(first + head + rest)


def _read_exact(read: Callable[[int], bytes], n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = read(n - len(buf))
        if not chunk:
            raise FrameError(f"frame cut short after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def _repeatable(code: int, data: bytes) -> bool:
    return code != Cmd.APDU or (len(data) >= 2 and data[1] in REPEATABLE_INS)


def _name(code: int, data: bytes) -> str:
    return describe_apdu(data) if code == Cmd.APDU else Cmd(code).name


class SerialReader(Reader):
    """A reader on a serial line (or a pyserial URL such as socket://host:port)."""

    def __init__(self, url: str, *, baudrate: int = 115200, timeout: float = DEFAULT_TIMEOUT,
                 name: str | None = None, frame_gap: float = FRAME_GAP) -> None:
        self.url = url
        self.name = name or url
        self.baudrate = baudrate
        self.timeout = timeout
        self.frame_gap = frame_gap
        self._port: serial.SerialBase | None = None

    def _open(self) -> serial.SerialBase:
        if self._port is None:
            try:
                self._port = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=self.timeout,
                                                   write_timeout=self.timeout)
            except (serial.SerialException, ValueError) as e:
                raise TransportError(f"cannot open serial reader {self.url}: {e}") from e
        return self._port

    def _wait(self, port: serial.SerialBase, seconds: float) -> None:
        seconds = max(0.0, seconds)
        if port.timeout != seconds:
            port.timeout = seconds

    def _exchange(self, port: serial.SerialBase, request: bytes, deadline: float) -> Frame:
        """One request and its reply frame: before STX wait until the deadline, inside the frame `frame_gap`."""
        in_frame = False

        def started() -> None:
            nonlocal in_frame
            in_frame = True

        def read(n: int) -> bytes:
            left = deadline - time.monotonic()
            if left <= 0:
                return b""
            self._wait(port, min(left, self.frame_gap) if in_frame else left)
            return port.read(n)

        port.reset_input_buffer()  # a stray or late frame must not pass for this command's answer
        port.write(request)
        return read_frame(read, on_stx=started)

    def _resync(self, port: serial.SerialBase, deadline: float) -> None:
        """After a framing error: let the rest of whatever was on its way arrive, then drop it."""
        while time.monotonic() < deadline:
            self._wait(port, min(self.frame_gap, deadline - time.monotonic()))
            if not port.read(4096):
                break
        port.reset_input_buffer()

    def command(self, code: Cmd, data: bytes = b"") -> bytes:
        """Send one command frame, return the reply data; typed error for a non-OK status."""
        port = self._open()
        deadline = time.monotonic() + self.timeout
        request = Frame(code, data).to_bytes()
        try:
            for attempt in (1, 2):
                try:
                    reply = self._exchange(port, request, deadline)
                except CardTimeout as e:
                    raise CardTimeout(f"{_name(code, data)}: {self.name} did not answer within {self.timeout:g} s"
                                      ) from e
                except FrameError as e:
                    self._resync(port, deadline)
                    if attempt == 1 and _repeatable(code, data) and time.monotonic() < deadline:
                        continue
                    raise FrameError(f"{_name(code, data)}: the answer from {self.name} was garbled ({e})"
                                     + ("" if _repeatable(code, data) else "; the card may have run the command")
                                     ) from e
                if reply.code == Status.FRAME_ERROR and attempt == 1:
                    continue  # the reader did not take our frame, so it ran nothing: send it again
                break
        except serial.SerialException as e:
            self.close()
            raise TransportError(f"serial reader {self.url}: {e}") from e
        status = reply.code
        if status == Status.OK:
            return reply.data
        if status in (Status.NO_CARD, Status.NOT_POWERED):
            raise NoCard(f"no powered card in {self.name}")
        if status == Status.CARD_REMOVED:
            raise CardRemoved(f"{_name(code, data)}: card removed from {self.name}")
        if status == Status.FRAME_ERROR:
            raise FrameError(f"{_name(code, data)}: {self.name} rejected our frame twice")
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
