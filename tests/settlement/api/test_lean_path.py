"""The lean HTTP path (settlement/api/lean.py) and load shedding, on both stores: the hot money-moving routes
answer as the FastAPI routes do (a refusal, a bad body, no key, a body too large, a repeat), and a service
with more requests waiting for its store than `max_backlog` sheds new ones at once with 503 OVERLOADED and
Retry-After, instead of queueing without bound; what it accepted completes once the store is free."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx

from settlement.api.auth import TerminalKey, hash_key
from settlement.api.service import create_app
from tests.settlement.flows_helpers import Clock, Y, make_engine

KEY = "counter-key-1"
TERMINALS = [TerminalKey("T1", hash_key(KEY), institution="BJ3")]
LINES = [{"chrgitm_lv": "A", "det_item_fee_sumamt": 900 * Y}]


def client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://centre",  # type: ignore[arg-type]
                             headers={"X-Terminal-Key": KEY})


def test_the_lean_routes_answer_as_the_api_does(store) -> None:
    eng = make_engine(store, Clock())
    app = create_app(eng, terminals=TERMINALS)

    async def main() -> None:
        async with client(app) as c:
            r = await c.post("/v1/medical/visits", json={"terminal_serial": "r1", "person_id": "EMP",
                                                          "institution": "BJ3", "care": "outpatient",
                                                          "card_no": "C0000001"})
            assert r.status_code == 200 and r.headers["content-type"] == "application/json"
            mdtrt = r.json()["mdtrt_id"]
            body = {"terminal_serial": "s1", "mdtrt_id": mdtrt, "lines": LINES}
            first = await c.post("/v1/medical/settle", json=body)
            assert first.status_code == 200 and first.json()["replayed"] is False
            again = await c.post("/v1/medical/settle", json=body)
            assert again.json() == {**first.json(), "replayed": True}
            # typed refusals keep their status and body
            r = await c.post("/v1/medical/settle", json={**body, "terminal_serial": "s2"})
            assert (r.status_code, r.json()["code"]) == (409, "INVALID_STATE")
            r = await c.post("/v1/medical/visits", json={"terminal_serial": "r2", "person_id": "EMP",
                                                          "institution": "BJ1", "care": "outpatient"})
            assert (r.status_code, r.json()["code"]) == (403, "OTHER_INSTITUTION")
            r = await c.post("/v1/medical/visits", json={"terminal_serial": "r3", "person_id": "EMP",
                                                          "institution": "BJ3", "care": "outpatient"})
            assert (r.status_code, r.json()["code"]) == (403, "CARD_PROOF_REQUIRED")
            r = await c.post("/v1/medical/visits", json={"terminal_serial": "r4", "person_id": "EMP",
                                                          "institution": "BJ3", "care": "outpatient",
                                                          "card_no": "C0000002"})
            assert (r.status_code, r.json()["code"]) == (403, "CARD_PROOF_MISMATCH")
            # what the lean path leaves to FastAPI is answered as before
            r = await c.post("/v1/medical/settle", json={**body, "lines": [{"chrgitm_lv": "A",
                                                                            "det_item_fee_sumamt": -1}]})
            assert (r.status_code, r.json()["code"]) == (422, "INVALID_AMOUNT")
            r = await c.post("/v1/medical/settle", content=b"{not json", headers={"content-type": "application/json"})
            assert (r.status_code, r.json()["code"]) == (422, "INVALID_REQUEST")
            r = await c.post("/v1/medical/settle", json=body, headers={"X-Terminal-Key": "nope"})
            assert (r.status_code, r.json()["code"]) == (401, "UNAUTHORIZED")
            big = {**body, "lines": LINES * 2_000}  # past the lean path's body limit: FastAPI reads the rest
            r = await c.post("/v1/medical/settle", content=json.dumps(big).encode(),
                             headers={"content-type": "application/json"})
            assert r.status_code in (409, 413, 422)  # answered, whole, by the app
    asyncio.run(main())
    eng.ledger.check_invariants()


def test_an_overloaded_service_sheds_with_503_and_retry_after(store) -> None:
    eng = make_engine(store, Clock())
    visits = [eng.medical.register(f"T1:r{i}", "EMP", "BJ3", "outpatient").mdtrt_id for i in range(40)]
    app = create_app(eng, terminals=TERMINALS, max_backlog=5)
    hold, held = threading.Event(), threading.Event()

    def block_the_writer() -> None:
        with eng.store.transaction():  # the writer waits for this unit: requests pile up in its queue
            held.set()
            hold.wait(30)

    blocker = threading.Thread(target=block_the_writer)
    blocker.start()
    assert held.wait(10)

    async def main() -> list[httpx.Response]:
        async with client(app) as c:
            calls = [asyncio.create_task(c.post("/v1/medical/settle", json={
                "terminal_serial": f"s{i}", "mdtrt_id": m, "lines": LINES})) for i, m in enumerate(visits)]
            await asyncio.sleep(0.5)
            shed = [t for t in calls if t.done()]
            assert len(shed) >= 30  # everything beyond the backlog is answered at once
            hold.set()
            return await asyncio.gather(*calls)

    try:
        answers = asyncio.run(main())
    finally:
        hold.set()
        blocker.join(10)
    overloaded = [r for r in answers if r.status_code == 503]
    settled = [r for r in answers if r.status_code == 200]
    assert len(settled) + len(overloaded) == len(visits) and 1 <= len(settled) <= 10
    for r in overloaded:
        assert r.json()["code"] == "OVERLOADED" and r.headers["retry-after"] == "1"
    assert len(eng.ledger.postings(limit=10_000)) == 1 + len(settled)  # the seed deposit and what was accepted
    eng.ledger.check_invariants()


def test_the_lean_path_reads_no_body_without_a_known_key_or_past_its_limit() -> None:
    """A request without a known key, or declaring a body past the limit, reaches the app (and its refusals)
    with its body unread: the lean path does not parse what the service would refuse."""
    from pydantic import BaseModel

    from settlement.api.auth import KeyRing
    from settlement.api.lean import LeanPath

    class Body(BaseModel):
        serial: str

    reads: list[str] = []

    async def inner(scope, receive, send) -> None:
        reads.append("app")

    async def receive() -> dict:
        reads.append("body")
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def never(req, terminal):  # pragma: no cover - the lean path must not get this far
        raise AssertionError("answered a request it should have left to the app")

    lean = LeanPath(inner, routes={"/v1/medical/settle": (Body, never)}, keys=KeyRing(TERMINALS),
                    key_header="X-Terminal-Key", error=lambda e: (500, b"", []), max_body=1000)

    def call(headers: list[tuple[bytes, bytes]]) -> list[str]:
        reads.clear()
        asyncio.run(lean({"type": "http", "method": "POST", "path": "/v1/medical/settle", "headers": headers},
                         receive, lambda m: None))
        return list(reads)

    assert call([]) == ["app"]
    assert call([(b"x-terminal-key", b"wrong"), (b"content-length", b"2")]) == ["app"]
    assert call([(b"x-terminal-key", KEY.encode()), (b"content-length", b"1001")]) == ["app"]
    assert call([(b"x-terminal-key", KEY.encode()), (b"content-length", b"2")]) == ["body", "app"]  # invalid body
