"""The terminal daemon's HTTP API: what a hospital HIS, a kiosk or the counter page calls.

OpenAPI (at /openapi.json, browsable at /docs with assets served by the daemon) is the contract: a typed
answer, a stable operationId and an example on every operation. Every call but /health and /metrics
needs `Authorization: Bearer <token>` (tokens are configured as SHA-256 hashes), checked before a body is
read, and a body is at most MAX_BODY bytes (413 REQUEST_TOO_LARGE, unread); a page's event stream may use a
short-lived token in its URL instead. Every error, whatever its status (404 and 405 included), is
`{code, message, details}` with a stable code; the message is Chinese or English by `Accept-Language`.
Amounts are integer fen (1 yuan = 100 fen) with the national platform's field names. Every write takes an
`Idempotency-Key`. Browser pages on other origins are let in by `[cors] allow_origins`. The daemon binds
127.0.0.1 unless configured otherwise. Pages written for the national reader interface (iReadCardBas...)
call `POST /v1/bridge` or the WebSocket `/v1/bridge/ws` (terminal.reader_bridge).
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from cardlib.errors import CardError
from settlement.api.guard import BodyGuard, Refusal, header
from settlement.errors import SettlementError
from terminal import metrics
from terminal.auth import EventTokens
from terminal.cors import CounterCors
from terminal.errors import TerminalError, error_response, from_card_error, from_session_error, from_settlement_error
from terminal.fees import FeeStore
from terminal.flows import Terminal
from terminal.health import VERSION
from terminal.idempotency import IdempotencyMiddleware, IdempotencyStore
from terminal.journal import JournalError
from terminal.reader_bridge import ReaderBridge
from terminal.routers import ALL
from terminal.session import SessionError
from terminal.streams import EventStreams

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
MAX_BODY = 1024 * 1024
"""Bytes in a request body (500 fee lines are about 150 KB; the reader bridge has its own, smaller cap)."""
SELF_AUTHENTICATED = frozenset({"/v1/bridge"})  # checks its own tokens before reading (terminal.routers.bridge)


def _handlers(app: FastAPI) -> None:
    def respond(convert):
        def handler(request: Request, e: Exception) -> JSONResponse:
            return error_response(convert(e), request.headers.get("accept-language"))

        return handler

    def invalid(e: RequestValidationError) -> TerminalError:
        errors = [{"loc": [str(p) for p in x.get("loc", ())], "msg": x.get("msg", "")} for x in e.errors()]
        first = errors[0] if errors else {"loc": [], "msg": "invalid"}
        where = ".".join(first["loc"])
        return TerminalError("INVALID_REQUEST", f"{where}: {first['msg']}", 422, where=where, errors=errors)

    def http_error(e: StarletteHTTPException) -> TerminalError:
        if e.status_code == 404:
            return TerminalError("NOT_FOUND", "no such resource", 404)
        if e.status_code == 405:
            return TerminalError("METHOD_NOT_ALLOWED", "method not allowed", 405)
        return TerminalError(f"HTTP_{e.status_code}", str(e.detail), e.status_code)

    def internal(e: Exception) -> TerminalError:
        log.error("internal error", exc_info=e)
        return TerminalError("INTERNAL_ERROR", "internal error in the terminal", 500)

    for exc, convert in ((TerminalError, lambda e: e), (SessionError, from_session_error),
                         (CardError, from_card_error), (SettlementError, from_settlement_error),
                         (JournalError, lambda e: TerminalError("UNKNOWN_TRANSACTION", str(e), 404, reason=str(e))),
                         (RequestValidationError, invalid), (Exception, internal)):
        app.add_exception_handler(exc, respond(convert))

    # details that name the request (path, method) are only known here
    @app.exception_handler(StarletteHTTPException)
    def _http(request: Request, e: StarletteHTTPException) -> JSONResponse:
        err = http_error(e)
        err.details.update(path=request.url.path, method=request.method)
        return error_response(err, request.headers.get("accept-language"),
                              headers={"Allow": e.headers["Allow"]} if e.headers and "Allow" in e.headers else None)


def _docs(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="sscard terminal daemon",
            swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
            swagger_ui_parameters={"validatorUrl": None})


def _guard(app: FastAPI, t: Terminal) -> None:
    """Bodies are read only from a caller with a valid bearer token, and only up to MAX_BODY (settlement/api/
    guard.py). Reads (GET) carry no body and are authenticated by their route (an event stream may use a
    token in its URL)."""

    def authenticated(scope) -> bool | None:
        if scope["method"] in ("GET", "HEAD", "OPTIONS") or scope["path"] in SELF_AUTHENTICATED:
            return None
        scheme, _, token = (header(scope, b"authorization") or b"").decode("latin-1").partition(" ")
        return scheme.lower() == "bearer" and t.config.token_ok(token.strip())

    def refuse(scope, refusal: Refusal) -> JSONResponse:
        details = {} if refusal.limit is None else {"limit": refusal.limit}
        err = TerminalError(refusal.code, refusal.message, refusal.status, **details)
        lang = header(scope, b"accept-language")
        return error_response(err, lang.decode("latin-1") if lang else None)

    app.add_middleware(BodyGuard, limit=lambda scope: MAX_BODY, authenticated=authenticated, refuse=refuse)


def create_app(t: Terminal) -> FastAPI:
    app = FastAPI(
        title="sscard terminal daemon",
        version=VERSION,
        summary="Card reading, identity checks, hospital-visit settlement and pension collection at a counter.",
        description=__doc__,
        docs_url=None,
        redoc_url=None,
    )
    app.state.terminal = t
    app.state.event_tokens = EventTokens(t.config.auth.events_token_ttl)
    app.state.event_streams = EventStreams(t.config.auth.max_event_streams)
    app.state.fees = FeeStore(t.journal.path, now=t.clock.now)
    app.state.idempotency = IdempotencyStore(t.journal.path, now=t.clock.now)
    app.state.bridge = ReaderBridge(t, t.config.reader_bridge.hsm_step_ttl)
    _handlers(app)
    for router in ALL:
        app.include_router(router)
    _docs(app)
    # outermost last: CORS (and origin guard) -> token and body size -> request metrics -> Idempotency-Key
    # -> routes
    app.add_middleware(IdempotencyMiddleware, store=app.state.idempotency)
    app.add_middleware(metrics.HttpMetrics)
    _guard(app, t)
    cors = t.config.cors
    app.add_middleware(CounterCors, allow_origins=cors.allow_origins,
                       allow_private_network=cors.allow_private_network, max_age=cors.max_age)
    return app


def close_app(app: FastAPI) -> None:
    """Close what `create_app` opened besides the terminal (its event streams, idempotency and fee stores, the
    reader bridge's pending reads)."""
    app.state.event_streams.close()
    app.state.bridge.close()
    app.state.idempotency.close()
    app.state.fees.close()
