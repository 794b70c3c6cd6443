"""Group commit's batches, on both stores: grouped by handler, run again whole after a retryable failure (a
real deadlock between two PostgreSQL stores included), answered to asyncio callers, and the ledger's deferred
increments (hot accounts written once, just before COMMIT; dropped with a savepoint rolled back)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from settlement import errors
from settlement.ledger import AccountKind, Ledger, Retry, Store, Transfer, Tx
from settlement.ledger.store.batching import GroupCommitStore, Request

DDL = ["CREATE TABLE IF NOT EXISTS t_items (name TEXT PRIMARY KEY, qty BIGINT NOT NULL)"]


@pytest.fixture
def items(store: Store) -> Store:
    store.ensure_schema(DDL)
    return store


def insert(tx: Tx, names: list[Any]) -> list[Any]:
    for n in names:
        tx.execute("INSERT INTO t_items (name, qty) VALUES (?, 1)", (n,))
    return [n.upper() for n in names]


def run_as_one_batch(store: Store, reqs: list[Request]) -> None:
    """Hand `reqs` to the writer's batch machinery as one batch (deterministic: no race with the queue)."""
    assert isinstance(store, GroupCommitStore)
    with store._wlock:
        assert store._run_batch(reqs)


def names(store: Store) -> list[str]:
    return [n for (n,) in store.read(lambda tx: tx.rows("SELECT name FROM t_items ORDER BY name"))]


def test_a_batch_groups_requests_by_handler(items: Store) -> None:
    calls: list[tuple[str, list[Any]]] = []

    def h1(tx: Tx, xs: list[Any]) -> list[Any]:
        calls.append(("h1", xs))
        return insert(tx, xs)

    def h2(tx: Tx, xs: list[Any]) -> list[Any]:
        calls.append(("h2", xs))
        return insert(tx, xs)

    reqs = [Request(None, h1, "a"), Request(None, h2, "b"), Request(lambda tx: insert(tx, ["c"])),
            Request(None, h1, "d"), Request(None, h2, "e")]
    run_as_one_batch(items, reqs)
    assert calls == [("h1", ["a", "d"]), ("h2", ["b", "e"])]  # interleaved arrivals, one call per handler
    assert [r.result for r in reqs] == ["A", "B", ["C"], "D", "E"]
    assert names(items) == ["a", "b", "c", "d", "e"]


def test_retry_runs_the_whole_batch_again(items: Store) -> None:
    attempts: list[int] = []

    def racy(tx: Tx, xs: list[Any]) -> list[Any]:
        attempts.append(len(xs))
        out = insert(tx, xs)
        if len(attempts) == 1:
            raise Retry("another process claimed a key meanwhile")
        return out

    unit_runs: list[int] = []

    def unit(tx: Tx) -> str:
        unit_runs.append(1)
        return insert(tx, ["u"])[0]

    reqs = [Request(unit), Request(None, racy, "x"), Request(None, racy, "y")]
    run_as_one_batch(items, reqs)
    assert attempts == [2, 2] and len(unit_runs) == 2  # everything ran again, nothing one by one
    assert [r.result for r in reqs] == ["U", "X", "Y"] and names(items) == ["u", "x", "y"]
    assert isinstance(items, GroupCommitStore) and items.batches_retried == 1


def test_a_batch_that_keeps_losing_fails_whole_and_keeps_nothing(items: Store) -> None:
    def never(tx: Tx, xs: list[Any]) -> list[Any]:
        insert(tx, xs)
        raise Retry("always")

    reqs = [Request(lambda tx: insert(tx, ["u"])), Request(None, never, "x")]
    assert isinstance(items, GroupCommitStore)
    with items._wlock:
        assert not items._run_batch(reqs)
    assert all(isinstance(r.error, errors.StoreUnavailable) for r in reqs)
    assert names(items) == []


def test_submit_answers_asyncio_callers(items: Store) -> None:
    def h(tx: Tx, xs: list[Any]) -> list[Any]:
        return [errors.InvalidRequest("bad") if x.startswith("bad") else insert(tx, [x])[0] for x in xs]

    async def main() -> list[Any]:
        futs = [items.submit(h, f"n{i}") for i in range(20)] + [items.submit(h, "bad")]
        return await asyncio.gather(*futs, return_exceptions=True)

    out = asyncio.run(main())
    assert out[:20] == [f"N{i}" for i in range(20)]
    assert isinstance(out[20], errors.InvalidRequest)
    assert len(names(items)) == 20
    items.close()

    async def late() -> None:
        items.submit(h, "x")

    with pytest.raises(errors.StoreUnavailable):
        asyncio.run(late())


