"""Bridge a simulated card to vsmartcard's vpcd driver, so it sits behind the real pcscd.

Wire protocol (both ways): 2-byte big-endian length, then the payload. The card is the TCP client of
vpcd (port 35963 for slot 0, +1 for slot 1). Length-1 frames from vpcd are control bytes: 0 power off,
1 power on, 2 reset, 4 GET ATR; only GET ATR is answered. Longer frames are C-APDUs, answered with the
R-APDU. pcscd asks GET ATR every 400 ms to check presence. `TCP_QUICKACK` is set before every recv():
vpcd sends length and payload in two writes without TCP_NODELAY, so a delayed ACK costs 40 ms per APDU
(design/PCSC.md §3).
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time

log = logging.getLogger(__name__)

CTRL_OFF, CTRL_ON, CTRL_RESET, CTRL_ATR = 0, 1, 2, 4
DEFAULT_PORT = 35963


class VirtualCardLink:
    """Connects one card object (power_on/process/power_off, see cardlib.readers.memory) to a vpcd slot.

    `insert()` connects (retrying while pcscd is not yet listening) and serves in a thread; `remove()`
    closes the socket, which pcscd sees as the card being pulled. A card whose `process` raises
    ConnectionError (a pulled card, see sim.faults) closes the link the same way.
    """

    def __init__(self, card, port: int = DEFAULT_PORT, host: str = "127.0.0.1") -> None:
        self.card = card
        self.host, self.port = host, port
        self.sock: socket.socket | None = None
        self.thread: threading.Thread | None = None
        self.apdus = 0
        self.error: BaseException | None = None

    @property
    def inserted(self) -> bool:
        return self.sock is not None and self.thread is not None and self.thread.is_alive()

    def insert(self, retry: float = 10.0) -> None:
        deadline = time.monotonic() + retry
        while True:
            try:
                sock = socket.create_connection((self.host, self.port), timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if hasattr(self.card, "reinsert"):
            self.card.reinsert()
        self.sock = sock
        self.thread = threading.Thread(target=self._serve, args=(sock,), name=f"vicc:{self.port}", daemon=True)
        self.thread.start()

    def remove(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(5)
        self.thread = None

    def wait(self) -> None:
        """Block until the link ends (vpcd closed it or the card was removed)."""
        if self.thread is not None:
            self.thread.join()

    @staticmethod
    def _recv(s: socket.socket, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("vpcd closed the connection")
            buf += chunk
        return buf

    def _serve(self, s: socket.socket) -> None:
        try:
            while True:
                (n,) = struct.unpack(">H", self._recv(s, 2))
                msg = self._recv(s, n) if n else b""
                if n == 1:
                    ctrl = msg[0]
                    if ctrl == CTRL_ATR:
                        atr = self.card.atr if getattr(self.card, "present", True) else b""
                        s.sendall(struct.pack(">H", len(atr)) + atr)
                    elif ctrl in (CTRL_ON, CTRL_RESET):
                        self.card.power_on()
                    elif ctrl == CTRL_OFF:
                        self.card.power_off()
                    continue
                if n == 0:
                    continue
                try:
                    resp = self.card.process(msg)
                except TimeoutError:
                    continue  # a mute card: vpcd waits until pcscd gives up
                if resp is None:
                    raise ConnectionError("card pulled")
                self.apdus += 1
                s.sendall(struct.pack(">H", len(resp)) + resp)
        except (ConnectionError, OSError) as e:
            self.error = e
        finally:
            try:
                s.close()
            except OSError:
                pass
            if self.sock is s:
                self.sock = None
