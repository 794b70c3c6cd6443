"""The ledger stamps postings with the engine's clock, so business days agree across the engine."""

from __future__ import annotations

import datetime as dt

from settlement.ledger import AccountKind, Transfer
from settlement.ledger.store.sqlite import SqliteStore
from settlement.schemes.engine import Engine


def test_postings_carry_the_engine_clock(tmp_path):
    t = dt.datetime(2026, 3, 2, 1, 2, 3, 456789, tzinfo=dt.UTC)
    with SqliteStore(tmp_path / "c.db") as store:
        eng = Engine(store, clock=lambda: t)
        eng.ledger.open_account("A", AccountKind.EXTERNAL)
        eng.ledger.open_account("B", AccountKind.EXTERNAL)
        p = eng.ledger.post("k1", "test", [Transfer("A", "B", 100)])
        assert p.created_at == "2026-03-02T01:02:03.456789+00:00"
        assert eng.ledger.get("k1").created_at == p.created_at
        r = eng.ledger.reverse("r1", "k1")
        assert r.created_at == p.created_at


def test_default_clock_is_the_wall_clock(tmp_path):
    with SqliteStore(tmp_path / "w.db") as store:
        eng = Engine(store)
        eng.ledger.open_account("A", AccountKind.EXTERNAL)
        eng.ledger.open_account("B", AccountKind.EXTERNAL)
        before = dt.datetime.now(dt.UTC)
        p = eng.ledger.post("k1", "test", [Transfer("A", "B", 100)])
        stamped = dt.datetime.fromisoformat(p.created_at)
        assert before <= stamped <= dt.datetime.now(dt.UTC)
