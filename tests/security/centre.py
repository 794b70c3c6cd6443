"""A centre with four terminals, for hostile-terminal tests: T1 and T2 at hospital BJ3, T9 at hospital BJ1,
and OPS, the operator. Each test gets a fresh store (SQLite and PostgreSQL). conftest.py re-exports the
fixtures."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from settlement.api.auth import TerminalKey, hash_key
from settlement.api.service import create_app
from settlement.schemes.engine import Engine
from tests.settlement import conftest as stores
from tests.settlement.flows_helpers import Clock, make_engine

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

KEYS = {"T1": "key-of-T1", "T2": "key-of-T2", "T9": "key-of-T9", "OPS": "key-of-OPS"}
TERMINALS = [TerminalKey("T1", hash_key(KEYS["T1"]), "BJ3"), TerminalKey("T2", hash_key(KEYS["T2"]), "BJ3"),
             TerminalKey("T9", hash_key(KEYS["T9"]), "BJ1"), TerminalKey("OPS", hash_key(KEYS["OPS"]), operator=True)]
make_store, store_kind, store = stores.make_store, stores.store_kind, stores.store  # the settlement store fixtures
CARD = {"EMP": "C0000001", "RET": "C0000002"}
LINE = {"chrgitm_lv": "A", "det_item_fee_sumamt": 120_00}


def code(r: httpx.Response) -> tuple[int, str | None]:
    """(HTTP status, error code) of an answer; the code is None for a success."""
    body = r.json()
    return r.status_code, body.get("code") if isinstance(body, dict) else None


@dataclass
class Centre:
    http: TestClient
    engine: Engine

    def call(self, who: str, method: str, path: str, *, card: str | None = None, **kw) -> httpx.Response:
        headers = {"X-Terminal-Key": KEYS[who]}
        if card is not None:
            headers["X-Card-No"] = card
        return self.http.request(method, path, headers=headers, **kw)

    def ok(self, who: str, method: str, path: str, **kw) -> dict:
        r = self.call(who, method, path, **kw)
        assert r.status_code == 200, r.text
        return r.json()

    def settled(self, who: str = "T1", serial: str = "0002", person: str = "EMP") -> dict:
        """A visit registered (serial - 1) and settled (serial) by `who` at its hospital."""
        inst = {"T1": "BJ3", "T2": "BJ3", "T9": "BJ1"}[who]
        visit = self.ok(who, "POST", "/v1/medical/visits", json={
            "terminal_serial": f"r{serial}", "person_id": person, "institution": inst, "care": "outpatient",
            "card_no": CARD[person]})
        return self.ok(who, "POST", "/v1/medical/settle", json={
            "terminal_serial": serial, "mdtrt_id": visit["mdtrt_id"], "lines": [LINE]})

    def postings(self) -> int:
        return len(self.engine.ledger.postings(limit=100_000))

    def tombstones(self) -> int:
        return self.engine.store.read(lambda tx: tx.value(
            "SELECT count(*) FROM med_settlements WHERE status = 'void_before_arrival'")) + self.engine.store.read(
            lambda tx: tx.value("SELECT count(*) FROM pen_voids"))


@pytest.fixture
def centre(store) -> Iterator[Centre]:
    engine = make_engine(store, Clock())
    with TestClient(create_app(engine, terminals=TERMINALS)) as http:
        yield Centre(http, engine)
