"""The reader side of the serial frame protocol (cardlib.readers.serial), over TCP.

pyserial reaches it as `socket://127.0.0.1:PORT`, so serial readers are tested without hardware. One card
slot; any number of sequential host connections.

Line faults (`server.line_faults.append(LineFault("stray", after=2))`) disturb the reader's replies the way
a noisy RS-232 line or a confused reader does:

    noise  : bytes before the reply that look like the start of a frame (STX, then a length too large)
    corrupt: the reply with its BCC flipped
    cut    : the first half of the reply, then nothing (the rest is lost)
    stray  : the reply, then a second copy of it nobody asked for
    mute   : no reply at all
"""

from __future__ import annotations

import socket
import socketserver
import threading
from dataclasses import dataclass
from typing import Literal

from cardlib.errors import CardTimeout, FrameError
from cardlib.readers.serial import Cmd, Frame, Status, read_frame

LineFaultKind = Literal["noise", "corrupt", "cut", "stray", "mute"]


@dataclass
class LineFault:
    """One disturbance of the reader's replies: after `after` good replies, `count` times (0 = forever)."""

    kind: LineFaultKind
    after: int = 0
    count: int = 1
    seen: int = 0
    fired: int = 0

    def fires(self) -> bool:
        self.seen += 1
        if self.seen <= self.after or (self.count and self.fired >= self.count):
            return False
        self.fired += 1
        return True

    def apply(self, reply: bytes) -> bytes:
        if self.kind == "noise":
            return b"\x02\xff\xff\x55" + reply
        if self.kind == "corrupt":
            return reply[:-2] + bytes([reply[-2] ^ 0xFF]) + reply[-1:]
        if self.kind == "cut":
            return reply[: len(reply) // 2]
        if self.kind == "stray":
            return reply + reply
        return b""


class _Handler(socketserver.BaseRequestHandler):
    server: SerialReaderServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.server.idle_timeout)

        def read(n: int) -> bytes:
            try:
                return sock.recv(n)
            except (TimeoutError, OSError):
                return b""

        while True:
            try:
                frame = read_frame(read)
            except CardTimeout:
                return  # host went away
            except FrameError:
                sock.sendall(Frame(Status.FRAME_ERROR).to_bytes())
                continue
            sock.sendall(self.server.on_the_line(self.server.answer(frame).to_bytes()))


class SerialReaderServer(socketserver.ThreadingTCPServer):
    """A simulated serial reader holding `card` (or none). `start()` serves in a thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, card=None, host: str = "127.0.0.1", port: int = 0, idle_timeout: float = 30.0) -> None:
        super().__init__((host, port), _Handler)
        self.card = card
        self.powered = False
        self.idle_timeout = idle_timeout
        self.line_faults: list[LineFault] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"socket://{host}:{port}"

    def on_the_line(self, reply: bytes) -> bytes:
        """The reply as it reaches the host: the first line fault that fires changes it."""
        for f in self.line_faults:
            if f.fires():
                return f.apply(reply)
        return reply

    def answer(self, frame: Frame) -> Frame:
        with self._lock:
            card = self.card
            if frame.code == Cmd.STATUS:
                state = 0 if card is None or not getattr(card, "present", True) else (2 if self.powered else 1)
                return Frame(Status.OK, bytes([state]))
            if frame.code == Cmd.POWER_ON:
                if card is None:
                    return Frame(Status.NO_CARD)
                try:
                    atr = card.power_on()
                except ConnectionError:
                    return Frame(Status.NO_CARD)
                self.powered = True
                return Frame(Status.OK, atr)
            if frame.code == Cmd.POWER_OFF:
                if card is not None and self.powered:
                    card.power_off()
                self.powered = False
                return Frame(Status.OK)
            if frame.code == Cmd.APDU:
                if card is None:
                    return Frame(Status.NO_CARD)
                if not self.powered:
                    return Frame(Status.NOT_POWERED)
                try:
                    resp = card.process(frame.data)
                except (ConnectionError, TimeoutError):
                    self.powered = False
                    return Frame(Status.CARD_REMOVED)
                if resp is None:
                    self.powered = False
                    return Frame(Status.CARD_REMOVED)
                return Frame(Status.OK, resp)
            return Frame(Status.UNKNOWN_COMMAND)

    def start(self) -> SerialReaderServer:
        self._thread = threading.Thread(target=self.serve_forever, name="sim-serial-reader", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(5)