def test_hot_accounts_are_incremented_once_before_commit(store: Store) -> None:
    ledger = Ledger(store)
    for code, kind in [("EXT", AccountKind.EXTERNAL), ("POOL", AccountKind.POOLED_FUND),
                       ("HOSP", AccountKind.HOSPITAL_PAYABLE), ("PA", AccountKind.PERSONAL_ACCOUNT)]:
        ledger.open_account(code, kind)
    ledger.post("fund", "allocation", [Transfer("EXT", "PA", 500)])
    with ledger.transaction() as tx:
        ledger.post("k1", "medical", [Transfer("POOL", "HOSP", 100), Transfer("PA", "HOSP", 50)])
        raw = ledger.store.read(lambda t: dict(t.rows("SELECT code, credits_posted - debits_posted"
                                                      " FROM ledger_accounts")))
        assert raw["PA"] == 450 and raw["HOSP"] == 0 and raw["POOL"] == 0  # guarded now, hot ones deferred
        assert ledger.balances(["POOL", "HOSP", "PA"]) == {"POOL": -100, "HOSP": 150, "PA": 450}
        with pytest.raises(errors.InsufficientFunds), ledger.transaction():
            ledger.post("k2", "medical", [Transfer("POOL", "HOSP", 7)])  # kept only if its unit commits
            ledger.post("k3", "medical", [Transfer("PA", "HOSP", 1_000)])
        ledger.post("k4", "medical", [Transfer("POOL", "HOSP", 1)])
        assert tx.deferred(ledger._flush) == {"POOL": [101, 0], "HOSP": [0, 151]}
    assert ledger.balances(["POOL", "HOSP", "PA", "EXT"]) == {"POOL": -101, "HOSP": 151, "PA": 450, "EXT": -500}
    assert ledger.get("k2") is None
    ledger.check_invariants()


@pytest.mark.postgres
def test_a_deadlock_between_two_processes_retries_the_whole_batch(make_store: Callable[[str], Store]) -> None:
    """Two stores (as two service processes) lock two rows in opposite orders inside their batches: PostgreSQL
    kills one transaction as a deadlock; its whole batch (with an innocent request) runs again and both end."""
    from settlement.ledger.store.postgres import PostgresStore

    a = make_store("postgres")
    assert isinstance(a, PostgresStore)
    b = PostgresStore(a.conninfo)
    try:
        a.ensure_schema(["CREATE TABLE IF NOT EXISTS t_rows (id INT PRIMARY KEY, n INT NOT NULL)"])
        a.run(lambda tx: tx.execute("INSERT INTO t_rows VALUES (1, 0), (2, 0)"))
        gate = threading.Barrier(2, timeout=10)

        def crossing(first: int, second: int) -> Callable[[Tx, list[Any]], list[Any]]:
            attempts: list[int] = []

            def h(tx: Tx, xs: list[Any]) -> list[Any]:
                attempts.append(1)
                tx.execute("UPDATE t_rows SET n = n + 1 WHERE id = ?", (first,))
                if len(attempts) == 1:  # both first attempts hold their first row before either takes its second
                    gate.wait()
                tx.execute("UPDATE t_rows SET n = n + 1 WHERE id = ?", (second,))
                return xs
            return h

        out: dict[str, Any] = {}

        def go(store: PostgresStore, name: str, h: Callable[[Tx, list[Any]], list[Any]]) -> None:
            reqs = [Request(None, h, name), Request(lambda tx: tx.execute("SELECT 1"))]
            with store._wlock:
                out[name] = store._run_batch(reqs)
            out[name + ".result"] = reqs[0].result

        ta = threading.Thread(target=go, args=(a, "a", crossing(1, 2)))
        tb = threading.Thread(target=go, args=(b, "b", crossing(2, 1)))
        ta.start()
        tb.start()
        ta.join(30)
        tb.join(30)
        assert out == {"a": True, "a.result": "a", "b": True, "b.result": "b"}
        assert a.batches_retried + b.batches_retried >= 1  # one of them was the deadlock's victim
        assert dict(a.read(lambda tx: tx.rows("SELECT id, n FROM t_rows"))) == {1: 2, 2: 2}
    finally:
        b.close()
