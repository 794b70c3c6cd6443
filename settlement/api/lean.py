"""The lean path for the money-moving requests a region's terminals make all day (visit registration, settlement,
refund, pension collection): a pure-ASGI layer inside the app's middleware that answers them without FastAPI's
routing, dependency solving and response re-validation, which cost several times what the engine does per
settlement (bench/README.md, "Settlement service").

For these routes it finds the terminal by its key and checks the declared length before reading the body
(a request without a known key, or declaring a body too large, goes unread to the FastAPI app and its
middleware, which refuse it), then reads the body (at most `max_body`), validates the body with the route's own
request model (pydantic, in Rust), awaits the route's own endpoint function (so the scoping, the engine call and
the store's batching are the FastAPI route's, not a copy) and sends the answer serialised once. Anything it does
not handle as the happy path or a typed refusal (no or unknown key, an invalid body, a body too large) goes,
with its body, to the FastAPI app, which answers exactly as it would have: the API and its OpenAPI schema are
unchanged. Other requests, and those carrying one of `route_headers` (which the route reads itself, such as
X-Card-No), pass straight through. The service's gate (settlement/api/guard.py) is in front of it: a body
without a known key, or over the service's limit, never reaches it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from settlement.api.auth import KeyRing, TerminalKey
from settlement.api.guard import replay
from settlement.errors import SettlementError

Endpoint = Callable[[Any, TerminalKey], Awaitable[BaseModel]]
ErrorAnswer = Callable[[SettlementError], tuple[int, bytes, list[tuple[bytes, bytes]]]]
_JSON = [(b"content-type", b"application/json")]


class LeanPath:
    """ASGI middleware: `routes` maps a POST path to (request model, endpoint); `error` renders a refusal as the
    app's exception handler does (status, body, extra headers)."""

    def __init__(self, app: ASGIApp, *, routes: dict[str, tuple[type[BaseModel], Endpoint]], keys: KeyRing,
                 key_header: str, error: ErrorAnswer, max_body: int = 64 * 1024,
                 route_headers: Iterable[str] = ()) -> None:
        self.app, self.routes, self.keys, self.error = app, routes, keys, error
        self.key_header = key_header.lower().encode()
        self.max_body = max_body
        self.route_headers = {h.lower().encode() for h in route_headers}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None or any(name in self.route_headers for name, _ in scope["headers"]):  # FastAPI reads them
            await self.app(scope, receive, send)
            return
        key, length = self._headers(scope)
        terminal = self.keys.find(key) if key is not None else None
        if terminal is None or length > self.max_body:  # refused by FastAPI before anything reads the body
            await self.app(scope, receive, send)
            return
        body, more = await self._body(receive)
        req = None
        if not more:
            try:
                req = route[0].model_validate_json(body)
            except ValidationError:
                req = None
        if req is None:  # FastAPI answers everything but the lean path's happy path and typed refusals
            await self.app(scope, replay(body, more, receive), send)
            return
        try:
            answer = await route[1](req, terminal)
        except SettlementError as e:
            status, data, headers = self.error(e)
            await _send(send, status, data, headers)
            return
        await _send(send, 200, answer.model_dump_json().encode(), [])

    def _headers(self, scope: Scope) -> tuple[str | None, int]:
        """The terminal key and the declared body length (0 when not declared, past `max_body` when unreadable)."""
        key, length = None, 0
        for name, value in scope["headers"]:
            if name == self.key_header:
                key = value.decode("latin-1")
            elif name == b"content-length":
                length = int(value) if value.isdigit() else self.max_body + 1
        return key, length

    async def _body(self, receive: Receive) -> tuple[bytes, bool]:
        """The request body, and whether it went on past `max_body` (then only what was read)."""
        parts = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(parts), True
            chunk = message.get("body", b"")
            parts.append(chunk)
            size += len(chunk)
            if not message.get("more_body", False):
                return b"".join(parts), False
            if size > self.max_body:
                return b"".join(parts), True


async def _send(send: Send, status: int, data: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*_JSON, (b"content-length", str(len(data)).encode()), *headers]})
    await send({"type": "http.response.body", "body": data})
