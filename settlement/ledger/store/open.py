"""Opening an existing ledger by where it lives, and making a new one only when asked.

    store = open_store(db="var/settlement.db")                # NoLedger if the file is missing or not a ledger
    store = open_store(postgres="host=... dbname=sscard", init=True)   # a new ledger is made if there is none

A mistyped path must not become a new, empty ledger that an operator command then reports on ("clean") or
posts into: without `init`, a SQLite file that does not exist, a file without the ledger's tables, a
PostgreSQL server that cannot be reached and a database (or schema, by its search_path) without the ledger's
tables are all `NoLedger`, and nothing is created.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from settlement.errors import NoLedger
from settlement.ledger.store.base import Store

LEDGER_TABLE = "ledger_postings"
"""The table whose presence says "a ledger lives here"."""


def open_store(*, db: str | Path | None = None, postgres: str | None = None, init: bool = False) -> Store:
    """The store at `db` (an SQLite file) or `postgres` (a DSN): exactly one of them. Without `init` the ledger
    must exist already (NoLedger otherwise, nothing created); with it, a missing one is made."""
    if (db is None) == (postgres is None):
        raise ValueError("give exactly one of db (an SQLite file) or postgres (a DSN)")
    if db is not None:
        return _sqlite(Path(db), init)
    return _postgres(str(postgres), init)


def _sqlite(path: Path, init: bool) -> Store:
    from settlement.ledger.store.sqlite import SqliteStore

    if not init:
        if not path.is_file():
            raise NoLedger(f"no ledger at {path}: the file does not exist", path=str(path))
        try:  # read-only, so that a file that is not a database is left as it is
            conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
            try:
                found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                     (LEDGER_TABLE,)).fetchone()
            finally:
                conn.close()
        except sqlite3.Error as e:
            raise NoLedger(f"no ledger at {path}: {e}", path=str(path)) from None
        if found is None:
            raise NoLedger(f"no ledger at {path}: the file holds no sscard ledger", path=str(path))
    return SqliteStore(path)


def _postgres(dsn: str, init: bool) -> Store:
    import psycopg

    from settlement.ledger.store.postgres import PostgresStore

    try:  # (the DSN may hold a password: it is never part of a message)
        with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
            found = conn.execute("SELECT to_regclass(%s)", (LEDGER_TABLE,)).fetchone()
    except psycopg.Error as e:
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise NoLedger(f"cannot reach the PostgreSQL ledger: {reason}") from None
    if not init and (found is None or found[0] is None):
        raise NoLedger("no ledger in that PostgreSQL database (no sscard tables on its search_path)")
    return PostgresStore(dsn)
