"""TCP host-command server (asyncio.Protocol) in front of a `LocalHsm`: the wire format is `hsm_client.wire`,
client authentication `hsm_client.auth`, who may do what `hsm_mock.access`.

- A connection first opens a session with a client credential; a first frame that opens none, an unknown
  client, or later a frame whose tag does not verify (replayed, reordered, altered, another client's key)
  is answered with error 40 and the connection is closed. The client is counted against its connection
  cap once its first tagged frame verifies.
- Each command is checked against the client's roles (41) and its rate limits (42) before it runs;
  refusals are audited under the client's id, and a rate-limit refusal raises an alarm (`access.Gate`).
- At most `max_connections` connections in all and `max_connections_per_client` per client: one more is
  answered 43 and closed. A sweep, every quarter of the shorter timeout, closes a connection that holds
  part of a frame for `frame_timeout` (error 80 first), is not authenticated after `frame_timeout` (40 first),
  or has sent nothing for `idle_timeout` (silently: a pooled client sees the close and reconnects).
- Commands run on the event loop thread: each is a few tens of microseconds of CPU, less than handing it
  to a worker would cost. A malformed request gets an error reply and the connection stays open; a length
  prefix above MAX_PAYLOAD gets an error reply and the connection is closed (the stream cannot be resynced).

Payloads are never logged. Binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import threading
import time
from collections.abc import Callable
from itertools import chain

from hsm_client.api import DiversifiedKey, KeyInfo
from hsm_client.auth import HELLO, HELLO_REPLY, NONCE_SIZE, TAG_SIZE, Channel, parse_hello, server_channel
from hsm_client.errors import (
    OK,
    AuthenticationFailed,
    ConnectionLimit,
    FrameError,
    HsmError,
    InvalidInput,
)
from hsm_client.wire import (
    COMMANDS,
    DEFAULT_HOST,
    DEFAULT_PORT,
    HEADER_SIZE,
    NO_CODE,
    FrameDecoder,
    Value,
    encode_reply,
    key_info_fields,
    parse_request,
    reply_code,
)
from hsm_mock.access import AccessPolicy, Client, ClientState, Gate, ServerLimits
from hsm_mock.audit import CLIENT
from hsm_mock.commands import LocalHsm

log = logging.getLogger(__name__)
MAX_REPLY = 0xFFFF - TAG_SIZE
HIGH_WATER = 256 * 1024  # stop reading from a client that does not read its replies
NO_HEADER = bytes(HEADER_SIZE)
Clock = Callable[[], float]


def _result_fields(result: object) -> list[Value]:
    if result is None:
        return []
    if isinstance(result, bytes | str | int):
        return [result]
    if isinstance(result, KeyInfo):
        return key_info_fields(result)
    if isinstance(result, DiversifiedKey):
        return [result.kcv, result.under_kek or b""]
    if isinstance(result, list):
        return [len(result), *chain.from_iterable(key_info_fields(i) for i in result)]
    raise TypeError(f"no wire form for {type(result).__name__}")


class CommandHandler:
    """Request payload in, reply payload out; never raises. With a `gate`, `handle(payload, client)` checks
    the client's role and rate limits first."""

    def __init__(self, hsm: LocalHsm, gate: Gate | None = None) -> None:
        self.hsm = hsm
        self.gate = gate

    def refuse(self, header: bytes, code: str, err: HsmError, command: str, labels: tuple[str, ...] = (),
               client: str | None = None) -> bytes:
        """An error reply, audited as `command` (commands that reached LocalHsm are audited there) under
        `client` (default: the client whose frames are being handled)."""
        if command:
            self.hsm.audit.record(command, labels, err.code, time.time(), 0.0, client)
        return encode_reply(header, code, err.code, [str(err)[:200].encode("ascii", "replace")])

    def handle(self, payload: bytes, client: ClientState | None = None) -> bytes:
        header = payload[:HEADER_SIZE].ljust(HEADER_SIZE, b"\0")
        code = payload[HEADER_SIZE : HEADER_SIZE + 2].decode("latin-1")
        rcode = reply_code(code) if len(payload) >= HEADER_SIZE + 2 else NO_CODE
        if client is not None and (spec := COMMANDS.get(code)) is not None:
            try:
                self.gate.authorise(client, spec.method)  # type: ignore[union-attr]
            except HsmError as err:
                return self.refuse(header, rcode, err, spec.method)
        try:
            request = parse_request(payload)
        except HsmError as err:
            return self.refuse(header, rcode, err, "frame")
        try:
            result = getattr(self.hsm, request.spec.method)(*request.args)
            reply = encode_reply(header, rcode, OK, _result_fields(result))
        except HsmError as err:
            return self.refuse(header, rcode, err, "")
        except Exception:  # a bug, not the caller's fault: answer 99 and keep serving
            log.exception("command %s failed", request.spec.method)
            return encode_reply(header, rcode, "99", ["internal error"])
        if len(reply) > MAX_REPLY:
            return self.refuse(header, rcode, InvalidInput("reply too large (narrow the query)"), "")
        return reply


