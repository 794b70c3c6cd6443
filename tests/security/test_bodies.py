"""Issue 12, finding 5: bodies were read before authentication and without a size limit (an unauthenticated
200 MB POST took the settlement service from 69 to 497 MB, the terminal from 73 to 424 MB).

Each app is driven in-process as ASGI with a hostile body that counts what the app pulls from it: a request
without a known key, or declaring a body over the limit, gets its typed refusal with nothing read; a chunked
body (no length declared) is read only up to the limit. Covers the settlement service's routes (the lean
path's money-moving routes among them), its national interface and the terminal daemon.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from settlement.api.national import MAX_BODY as NATIONAL_MAX
from settlement.api.service import MAX_BODY as SERVICE_MAX
from settlement.api.service import create_app
from settlement.ledger.store.sqlite import SqliteStore
from sscard.stack import Centre, Counter, start_centre, start_counter
from terminal.app import MAX_BODY as TERMINAL_MAX
from tests.security.centre import KEYS, TERMINALS
from tests.settlement.flows_helpers import Clock, make_engine

MB = 1024 * 1024
HOSTILE = 200 * MB  # as in the finding
CHUNK = b"x" * MB


@dataclass
class Answer:
    status: int
    body: bytes
    read: int  # bytes of the request body the app pulled

    def json(self) -> dict:
        return json.loads(self.body)


def drive(app, method: str, path: str, headers: dict[str, str], *, declared: int | None = HOSTILE,
          size: int = HOSTILE) -> Answer:
    """One request through the ASGI app; its body is `size` bytes in 1 MB chunks (Content-Length `declared`,
    or chunked when None), produced only as the app asks for them."""
    read = 0
    sent: list[dict] = []
    hdrs = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    if declared is not None:
        hdrs.append((b"content-length", str(declared).encode()))
    else:
        hdrs.append((b"transfer-encoding", b"chunked"))

    async def receive() -> dict:
        nonlocal read
        if read >= size:
            await asyncio.Event().wait()  # the client sends nothing more
        chunk = CHUNK[:min(MB, size - read)]
        read += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": read < size}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": hdrs,
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 30))
    start = next(m for m in sent if m["type"] == "http.response.start")
    return Answer(start["status"], b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"),
                  read)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    with SqliteStore(tmp_path_factory.mktemp("bodies") / "s.db") as store:
        yield create_app(make_engine(store, Clock()), terminals=TERMINALS)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Counter]:
    centre: Centre = start_centre(tmp_path_factory.mktemp("centre"))
    counter = start_counter(centre)
    yield counter
    counter.stop()
    centre.stop()


ROUTES = ["/v1/medical/settle", "/v1/medical/visits", "/v1/medical/refund", "/v1/pension/collect",  # lean path
          "/v1/medical/void", "/v1/identity/certify", "/v1/persons/EMP/death-report", "/v1/nowhere"]


@pytest.mark.parametrize("path", ROUTES)
def test_the_service_reads_no_body_without_a_known_key(service, path):
    for headers in ({}, {"X-Terminal-Key": "guessed"}, {"X-Terminal-Key": ""}):
        for declared in (HOSTILE, None):
            a = drive(service, "POST", path, headers, declared=declared)
            assert (a.status, a.json()["code"], a.read) == (401, "UNAUTHORIZED", 0), (headers, declared)


@pytest.mark.parametrize("path", ROUTES)
def test_the_service_refuses_a_body_over_its_limit_unread(service, path):
    a = drive(service, "POST", path, {"X-Terminal-Key": KEYS["T1"]})
    assert (a.status, a.json()["code"], a.read) == (413, "REQUEST_TOO_LARGE", 0)
    assert a.json()["details"] == {"limit": SERVICE_MAX}
    chunked = drive(service, "POST", path, {"X-Terminal-Key": KEYS["T1"]}, declared=None)
    assert (chunked.status, chunked.json()["code"]) == (413, "REQUEST_TOO_LARGE")
    assert chunked.read <= SERVICE_MAX + MB  # counted chunk by chunk, and no further


def test_a_body_within_the_limit_still_reaches_the_route(service):
    a = drive(service, "POST", "/v1/medical/void", {"X-Terminal-Key": KEYS["T1"]}, declared=None, size=10)
    assert (a.status, a.json()["code"], a.read) == (422, "INVALID_REQUEST", 10)  # ten bytes of "x": not JSON
    assert drive(service, "GET", "/v1/health", {}, declared=0, size=0).status == 200


def test_the_national_interface_answers_as_the_platform_does_unread(service):
    path = "/fsi/api/rsfComIfsService/callService"
    a = drive(service, "POST", path, {})
    assert (a.status, a.json()["infcode"], a.read) == (200, -1, 0)
    assert "X-Terminal-Key" in a.json()["err_msg"]
    big = drive(service, "POST", path, {"X-Terminal-Key": KEYS["T1"]})
    assert (big.status, big.json()["infcode"], big.read) == (200, -1, 0)
    assert "12 MB" in big.json()["err_msg"]
    chunked = drive(service, "POST", path, {"X-Terminal-Key": KEYS["T1"]}, declared=None)
    assert chunked.json()["infcode"] == -1 and chunked.read <= NATIONAL_MAX + MB


DAEMON_ROUTES = ["/v1/visits", "/v1/visits/M1/settle", "/v1/pension/collect", "/v1/readers/events/token",
                 "/v1/nowhere"]


@pytest.mark.parametrize("path", DAEMON_ROUTES)
def test_the_daemon_reads_no_body_without_a_token_nor_past_its_limit(daemon, path):
    app = daemon.http.server.config.app
    for headers in ({}, {"Authorization": "Bearer guessed"}, {"Authorization": daemon.token}):
        for declared in (HOSTILE, None):
            a = drive(app, "POST", path, {**headers, "Accept-Language": "en"}, declared=declared)
            assert (a.status, a.json()["code"], a.read) == (401, "UNAUTHORIZED", 0), (headers, declared)
    a = drive(app, "POST", path, daemon.headers())
    assert (a.status, a.json()["code"], a.read) == (413, "REQUEST_TOO_LARGE", 0)
    chunked = drive(app, "POST", path, {**daemon.headers(), "Accept-Language": "zh"}, declared=None)
    assert (chunked.status, chunked.json()["code"]) == (413, "REQUEST_TOO_LARGE")
    assert chunked.read <= TERMINAL_MAX + MB and str(TERMINAL_MAX) in chunked.json()["message"]
