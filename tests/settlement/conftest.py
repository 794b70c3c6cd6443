"""Store fixtures for settlement tests: every store-backed test runs on SQLite and on PostgreSQL.

* `postgres` (session, in tests/conftest.py): a throwaway PostgreSQL server.
* `make_store(kind)`: a fresh, empty store ("sqlite": a new file; "postgres": a new schema on the
  session server), closed at teardown. Usable many times per test (Hypothesis examples).
* `store`: one fresh store, parametrized over ["sqlite", "postgres"]; `ledger`: a Ledger on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from settlement.ledger import Ledger, Store
from settlement.ledger.store.sqlite import SqliteStore
from testing.pgtemp import TempCluster

STORE_KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], Store]]:
    """Factory of fresh stores by kind; all closed at teardown."""
    made: list[Store] = []

    def make(kind: str) -> Store:
        store: Store
        if kind == "sqlite":
            store = SqliteStore(tmp_path / f"ledger{len(made)}.db")
        elif kind == "postgres":
            cluster: TempCluster = request.getfixturevalue("postgres")
            store = _pg_store(cluster)
        else:
            raise ValueError(kind)
        made.append(store)
        return store

    yield make
    for s in made:
        s.close()


def _pg_store(cluster: TempCluster) -> Store:
    from settlement.ledger.store.postgres import PostgresStore

    return PostgresStore(cluster.new_schema(), min_size=1, max_size=20)


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(store_kind: str, make_store: Callable[[str], Store]) -> Store:
    """A fresh empty store, once per kind."""
    return make_store(store_kind)


@pytest.fixture
def ledger(store: Store) -> Ledger:
    """A Ledger on a fresh store, once per kind."""
    return Ledger(store)
