"""Issue 12, finding 7 (PostgreSQL): reads during an outage answered 500 instead of 503.

The service runs on its own database of the session's PostgreSQL server; the outage is that database
refusing connections with every session of it terminated (as when the server is down or restarting, without
stopping the server other tests use). Every route, read or write, answers 503 STORE_UNAVAILABLE with
Retry-After and writes nothing; once the database is back, the same requests succeed, each posted once.
"""

from __future__ import annotations

import time
import uuid
import warnings
from collections.abc import Iterator

import psycopg
import pytest

from settlement.api.service import create_app
from settlement.ledger.store.postgres import PostgresStore
from testing.pgtemp import TempCluster
from tests.security.centre import CARD, KEYS, LINE, TERMINALS, code
from tests.settlement.flows_helpers import Clock, make_engine

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.postgres


@pytest.fixture
def database(postgres: TempCluster) -> Iterator[tuple[str, TempCluster]]:
    name = f"outage_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres.dsn(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield name, postgres
    with psycopg.connect(postgres.dsn(), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def outage(cluster: TempCluster, name: str, down: bool) -> None:
    with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"false" if down else "true"}')
        if down:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])


def test_a_postgresql_outage_is_503_on_every_route_and_nothing_is_lost(database):
    name, cluster = database
    store = PostgresStore(cluster.dsn(name), min_size=1, max_size=4, wait=0.2)
    try:
        engine = make_engine(store, Clock())
        engine.pensions.enrol("RET", 3_000_00, "2024-01")
        with TestClient(create_app(engine, terminals=TERMINALS)) as http:
            def call(who: str, method: str, path: str, body: dict | None = None, card: str | None = None):
                headers = {"X-Terminal-Key": KEYS[who]} | ({"X-Card-No": card} if card else {})
                return http.request(method, path, json=body, headers=headers)

            visit = call("T1", "POST", "/v1/medical/visits", {"terminal_serial": "r1", "person_id": "EMP",
                                                               "institution": "BJ3", "care": "outpatient",
                                                               "card_no": CARD["EMP"]}).json()
            other = call("T1", "POST", "/v1/medical/visits", {"terminal_serial": "r3", "person_id": "EMP",
                                                               "institution": "BJ3", "care": "outpatient",
                                                               "card_no": CARD["EMP"]}).json()
            first = call("T1", "POST", "/v1/medical/settle", {"terminal_serial": "s1", "mdtrt_id": visit["mdtrt_id"],
                                                               "lines": [LINE]})
            assert first.status_code == 200, first.text
            writes = [
                ("T1", "POST", "/v1/medical/visits", {"terminal_serial": "r2", "person_id": "EMP", "institution": "BJ3",
                                                      "care": "outpatient", "card_no": CARD["EMP"]}),
                ("T1", "POST", "/v1/medical/settle", {"terminal_serial": "s2", "mdtrt_id": other["mdtrt_id"],
                                                      "lines": [LINE]}),
                ("T1", "POST", "/v1/medical/refund", {"terminal_serial": "f1", "setl_id": "T1:s1", "amount": 10_00}),
                ("T1", "POST", "/v1/medical/void", {"terminal_serial": "v1", "setl_id": "T1:s1"}),
                ("T9", "POST", "/v1/identity/certify", {"terminal_serial": "c1", "person_id": "RET",
                                                        "method": "biometric", "score": 0.99, "modality": "face",
                                                        "device_id": "cam-1", "card_no": CARD["RET"]}),
                ("OPS", "POST", "/v1/pension/issue", {"region": "110000", "month": "2024-03"}),
            ]
            reads = [
                ("T1", "GET", "/v1/medical/settlements/T1:s1", None),
                ("T1", "GET", "/v1/postings/T1:s1", None),
                ("T1", "GET", f"/v1/medical/visits/{visit['mdtrt_id']}", None),
                ("T1", "POST", "/v1/medical/presettle", {"mdtrt_id": visit["mdtrt_id"], "lines": [LINE]}),
                ("OPS", "GET", "/v1/persons/EMP", None),
                ("OPS", "GET", "/v1/persons/EMP/accumulators", None),
                ("OPS", "GET", "/v1/persons/EMP/balances", None),
                ("OPS", "GET", "/v1/pension/pensioners/RET", None),
                ("OPS", "GET", "/v1/persons/RET/certification", None),
                ("T1", "GET", "/v1/cards/blacklist", None),
                ("OPS", "GET", "/v1/fraud/flags", None),
                ("OPS", "GET", "/v1/balances?code=110000/fund/hifp", None),
            ]
            outage(cluster, name, down=True)
            for who, method, path, body in reads + writes:
                r = call(who, method, path, body, card=CARD["EMP"] if who == "T1" and "persons" in path else None)
                assert code(r) == (503, "STORE_UNAVAILABLE"), (path, r.status_code, r.text[:300])
                assert r.headers["retry-after"] == "1", path
            outage(cluster, name, down=False)
            for who, method, path, body in writes:  # sent again with the same serials, as terminals do: done once
                deadline = time.monotonic() + 30  # the pool reconnects with a back-off: 503 until it has
                while (r := call(who, method, path, body)).status_code == 503 and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert r.status_code == 200, (path, r.text[:300])
            assert call("T1", "POST", "/v1/medical/settle", writes[1][3]).json()["replayed"] is True
        engine.ledger.check_invariants()
    finally:
        store.close()
