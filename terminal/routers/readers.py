"""Readers, the card in them, and their events (server-sent, for a page's live card status)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials

from terminal.errors import TerminalError
from terminal.logs import event
from terminal.models import CardInfo, EventsToken, EventsTokenIn, ReaderStatus
from terminal.routers.deps import READ, WRITE, TerminalDep, answers, bearer, client_of, require_token
from terminal.streams import EventStreams

router = APIRouter(tags=["card"])
ReaderQuery = Annotated[str | None, Query(max_length=128, description="reader name; default: the first")]


@router.get("/v1/readers", operation_id="listReaders", dependencies=READ, response_model=list[ReaderStatus],
            responses=answers(ReaderStatus, many=True))
def readers(t: TerminalDep) -> list[dict]:
    """The counter's user-card readers, whether each is busy, and the card in it."""
    return [s.status() for s in t.sessions.values()]


@router.post("/v1/readers/events/token", operation_id="issueEventsToken", dependencies=WRITE,
             response_model=EventsToken, responses=answers(EventsToken))
def events_token(request: Request, t: TerminalDep, body: EventsTokenIn,
                 client: Annotated[str, Depends(require_token)]) -> EventsToken:
    """A short-lived token for one reader's event stream, for a page's `EventSource` (which sends no headers).

    Good for `GET /v1/readers/events` of that reader only, until `expires_in` seconds have passed."""
    s = t.session(body.reader)
    token = request.app.state.event_tokens.issue(s.name, client)
    url = "/v1/readers/events?" + urlencode({"reader": s.name, "access_token": token})
    return EventsToken(token=token, expires_in=int(request.app.state.event_tokens.ttl), reader=s.name, url=url)


def events_auth(request: Request, cred: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
                reader: ReaderQuery = None,
                access_token: Annotated[str | None, Query(max_length=128, description=(
                    "an events token (POST /v1/readers/events/token), instead of the Authorization header"))] = None
                ) -> str:
    t = request.app.state.terminal
    if cred is not None and t.config.token_ok(cred.credentials):
        return client_of(cred.credentials)
    if access_token is None:
        raise TerminalError("UNAUTHORIZED", "A valid bearer token is required.", 401)
    grant = request.app.state.event_tokens.check(access_token, t.session(reader).name)
    if grant is None:
        raise TerminalError("EVENTS_TOKEN_INVALID", "unknown, expired or another reader's events token", 401)
    return grant.client


class _Stream(StreamingResponse):
    """A stream that gives its place back however it ends (also when it never started)."""

    def __init__(self, body: AsyncIterator[str], release: Callable[[], None]) -> None:
        super().__init__(body, media_type="text/event-stream", headers={"Cache-Control": "no-store"})
        self.release = release

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.release()


@router.get("/v1/readers/events", operation_id="streamReaderEvents", response_class=StreamingResponse,
            responses=answers(media="text/event-stream", errors=(401, 403, 404, 409, 422, 429, 503), example=(
                'id: 3\nevent: card\ndata: {"kind": "inserted", "reader": "sscard Virtual 00 00", '
                '"at": "2024-05-01T02:03:04+00:00"}\n\n')))
async def reader_events(
    request: Request,
    t: TerminalDep,
    client: Annotated[str, Depends(events_auth)],
    reader: ReaderQuery = None,
    timeout: Annotated[float, Query(ge=0, le=3600, description="seconds before the server ends the stream")] = 300,
) -> StreamingResponse:
    """Server-sent events, data `{"kind", "reader", "at"}`: `card` events (kind "inserted" | "removed") and
    `reader` events (kind "reader_unavailable" | "reader_available": the reader or its PC/SC service went
    away or came back; read the card again after an outage).

    Authenticated by the bearer token, or by `access_token` in the URL (a browser's `EventSource`). At most
    `[auth] max_event_streams` streams per token are open at once (429 TOO_MANY_STREAMS); the streams end when
    the daemon stops."""
    s = t.session(reader)
    streams: EventStreams = request.app.state.event_streams
    waiter = streams.open(client)
    s.subscribe(waiter)
    event("events.open", reader=s.name, client=client)
    loop = asyncio.get_running_loop()

    def release() -> None:
        s.unsubscribe(waiter)
        streams.release(waiter)

    async def stream() -> AsyncIterator[str]:
        deadline = loop.time() + timeout
        last = s.last_event()
        yield ": connected\n\n"
        while not streams.closed and (left := deadline - loop.time()) > 0:
            await waiter.wait(min(5.0, left))
            for n, ev in s.events_after(last):
                last = n
                yield f"id: {n}\nevent: {ev.stream}\ndata: {json.dumps(ev.__dict__)}\n\n"
            yield ": keep-alive\n\n"

    return _Stream(stream(), release)


@router.get("/v1/card", operation_id="readCard", dependencies=READ, response_model=CardInfo,
            responses=answers(CardInfo))
def read_card(t: TerminalDep, reader: ReaderQuery = None, national: bool = False) -> CardInfo:
    """The card's basic data (no PIN needed); `national=true` adds the national interface string. A card on the
    blacklist is refused (CARD_REPORTED_LOST, CARD_CANCELLED, CARD_REPLACED); either way the answer says which
    copy of the blacklist decided and how old it is."""
    s = t.session(reader)
    with s.claim("read"):
        info = t.read_card(s)
    out = {**info.to_dict(), **t.blacklist_state()}
    if national:
        out["national"] = info.national(t.terminal_number, t.config.terminal.id)
    return CardInfo(**out)
