"""The store contract, on both stores: atomic units, savepoints, portable SQL, batching, lifecycle."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from settlement import errors
from settlement.ledger import Store, Tx
from settlement.ledger.store.sqlite import SqliteStore

DDL = ["CREATE TABLE IF NOT EXISTS t_items (name TEXT PRIMARY KEY, qty BIGINT NOT NULL, note TEXT)"]


@pytest.fixture
def items(store: Store) -> Store:
    store.ensure_schema(DDL)
    store.ensure_schema(DDL)  # idempotent
    return store


def count(store: Store) -> int:
    return int(store.read(lambda tx: tx.value("SELECT COUNT(*) FROM t_items")))


def test_run_commits_and_returns(items: Store) -> None:
    def unit(tx: Tx) -> int:
        tx.execute("INSERT INTO t_items (name, qty, note) VALUES (?, ?, ?)", ("a", 1, "100%"))
        return tx.executemany("INSERT INTO t_items (name, qty) VALUES (?, ?)", [("b", 2), ("c", 3)])

    assert items.run(unit) == 2
    assert count(items) == 3
    assert items.read(lambda tx: tx.one("SELECT * FROM t_items WHERE name = ?", ("a",))) == {
        "name": "a",
        "qty": 1,
        "note": "100%",
    }
    assert items.read(lambda tx: tx.rows("SELECT name FROM t_items WHERE note LIKE '100%' ORDER BY name")) == [("a",)]
    assert items.read(lambda tx: tx.query("SELECT name, qty FROM t_items ORDER BY name"))[-1] == {"name": "c", "qty": 3}
    assert items.read(lambda tx: tx.value("SELECT qty FROM t_items WHERE name = ?", ("zz",))) is None


def test_a_failing_unit_leaves_nothing(items: Store) -> None:
    def unit(tx: Tx) -> None:
        tx.execute("INSERT INTO t_items (name, qty) VALUES ('a', 1)")
        raise errors.InvalidState("no")

    with pytest.raises(errors.InvalidState):
        items.run(unit)
    assert count(items) == 0


def test_nested_units_are_savepoints(items: Store) -> None:
    def inner_fails(tx: Tx) -> None:
        tx.execute("INSERT INTO t_items (name, qty) VALUES ('inner', 1)")
        raise errors.InvalidRequest("inner")

    def outer(tx: Tx) -> str:
        tx.execute("INSERT INTO t_items (name, qty) VALUES ('outer', 1)")
        with pytest.raises(errors.InvalidRequest):
            items.run(inner_fails)
        items.run(lambda t: t.execute("INSERT INTO t_items (name, qty) VALUES ('inner2', 1)"))
        assert items.current() is tx
        return "done"

    assert items.run(outer) == "done"
    names = items.read(lambda tx: [r[0] for r in tx.rows("SELECT name FROM t_items ORDER BY name")])
    assert names == ["inner2", "outer"]


def test_a_trial_returns_what_a_unit_would_do_and_keeps_nothing(items: Store) -> None:
    def unit(tx: Tx) -> int:
        tx.execute("INSERT INTO t_items (name, qty) VALUES ('a', 1)")
        items.run(lambda t: t.execute("UPDATE t_items SET qty = qty + 1"))  # nested units are rolled back too
        return int(items.read(lambda t: t.value("SELECT qty FROM t_items WHERE name = 'a'")))

    def refused(tx: Tx) -> None:
        tx.execute("INSERT INTO t_items (name, qty) VALUES ('b', 1)")
        raise errors.InvalidState("no")

    assert items.trial(unit) == 2 and count(items) == 0
    with pytest.raises(errors.InvalidState):  # a refusal is raised as the unit would raise it
        items.trial(refused)
    items.run(lambda tx: (tx.execute("INSERT INTO t_items (name, qty) VALUES ('c', 1)"),
                          items.trial(lambda t: t.execute("DELETE FROM t_items"))))  # inside a unit: a savepoint
    assert count(items) == 1


def test_transaction_block(items: Store) -> None:
    with items.transaction() as tx:
        tx.execute("INSERT INTO t_items (name, qty) VALUES ('a', 1)")
        assert items.read(lambda t: t.value("SELECT COUNT(*) FROM t_items")) == 1  # sees its own write
        with items.transaction() as inner:  # nested: a savepoint of the same transaction
            assert inner is tx
            inner.execute("UPDATE t_items SET qty = qty + 1")
    assert items.read(lambda tx: tx.value("SELECT qty FROM t_items")) == 2
    with pytest.raises(KeyError), items.transaction() as tx:
        tx.execute("DELETE FROM t_items")
        raise KeyError("abort")
    assert count(items) == 1
    assert items.current() is None


def test_upsert_and_for_update_are_portable(items: Store) -> None:
    sql = (
        "INSERT INTO t_items (name, qty) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET qty = t_items.qty + excluded.qty"
    )
    for _ in range(3):
        items.run(lambda tx: tx.execute(sql, ("acc", 5)))

    def bump(tx: Tx) -> int:
        qty = tx.value(f"SELECT qty FROM t_items WHERE name = ?{tx.for_update}", ("acc",))
        tx.execute("UPDATE t_items SET qty = ? WHERE name = ?", (qty + 1, "acc"))
        return int(qty) + 1

    threads = [threading.Thread(target=items.run, args=(bump,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert items.read(lambda tx: tx.value("SELECT qty FROM t_items WHERE name = 'acc'")) == 15 + 8


def test_reads_see_committed_data_only(items: Store) -> None:
    inside = threading.Event()
    release = threading.Event()

    def slow(tx: Tx) -> None:
        tx.execute("INSERT INTO t_items (name, qty) VALUES ('pending', 1)")
        inside.set()
        assert release.wait(10)

    t = threading.Thread(target=items.run, args=(slow,))
    t.start()
    assert inside.wait(10)
    assert count(items) == 0  # another thread does not see the open unit
    release.set()
    t.join()
    assert count(items) == 1


def handler(tx: Tx, names: list[Any]) -> list[Any]:
    out: list[Any] = []
    for name in names:
        if name.startswith("bad"):
            out.append(errors.InvalidRequest(f"bad item {name}"))
            continue
        tx.execute("INSERT INTO t_items (name, qty) VALUES (?, 1)", (name,))
        out.append(name.upper())
    return out


def test_run_batched(items: Store) -> None:
    results: dict[str, Any] = {}
    gate = threading.Barrier(10)

    def go(name: str) -> None:
        gate.wait()
        try:
            results[name] = items.run_batched(handler, name)
        except errors.SettlementError as e:
            results[name] = e

    names = [f"ok{i}" for i in range(7)] + ["bad1", "bad2", "ok7"]
    threads = [threading.Thread(target=go, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n in names:
        if n.startswith("bad"):
            assert isinstance(results[n], errors.InvalidRequest)
        else:
            assert results[n] == n.upper()
    assert count(items) == 8


def test_a_failing_batch_handler_is_retried_one_by_one(make_store: Callable[[str], Store]) -> None:
    store = make_store("sqlite")
    store.ensure_schema(DDL)
    calls: list[int] = []

    def fragile(tx: Tx, names: list[Any]) -> list[Any]:
        calls.append(len(names))
        if len(names) > 1:
            raise RuntimeError("cannot do several")  # e.g. a constraint only one item violates
        return handler(tx, names)

    gate = threading.Barrier(6)
    out: list[Any] = []

    def go(name: str) -> None:
        gate.wait()
        out.append(store.run_batched(fragile, name))

    threads = [threading.Thread(target=go, args=(f"n{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(out) == [f"N{i}" for i in range(6)]
    assert count(store) == 6


def test_closed_store_refuses_work(make_store: Callable[[str], Store], store_kind: str) -> None:
    store = make_store(store_kind)
    store.close()
    store.close()  # idempotent
    with pytest.raises(errors.StoreUnavailable):
        store.run(lambda tx: tx.execute("SELECT 1"))
    with pytest.raises(errors.StoreUnavailable):
        store.read(lambda tx: tx.value("SELECT 1"))


def test_sqlite_survives_reopen(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "s.db") as s:
        s.ensure_schema(DDL)
        s.run(lambda tx: tx.execute("INSERT INTO t_items (name, qty) VALUES ('kept', 1)"))
    with SqliteStore(tmp_path / "s.db", group_commit=False) as s:
        assert s.read(lambda tx: tx.value("SELECT name FROM t_items")) == "kept"
        s.run(lambda tx: tx.execute("UPDATE t_items SET qty = 2"))
        assert s.read(lambda tx: tx.value("SELECT qty FROM t_items")) == 2
    with pytest.raises(ValueError):
        SqliteStore(":memory:")


def _commit_setting(tx: Tx) -> str:
    """How the current transaction will commit: SQLite's synchronous level, PostgreSQL's synchronous_commit."""
    if tx.dialect == "sqlite":
        return {1: "relaxed", 2: "durable"}[tx.value("PRAGMA synchronous")]
    row = tx.one("SELECT setting, source FROM pg_settings WHERE name = 'synchronous_commit'")
    return "relaxed" if row == {"setting": "off", "source": "session"} else "durable"


def test_units_that_need_not_wait_for_the_disk(items: Store) -> None:
    """durable=False relaxes a batch's commit only when no request in it needs the disk; the setting does not
    outlive the batch."""
    assert items.run(_commit_setting, durable=False) == "relaxed"
    assert items.run(_commit_setting) == "durable"
    items.run(lambda tx: tx.execute("INSERT INTO t_items (name, qty) VALUES ('n', 1)"), durable=False)
    assert count(items) == 1

    started, go = threading.Event(), threading.Event()

    def blocker(tx: Tx) -> None:  # holds the writer while the next two requests queue up
        started.set()
        go.wait(10)

    seen: dict[str, str] = {}
    first = threading.Thread(target=items.run, args=(blocker,))
    first.start()
    started.wait(10)
    both = [threading.Thread(target=lambda: seen.__setitem__("relaxed?", items.run(_commit_setting, durable=False))),
            threading.Thread(target=lambda: seen.__setitem__("durable", items.run(_commit_setting)))]
    for t in both:
        t.start()
    while items.backlog() < 2:
        threading.Event().wait(0.001)
    go.set()
    for t in (first, *both):
        t.join(10)
    assert seen == {"relaxed?": "durable", "durable": "durable"}  # one batch: committed durably
    assert items.run(_commit_setting, durable=False) == "relaxed"