class _Shared:
    """What the connections of one server share: the handler, the access policy at work, the clock."""

    def __init__(self, hsm: LocalHsm, access: AccessPolicy | None, clock: Clock) -> None:
        if access is not None and not all(c.key for c in access.clients.values()):
            raise ValueError("the client list was loaded without the LMK: its clients have no keys")
        self.access = access
        self.limits = access.limits if access is not None else ServerLimits()
        self.gate = Gate(access, hsm.audit, clock) if access is not None else None
        self.handler = CommandHandler(hsm, self.gate)
        self.clock = clock
        self.connections: set[_Connection] = set()

    def sweep(self) -> int:
        """Close the connections past a timeout; returns how many."""
        now, lim, n = self.clock(), self.limits, 0
        for conn in list(self.connections):
            if conn.closing_since is not None:  # an error reply the client does not read
                if now - conn.closing_since > lim.frame_timeout:
                    conn.abort()
                    n += 1
            elif conn.partial_since is not None and now - conn.partial_since > lim.frame_timeout:
                conn.finish(FrameError(f"frame not finished within {lim.frame_timeout:g} s (frame_timeout)"), "drop")
                n += 1
            elif self.access is not None and conn.state is None and now - conn.opened > lim.frame_timeout:
                conn.finish(AuthenticationFailed(f"not authenticated within {lim.frame_timeout:g} s (frame_timeout)"),
                            "drop")
                n += 1
            elif now - conn.last > lim.idle_timeout:
                self.handler.hsm.audit.record("drop", ("idle",), OK, time.time(), 0.0, conn.client_id)
                conn.abort()
                n += 1
        return n


class _Connection(asyncio.Protocol):
    def __init__(self, shared: _Shared) -> None:
        self._s = shared
        self._decoder = FrameDecoder()
        self._transport: asyncio.Transport | None = None
        self._channel: Channel | None = None
        self._client: Client | None = None  # claimed at the opening
        self.state: ClientState | None = None  # set when its first tagged frame verifies
        self.opened = self.last = shared.clock()
        self.partial_since: float | None = None  # when the buffered part of a frame began
        self.closing_since: float | None = None

    @property
    def client_id(self) -> str:
        return self.state.client.id if self.state is not None else ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        s = self._s
        if len(s.connections) >= s.limits.max_connections:
            self.finish(ConnectionLimit(f"the HSM has {len(s.connections)} connections open (max_connections)"),
                        "connect")
            return
        s.connections.add(self)
        transport.set_write_buffer_limits(high=HIGH_WATER)

    def connection_lost(self, exc: Exception | None) -> None:
        self._s.connections.discard(self)
        if self.state is not None:
            self._s.gate.leave(self.state)  # type: ignore[union-attr]
            self.state = None

    def finish(self, err: HsmError, command: str, header: bytes = NO_HEADER, code: str = NO_CODE) -> None:
        """Answer `err` (tagged within a session), audited as `command`, and close."""
        labels = (self._client.id,) if self._client is not None else ()
        reply = self._s.handler.refuse(header, code, err, command, labels, self.client_id)
        self._send(reply if self._channel is None else self._channel.seal(reply), close=True)

    def abort(self) -> None:
        assert self._transport is not None
        self._transport.abort()

    def _send(self, data: bytes, close: bool = False) -> None:
        transport = self._transport
        assert transport is not None
        transport.write(len(data).to_bytes(2) + data)
        if close:
            self.closing_since = self._s.clock()
            transport.close()

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        if transport.is_closing():  # after a refusal: ignore whatever still arrives
            return
        now = self._s.clock()
        self.last = now
        decoder = self._decoder
        payloads = decoder.feed(data)
        if not decoder.pending:
            self.partial_since = None
        elif payloads or self.partial_since is None:
            self.partial_since = now
        token = CLIENT.set(self.client_id)
        try:
            out = bytearray()
            for payload in payloads:
                reply, keep = self._reply(payload)
                out += len(reply).to_bytes(2) + reply
                if not keep:
                    transport.write(bytes(out))
                    self.closing_since = now
                    transport.close()
                    return
            if out:
                transport.write(bytes(out))
            if decoder.error is not None:
                self.finish(decoder.error, "frame")
        finally:
            CLIENT.reset(token)

    def _reply(self, payload: bytes) -> tuple[bytes, bool]:
        """The reply to one frame, and whether the connection stays open."""
        s = self._s
        channel = self._channel
        if channel is None:
            if s.access is None:  # no authentication: only a benchmark's baseline runs a server like this
                return s.handler.handle(payload), True
            return self._open(payload)
        try:
            body = channel.open(payload)
        except AuthenticationFailed as err:
            header, rcode = _echo(payload[:-TAG_SIZE])
            return channel.seal(s.handler.refuse(header, rcode, err, "auth", (self._client.id,))), False  # type: ignore[union-attr]
        if self.state is None:  # its first tagged frame: the client is who it claimed to be
            st = s.gate.state(self._client)  # type: ignore[union-attr,arg-type]
            try:
                s.gate.admit(st)  # type: ignore[union-attr]
            except ConnectionLimit as err:
                header, rcode = _echo(body)
                return channel.seal(s.handler.refuse(header, rcode, err, "connect", (st.client.id,))), False
            self.state = st
            CLIENT.set(st.client.id)
        return channel.seal(s.handler.handle(body, self.state)), True

    def _open(self, payload: bytes) -> tuple[bytes, bool]:
        """The answer to a connection's first frame: a session for a listed client, or error 40."""
        s = self._s
        header, rcode = _echo(payload)
        claimed = ""
        try:
            claimed, nonce = parse_hello(payload)
            client = s.access.clients.get(claimed)  # type: ignore[union-attr]
            if client is None:
                raise AuthenticationFailed(f"unknown client {claimed}")
        except AuthenticationFailed as err:
            return s.handler.refuse(header, rcode, err, "auth", (claimed,) if claimed else ()), False
        self._client = client
        self._channel, reply = server_channel(client.key, header, nonce, secrets.token_bytes(NONCE_SIZE))
        return reply, True

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()


