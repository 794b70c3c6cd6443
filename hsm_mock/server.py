"""TCP host-command server (asyncio.Protocol) in front of a `LocalHsm`; the wire format is in `hsm_client.wire`.

Commands run on the event loop thread: each is a few tens of microseconds of CPU, less than handing it
to a worker would cost. A malformed request gets an error reply and the connection stays open; a length
prefix above MAX_PAYLOAD gets an error reply and the connection is closed (the stream cannot be resynced).
Payloads are never logged. Binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable
from itertools import chain

from hsm_client.api import DiversifiedKey, KeyInfo
from hsm_client.errors import OK, FrameError, HsmError, InvalidInput
from hsm_client.wire import (
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
from hsm_mock.commands import LocalHsm

log = logging.getLogger(__name__)
MAX_REPLY = 0xFFFF
HIGH_WATER = 256 * 1024  # stop reading from a client that does not read its replies


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
    """Request payload in, reply payload out; never raises."""

    def __init__(self, hsm: LocalHsm) -> None:
        self.hsm = hsm

    def _error(self, header: bytes, code: str, err: HsmError, command: str) -> bytes:
        if command:  # commands that reached LocalHsm are audited there
            self.hsm.audit.record(command, (), err.code, time.time(), 0.0)
        return encode_reply(header, code, err.code, [str(err)[:200].encode("ascii", "replace")])

    def handle(self, payload: bytes) -> bytes:
        header = payload[:HEADER_SIZE].ljust(HEADER_SIZE, b"\0")
        code = payload[HEADER_SIZE : HEADER_SIZE + 2].decode("latin-1")
        rcode = reply_code(code) if len(payload) >= HEADER_SIZE + 2 else NO_CODE
        try:
            request = parse_request(payload)
        except HsmError as err:
            return self._error(header, rcode, err, "frame")
        try:
            result = getattr(self.hsm, request.spec.method)(*request.args)
            reply = encode_reply(header, rcode, OK, _result_fields(result))
        except HsmError as err:
            return self._error(header, rcode, err, "")
        except Exception:  # a bug, not the caller's fault: answer 99 and keep serving
            log.exception("command %s failed", request.spec.method)
            return encode_reply(header, rcode, "99", ["internal error"])
        if len(reply) > MAX_REPLY:
            return self._error(header, rcode, InvalidInput("reply too large (narrow the query)"), "")
        return reply

    def frame_error(self, err: FrameError) -> bytes:
        return self._error(b"\0" * HEADER_SIZE, NO_CODE, err, "frame")


class _Connection(asyncio.Protocol):
    def __init__(self, handler: CommandHandler, open_transports: set[asyncio.Transport]) -> None:
        self._handler = handler
        self._decoder = FrameDecoder()
        self._transport: asyncio.Transport | None = None
        self._open = open_transports

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._open.add(transport)
        transport.set_write_buffer_limits(high=HIGH_WATER)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._open.discard(self._transport)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        if transport.is_closing():  # after a fatal frame error: ignore whatever still arrives
            return
        handle = self._handler.handle
        payloads = self._decoder.feed(data)
        fatal = self._decoder.error
        out = bytearray()
        for payload in payloads:
            reply = handle(payload) if payload else self._handler.frame_error(FrameError("empty frame"))
            out += len(reply).to_bytes(2) + reply
        if fatal is not None:
            reply = self._handler.frame_error(fatal)
            out += len(reply).to_bytes(2) + reply
        if out:
            transport.write(bytes(out))
        if fatal is not None:
            transport.close()

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()


class HsmServer:
    """A listening server; `close()` also drops the open client connections."""

    def __init__(self, server: asyncio.Server, transports: set[asyncio.Transport]) -> None:
        self.server = server
        self._transports = transports

    @property
    def address(self) -> tuple[str, int]:
        return self.server.sockets[0].getsockname()[:2]

    async def close(self) -> None:
        self.server.close()
        for transport in list(self._transports):
            transport.close()
        await self.server.wait_closed()


async def start_server(hsm: LocalHsm, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> HsmServer:
    """Listen on host:port (port 0 picks a free one: see `HsmServer.address`)."""
    handler = CommandHandler(hsm)
    transports: set[asyncio.Transport] = set()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Connection(handler, transports), host, port, reuse_address=True
    )
    return HsmServer(server, transports)


def serve(
    hsm: LocalHsm,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    on_ready: Callable[[str, int], None] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM; `on_ready(host, port)` is called once listening."""

    async def main() -> None:
        server = await start_server(hsm, host, port)
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
    """The server on its own event loop in a background thread: `with ServerThread(hsm) as s: s.address`."""

    def __init__(self, hsm: LocalHsm, host: str = DEFAULT_HOST, port: int = 0) -> None:
        self._hsm, self._host, self._port = hsm, host, port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hsm-server", daemon=True)
        self._server: HsmServer | None = None
        self.address: tuple[str, int] = (host, port)

    def start(self) -> ServerThread:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(start_server(self._hsm, self._host, self._port), self._loop)
        self._server = fut.result(timeout=10)
        self.address = self._server.address
        return self

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
