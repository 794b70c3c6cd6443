"""`HsmClient`: the `HsmApi` over TCP, for the terminal and the settlement service (any HSM speaking the host
protocol of `hsm_client.wire`; the mock HSM's server is one).

- With a `credential` (`hsm_client.auth.Credential`, what `sscard hsm clients issue` writes), each
  connection opens a session and every frame both ways carries a tag (`hsm_client.auth`); a reply whose
  tag does not verify raises AuthenticationFailed. The HSM refuses a client without one (error 40).
- A pool of up to `pool_size` connections, shared by threads; each call borrows one for one request and
  its reply (no pipelining), so `pool_size` is also the number of requests in flight. A connection left
  idle longer than `max_idle` seconds is closed rather than reused (the HSM closes idle ones itself).
- Every call has a deadline (`timeout`, for connecting, sending and receiving). On a timeout or a broken
  connection the connection is dropped; read-only and verification commands are retried on a fresh one
  (`retries` times), key-changing commands (generate, import, delete) are not, because the HSM may have
  carried them out. Then the call raises `HsmUnavailable` (code "98").
- Error replies raise the same exception classes as `LocalHsm` (see `hsm_client.errors`).
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Sequence

from hsm_client.api import DiversifiedKey, KeyInfo, KeyType, Suite
from hsm_client.auth import NONCE_SIZE, Channel, Credential, client_channel, hello
from hsm_client.errors import OK, FrameError, HsmUnavailable, error_for_code
from hsm_client.wire import (
    BY_METHOD,
    DEFAULT_HOST,
    DEFAULT_PORT,
    HEADER_SIZE,
    KEY_INFO_SIZE,
    Value,
    encode_fields,
    frame,
    key_info_from,
    parse_reply,
    reply_code,
)

# Error codes after which the HSM closes the connection.
_CLOSED_AFTER = frozenset({"40", "43", "80"})


class _Connection:
    """One socket (with its session, given a credential); sends a request and reads exactly its reply."""

    def __init__(self, host: str, port: int, timeout: float, credential: Credential | None) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = bytearray()
        self._counter = 0
        self._channel: Channel | None = None
        if credential is not None:
            try:
                nonce = secrets.token_bytes(NONCE_SIZE)
                self.sock.sendall(frame(hello(credential, nonce)))
                self._channel = client_channel(credential, nonce, self._read_frame())
            except BaseException:
                self.sock.close()
                raise
        self.last_used = time.monotonic()

    def close(self) -> None:
        self.sock.close()

    def is_stale(self) -> bool:
        """True if this idle connection has anything to read: the HSM closed it, or it is out of step."""
        try:
            self.sock.setblocking(False)
            try:
                self.sock.recv(1, socket.MSG_PEEK)
                return True
            finally:
                self.sock.setblocking(True)
        except BlockingIOError:
            return False
        except OSError:
            return True

    def request(self, code: str, body: bytes, timeout: float) -> tuple[str, list[bytes]]:
        self._counter = (self._counter + 1) & 0xFFFFFFFF
        header = self._counter.to_bytes(HEADER_SIZE)
        channel = self._channel
        payload = header + code.encode("ascii") + body
        self.sock.settimeout(timeout)
        self.sock.sendall(frame(payload if channel is None else channel.seal(payload)))
        reply = self._read_frame()
        rheader, rcode, error, fields = parse_reply(reply if channel is None else channel.open(reply))
        if rheader != header or rcode != reply_code(code):
            raise FrameError("reply does not match the request")
        self.last_used = time.monotonic()
        return error, fields

    def _read_frame(self) -> bytes:
        buf = self._buf
        while True:
            if len(buf) >= 2:
                n = int.from_bytes(buf[:2])
                if len(buf) >= 2 + n:
                    payload = bytes(buf[2 : 2 + n])
                    del buf[: 2 + n]
                    return payload
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the HSM closed the connection")
            buf += chunk


class HsmClient:
    """`HsmApi` over the host-command protocol, with a thread-safe connection pool."""

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        credential: Credential | None = None,
        pool_size: int = 8,
        timeout: float = 5.0,
        retries: int = 1,
        max_idle: float = 30.0,
    ) -> None:
        self.host, self.port = host, port
        self.credential = credential
        self.timeout = timeout
        self.retries = retries
        self.max_idle = max_idle
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(pool_size)
        self._closed = False

    def close(self) -> None:
        """Close the idle connections; borrowed ones are closed when given back."""
        self._closed = True
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __enter__(self) -> HsmClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- pool ---------------------------------------------------------------------------------------
    def _acquire(self, check_stale: bool) -> _Connection:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return _Connection(self.host, self.port, self.timeout, self.credential)
            if time.monotonic() - conn.last_used <= self.max_idle and not (check_stale and conn.is_stale()):
                return conn
            conn.close()

    def _release(self, conn: _Connection) -> None:
        if self._closed:
            conn.close()
            return
        with self._lock:
            self._idle.append(conn)

    def _call(self, method: str, *args: Value) -> list[bytes]:
        spec = BY_METHOD[method]
        body = encode_fields(args)
        attempts = 1 + (self.retries if spec.idempotent else 0)
        if not self._slots.acquire(timeout=self.timeout):
            raise HsmUnavailable("no free HSM connection in time")
        try:
            failure: Exception | None = None
            for _ in range(attempts):
                conn: _Connection | None = None
                try:
                    conn = self._acquire(check_stale=not spec.idempotent)
                    error, fields = conn.request(spec.code, body, self.timeout)
                except (OSError, FrameError) as exc:  # timeouts are OSErrors too
                    if conn is not None:
                        conn.close()
                    failure = exc
                    continue
                except BaseException:  # refused at the opening, or a reply that does not verify
                    if conn is not None:
                        conn.close()
                    raise
                if error in _CLOSED_AFTER:
                    conn.close()
                else:
                    self._release(conn)
                if error != OK:
                    message = fields[0].decode("ascii", "replace") if fields else None
                    raise error_for_code(error, message)
                return fields
            raise HsmUnavailable(f"HSM at {self.host}:{self.port}: {failure}") from failure
        finally:
            self._slots.release()

    @staticmethod
    def _one(fields: Sequence[bytes]) -> bytes:
        if len(fields) != 1:
            raise FrameError("malformed reply")
        return fields[0]

    @staticmethod
    def _none(fields: Sequence[bytes]) -> None:
        if fields:
            raise FrameError("malformed reply")

    # ---- HsmApi -------------------------------------------------------------------------------------
    def ping(self) -> str:
        return self._one(self._call("ping")).decode("ascii")

    def generate_key(
        self, label: str, key_type: KeyType | str, suite: Suite | str, div_rule: str = ""
    ) -> KeyInfo:
        return key_info_from(self._call("generate_key", label, str(key_type), str(suite), div_rule))

    def import_key(
        self,
        label: str,
        key_type: KeyType | str,
        suite: Suite | str,
        kek: str,
        encrypted_key: bytes,
        kcv: bytes,
        div_rule: str = "",
    ) -> KeyInfo:
        fields = self._call("import_key", label, str(key_type), str(suite), kek, encrypted_key, kcv, div_rule)
        return key_info_from(fields)

    def list_keys(self, prefix: str = "") -> list[KeyInfo]:
        fields = self._call("list_keys", prefix)
        if not fields or not fields[0].isdigit() or len(fields) != 1 + KEY_INFO_SIZE * int(fields[0]):
            raise FrameError("malformed reply")
        return [key_info_from(fields[i : i + KEY_INFO_SIZE]) for i in range(1, len(fields), KEY_INFO_SIZE)]

    def delete_key(self, ref: str) -> int:
        count = self._one(self._call("delete_key", ref))
        if not count.isdigit():
            raise FrameError("malformed reply")
        return int(count)

    def diversify(self, mk: str, card_id: bytes, kek: str = "") -> DiversifiedKey:
        fields = self._call("diversify", mk, card_id, kek)
        if len(fields) != 2:
            raise FrameError("malformed reply")
        return DiversifiedKey(fields[0], fields[1] or None)

    def ext_auth_cryptogram(self, mk: str, card_id: bytes, challenge: bytes) -> bytes:
        return self._one(self._call("ext_auth_cryptogram", mk, card_id, challenge))

    def verify_ext_auth(self, mk: str, card_id: bytes, challenge: bytes, cryptogram: bytes) -> None:
        self._none(self._call("verify_ext_auth", mk, card_id, challenge, cryptogram))

    def verify_int_auth(self, mk: str, card_id: bytes, terminal_random: bytes, response: bytes) -> None:
        self._none(self._call("verify_int_auth", mk, card_id, terminal_random, response))

    def session_mac(
        self, mk: str, card_id: bytes, challenge: bytes, message: bytes, mac_len: int = 4
    ) -> bytes:
        return self._one(self._call("session_mac", mk, card_id, challenge, message, mac_len))

    def verify_session_mac(
        self, mk: str, card_id: bytes, challenge: bytes, message: bytes, mac: bytes
    ) -> None:
        self._none(self._call("verify_session_mac", mk, card_id, challenge, message, mac))

    def generate_mac(self, key: str, data: bytes, iv: bytes = b"", mac_len: int = 4) -> bytes:
        return self._one(self._call("generate_mac", key, data, iv, mac_len))

    def verify_mac(self, key: str, data: bytes, mac: bytes, iv: bytes = b"") -> None:
        self._none(self._call("verify_mac", key, data, mac, iv))

    def encrypt_pin(self, pik: str, pin: str, pan: str) -> bytes:
        return self._one(self._call("encrypt_pin", pik, pin, pan))

    def pin_reference(self, pik: str, pvk: str, pin_block: bytes, pan: str) -> bytes:
        return self._one(self._call("pin_reference", pik, pvk, pin_block, pan))

    def verify_pin(self, pik: str, pvk: str, pin_block: bytes, pan: str, reference: bytes) -> None:
        self._none(self._call("verify_pin", pik, pvk, pin_block, pan, reference))

    def translate_pin(self, src_pik: str, dst_pik: str, pin_block: bytes, pan: str) -> bytes:
        return self._one(self._call("translate_pin", src_pik, dst_pik, pin_block, pan))