def _echo(payload: bytes) -> tuple[bytes, str]:
    """The header and response code to answer a payload with."""
    code = payload[HEADER_SIZE : HEADER_SIZE + 2].decode("latin-1")
    rcode = HELLO_REPLY if code == HELLO else reply_code(code) if len(payload) >= HEADER_SIZE + 2 else NO_CODE
    return payload[:HEADER_SIZE].ljust(HEADER_SIZE, b"\0"), rcode


class HsmServer:
    """A listening server; `close()` also drops the open client connections."""

    def __init__(self, server: asyncio.Server, shared: _Shared) -> None:
        self.server = server
        self._shared = shared
        loop = asyncio.get_running_loop()
        lim = shared.limits
        self._tick = max(0.05, min(lim.frame_timeout, lim.idle_timeout) / 4)
        self._timer = loop.call_later(self._tick, self._periodic)

    @property
    def address(self) -> tuple[str, int]:
        return self.server.sockets[0].getsockname()[:2]

    def sweep(self) -> int:
        """Close the connections past a timeout now (the server also does it every quarter timeout)."""
        return self._shared.sweep()

    def _periodic(self) -> None:
        self._shared.sweep()
        self._timer = asyncio.get_running_loop().call_later(self._tick, self._periodic)

    async def close(self) -> None:
        self._timer.cancel()
        self.server.close()
        for conn in list(self._shared.connections):
            conn.abort()
        await self.server.wait_closed()


async def start_server(hsm: LocalHsm, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                       access: AccessPolicy | None, clock: Clock = time.monotonic) -> HsmServer:
    """Listen on host:port (port 0 picks a free one: see `HsmServer.address`) for the clients of `access`.
    `access=None` serves without authentication or roles: only a benchmark's baseline does that."""
    shared = _Shared(hsm, access, clock)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(shared), host, port, reuse_address=True)
    return HsmServer(server, shared)


def serve(
    hsm: LocalHsm,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    on_ready: Callable[[str, int], None] | None = None,
    *,
    access: AccessPolicy | None,
) -> None:
    """Serve until SIGINT or SIGTERM; `on_ready(host, port)` is called once listening."""

    async def main() -> None:
        server = await start_server(hsm, host, port, access=access)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if on_ready is not None:
            on_ready(*server.address)
        try:
            await stop.wait()
        finally:
            await server.close()

    asyncio.run(main())


class ServerThread:
    """The server on its own event loop in a background thread:
    `with ServerThread(hsm, access=policy) as s: s.address`."""

    def __init__(self, hsm: LocalHsm, host: str = DEFAULT_HOST, port: int = 0, *, access: AccessPolicy | None,
                 clock: Clock = time.monotonic) -> None:
        self._hsm, self._host, self._port = hsm, host, port
        self._access, self._clock = access, clock
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hsm-server", daemon=True)
        self._server: HsmServer | None = None
        self.address: tuple[str, int] = (host, port)

    def start(self) -> ServerThread:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(
            start_server(self._hsm, self._host, self._port, access=self._access, clock=self._clock), self._loop)
        self._server = fut.result(timeout=10)
        self.address = self._server.address
        return self

    def sweep(self) -> int:
        """Run the timeout sweep on the server's loop now; returns how many connections it closed."""
        server = self._server
        assert server is not None

        async def run() -> int:
            return server.sweep()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)

    def stop(self) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.close(), self._loop).result(timeout=10)
            self._server = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
