"""A pure-ASGI gate in front of an HTTP app: the caller is authenticated and the body's size is checked before
anything reads the body (issue 12, finding 5: a 200 MB body, sent without a key, was read whole).

    app.add_middleware(BodyGuard, limit=lambda scope: 2 << 20, authenticated=lambda scope: ...,
                       refuse=lambda scope, refusal: Response(...))

For each HTTP request, in order, before the app sees it:
1. `authenticated(scope)` (from the headers and the query; None: the route checks itself) false: refused
   UNAUTHORIZED (401);
2. a declared Content-Length above `limit(scope)` (or unreadable): refused REQUEST_TOO_LARGE (413);
3. a body without Content-Length (chunked) is read here up to the limit, counting chunks: past it, refused
   REQUEST_TOO_LARGE with no more read; within it, handed to the app as read.
A declared length is held to by the HTTP server (uvicorn ends a request sending more), so it is not counted
again. `refuse(scope, refusal)` renders the refusal in the app's own error shape. WebSockets and lifespan
pass through (their messages have their own cap). The service and the terminal daemon both use it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass(frozen=True)
class Refusal:
    """Why the gate refused a request: `status`, a stable `code`, a `message`, and the size `limit` (413)."""

    status: int
    code: str
    message: str
    limit: int | None = None


UNAUTHORIZED = Refusal(401, "UNAUTHORIZED", "missing or unknown credentials: the request was not read")


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of header `name` (lower case) in an ASGI scope."""
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


class BodyGuard:
    def __init__(self, app: ASGIApp, *, limit: Callable[[Scope], int],
                 authenticated: Callable[[Scope], bool | None],
                 refuse: Callable[[Scope, Refusal], Response]) -> None:
        self.app, self.limit, self.authenticated, self.refuse = app, limit, authenticated, refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.authenticated(scope) is False:
            await self._refuse(scope, receive, send, UNAUTHORIZED)
            return
        limit = self.limit(scope)
        declared = header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > limit:
                await self._refuse(scope, receive, send, _sized(limit))
                return
            await self.app(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS") and header(scope, b"transfer-encoding") is None:
            await self.app(scope, receive, send)
            return
        body, over = await _read(receive, limit)
        if body is None:  # the client went away
            return
        if over:
            await self._refuse(scope, receive, send, _sized(limit))
            return
        await self.app(scope, replay(body, False, receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, refusal: Refusal) -> None:
        response = self.refuse(scope, refusal)
        response.headers["Connection"] = "close"  # the unread body is not drained: the connection ends
        await response(scope, receive, send)


def _sized(limit: int) -> Refusal:
    return Refusal(413, "REQUEST_TOO_LARGE", f"the request body is over the limit of {limit} bytes: not read", limit)


async def _read(receive: Receive, limit: int) -> tuple[bytes | None, bool]:
    """The body (None: the client disconnected), and whether it went past `limit` (then reading stopped)."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None, False
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", True
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts), False


def replay(body: bytes, more: bool, receive: Receive) -> Receive:
    """A `receive` that gives the app the body already read (`more`: the rest follows), then what the
    connection says next."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return again
