"""The national reader interface for pages (terminal.reader_bridge) over its two transports.

- HTTP: `POST /v1/bridge` with the call as JSON (`{"function": "iReadCardBas", "iType": 3}`), the answer as
  JSON, HTTP 200 whatever the function's result (as the DLL returns a code, not an exception); a body over
  `[reader_bridge] max_message` bytes is 413 with result -14.
- WebSocket: `/v1/bridge/ws`, one JSON call per text message and one answer per call, in order (a vendor
  bridge's page switches by changing its `ws://127.0.0.1:PORT` URL to this one).

Who may call: a client on this machine (loopback; `[reader_bridge] allow_remote` widens it), from no page or
a page on an allowed origin (`[cors] allow_origins`, or the daemon's own), with a front end's bearer token
in `Authorization`, or a reader-bridge token (`[reader_bridge] tokens_sha256`) there or in the URL as
`?access_token=` (a browser's WebSocket cannot send headers). A reader-bridge token opens these two routes
only: it reads cards and checks PINs, it never moves money. A refused WebSocket handshake is closed with
1008 (the browser sees HTTP 403). Calls are logged by function and result, never with their arguments.
"""

from __future__ import annotations

import json
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, WebSocket
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect

from terminal.cors import websocket_origin_allowed
from terminal.errors import TerminalError
from terminal.logs import event
from terminal.reader_bridge import BAD_ARGUMENT, SIGNATURES, Answer, ReaderBridge
from terminal.routers.deps import answers, client_of

router = APIRouter(tags=["reader bridge"])
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class BridgeAnswer(BaseModel):
    """What a national reader function gave: `result` 0 or a negative national code (`success` 1 or the code,
    as the WebSocket bridges answer), `pOutInfo` its output string or the error's description."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "function": "iReadCardBas", "functionName": "iReadCardBas", "result": 0, "success": 1,
        "pOutInfo": "110100|110105198001010016|B10238475|110100D15600000500D6A6E58F1B2E3C|张三|"
                    "0081044E4F4E45|2.00|20150601|20350601|110100000001|T0001|",
        "message": "成功"}]})

    function: str
    functionName: str  # noqa: N815 - the name pages read
    result: int = Field(description="0, or a negative national code (-2 no card, -51 PIN wrong, -SW for a card "
                                    "status word...)")
    success: int = Field(description="1 on success, else the code (what WebSocket bridges answer)")
    pOutInfo: str  # noqa: N815
    message: str
    tries_left: int | None = Field(None, description="PIN tries left, with -51")
    handle: str | None = Field(None, description="iReadCardBas_HSM_Step1: names this read for its Step2")


CALL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["function"],
    "properties": {
        "function": {"type": "string", "enum": list(SIGNATURES)},
        "args": {"description": "the arguments as an object, or a list in the DLL's order",
                 "anyOf": [{"type": "object"}, {"type": "array"}]},
        "iType": {"type": "integer", "enum": [1, 2, 3, 4],
                  "description": "1 contact, 2 contactless, 3 automatic (contact first), 4 automatic"},
        "pKey": {"type": "string", "description": "Step2: the HSM's answer, 内部认证数据|外部认证数据|"},
        "handle": {"type": "string", "description": "Step2: the handle Step1 gave"},
        "pPIN": {"type": "string", "description": "iVerifyPIN: the PIN (the reader's PIN pad, elsewhere)"},
        "pOldPIN": {"type": "string"},
        "pNewPIN": {"type": "string"},
        "reader": {"type": "string", "description": "one of the daemon's user-card readers (default: the first)"},
    },
    "example": {"function": "iReadCardBas", "iType": 3},
}


def _refusal(scope: dict[str, Any], headers, query_token: str | None, t) -> tuple[str | None, str]:
    """(why the caller may not call, or None; the caller's identity)."""
    cfg = t.config
    host = (scope.get("client") or ("", 0))[0]
    if not cfg.reader_bridge.allow_remote and host not in LOOPBACK:
        return "BRIDGE_REMOTE_REFUSED", ""
    auth = headers.get("authorization", "")
    bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    if bearer and (cfg.token_ok(bearer) or cfg.bridge_token_ok(bearer)):
        return None, client_of(bearer)
    if query_token and cfg.bridge_token_ok(query_token):
        return None, client_of(query_token)
    return "UNAUTHORIZED", ""


def _fail(code: str) -> TerminalError:
    if code == "BRIDGE_REMOTE_REFUSED":
        return TerminalError(code, "The reader bridge answers pages on this machine only.", 403)
    return TerminalError("UNAUTHORIZED", "A valid bearer token or reader-bridge token is required.", 401)


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is over `limit` bytes (read no further)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return body


def _message(raw: bytes | str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None  # parse_call answers -14


RESPONSES = answers(BridgeAnswer, errors=(401, 403)) | {
    413: {"model": BridgeAnswer, "description": "the call is over [reader_bridge] max_message bytes (result -14)"}}


@router.post("/v1/bridge", operation_id="callReaderFunction", response_model=BridgeAnswer,
             response_model_exclude_none=True, responses=RESPONSES,
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": CALL_SCHEMA}}}})
async def call_function(
    request: Request,
    access_token: Annotated[str | None, Query(max_length=128, description=(
        "a reader-bridge token, instead of the Authorization header (pages whose bridge library sends none)"))
    ] = None,
) -> Any:
    """Call one national reader function (iReadCardBas, iReadCardBas_HSM_Step1/Step2, iVerifyPIN, iChangePIN).

    The answer is HTTP 200 with the function's result code, bad calls included (-13 unknown function, -14 bad
    arguments); see terminal/reader_bridge.py for each function and code."""
    t = request.app.state.terminal
    why, client = _refusal(request.scope, request.headers, access_token, t)
    if why:
        raise _fail(why)
    limit = t.config.reader_bridge.max_message
    raw = await _read_body(request, limit)
    if raw is None:
        answer = Answer("?", BAD_ARGUMENT, f"调用超过 {limit} 字节")
        return JSONResponse(answer.to_dict(), status_code=413)
    bridge: ReaderBridge = request.app.state.bridge
    return (await run_in_threadpool(bridge.call, _message(raw), f"http:{client}")).to_dict()


@router.websocket("/v1/bridge/ws")
async def bridge_socket(ws: WebSocket, access_token: str | None = None) -> None:
    """The same calls over a WebSocket, answered in order."""
    t = ws.app.state.terminal
    why, client = _refusal(ws.scope, ws.headers, access_token, t)
    if why is None and not websocket_origin_allowed(ws.scope, t.config.cors.allow_origins):
        why = "CORS_ORIGIN_NOT_ALLOWED"
    if why:
        event("bridge.refused", why=why, transport="ws")
        await ws.close(code=1008)
        return
    await ws.accept()
    caller = f"ws:{client}:{secrets.token_hex(6)}"
    bridge: ReaderBridge = ws.app.state.bridge
    limit = t.config.reader_bridge.max_message
    event("bridge.open", caller=f"ws:{client}")
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                break
            raw = msg.get("text") if msg.get("text") is not None else msg.get("bytes") or b""
            if len(raw.encode() if isinstance(raw, str) else raw) > limit:
                await ws.send_json(Answer("?", BAD_ARGUMENT, f"调用超过 {limit} 字节").to_dict())
                await ws.close(code=1009)
                break
            answer = await run_in_threadpool(bridge.call, _message(raw), caller)
            await ws.send_json(answer.to_dict())
    except WebSocketDisconnect:
        pass
    finally:
        await run_in_threadpool(bridge.forget, caller)
        event("bridge.close", caller=f"ws:{client}")
