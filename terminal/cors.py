"""Cross-origin calls from browser pages: Starlette's CORS middleware, with clear refusals.

A HIS page on another origin (say https://his.example.org) may call the daemon on 127.0.0.1 when its
origin is in `[cors] allow_origins`. Three additions to Starlette's middleware:
- Private Network Access: Chromium sends `Access-Control-Request-Private-Network: true` on the preflight of a
  public page calling a private address; the answer `Access-Control-Allow-Private-Network: true` goes to
  allowed origins only (WICG Private Network Access, "CORS preflight").
- A refused preflight is answered in the API's error shape (`CORS_ORIGIN_NOT_ALLOWED`, or
  `CORS_PREFLIGHT_REFUSED` naming the method or headers), not a bare "Disallowed CORS origin".
- A request that carries the `Origin` of a page not allowed (and not the daemon's own, the counter page's)
  is refused with 403 before it reaches a route: an `EventSource` or a form post sends no preflight, and
  the browser's own refusal to show the answer comes after the work is done.
WebSockets pass CORS by: browsers send `Origin` and nothing checks it but the route, with
`websocket_origin_allowed` (the same rule).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from terminal.errors import TerminalError, error_response

ALLOW_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key", "Accept-Language")
EXPOSE_HEADERS = ("Idempotent-Replayed", "Content-Language")


def _own_origin(scope: Scope, headers: Headers) -> str:
    return f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"


class CounterCors(CORSMiddleware):
    """CORSMiddleware with PNA for allowed origins only, JSON refusals and a guard on simple requests."""

    def __init__(self, app, *, allow_origins: list[str], allow_private_network: bool, max_age: int) -> None:
        super().__init__(app, allow_origins=allow_origins, allow_methods=("GET", "POST"),
                         allow_headers=ALLOW_HEADERS, allow_private_network=allow_private_network,
                         expose_headers=EXPOSE_HEADERS, max_age=max_age)

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        origin = request_headers["origin"]
        allowed = self.is_allowed_origin(origin)
        headers = {k: v for k, v in response.headers.items()
                   if k.lower() not in ("content-length", "content-type")
                   and (allowed or k.lower() != "access-control-allow-private-network")}
        if not allowed:
            err = TerminalError("CORS_ORIGIN_NOT_ALLOWED", f"origin {origin} is not allowed", 403, origin=origin)
        else:
            refused = response.body.decode().removeprefix("Disallowed CORS ")
            err = TerminalError("CORS_PREFLIGHT_REFUSED", f"preflight refused: {refused}", 403, origin=origin,
                                refused=refused, method=request_headers.get("access-control-request-method", ""),
                                headers=request_headers.get("access-control-request-headers", ""))
        return error_response(err, request_headers.get("accept-language"), headers=headers)

    async def simple_response(self, scope: Scope, receive: Receive, send: Send, request_headers: Headers) -> None:
        origin = request_headers.get("origin")
        if origin is not None and not self.is_allowed_origin(origin) and origin != _own_origin(scope, request_headers):
            err = TerminalError("CORS_ORIGIN_NOT_ALLOWED", f"origin {origin} is not allowed", 403, origin=origin)
            await error_response(err, request_headers.get("accept-language"), headers={"Vary": "Origin"})(
                scope, receive, send)
            return
        await super().simple_response(scope, receive, send, request_headers)


def websocket_origin_allowed(scope: Scope, allow_origins: list[str]) -> bool:
    """Whether a WebSocket handshake comes from an allowed page (or from no page: no `Origin`)."""
    headers = Headers(scope=scope)
    origin = headers.get("origin")
    if origin is None:
        return True
    own = f"{'https' if scope.get('scheme') == 'wss' else 'http'}://{headers.get('host', '')}"
    return origin == own or "*" in allow_origins or origin in allow_origins
