"""Opening the ledger an operator command names (`--db FILE` or `--postgres DSN`): an existing one, or a new one
only with `--init` (settlement/ledger/store/open.py). A mistyped path is an error, never a new empty ledger."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from settlement.ledger import Store

INIT_HINT = "give --init to create a new ledger there"
NO_INIT_HINT = ("check --db / --postgres (a new ledger is made by `sscard settlement serve --init` or "
                "`sscard centre import ... --init`)")


def open_ledger(db: Path | None, postgres: str | None, *, init: bool = False, can_init: bool = False) -> Store:
    """The store of the ledger named by the options; prints `error NO_LEDGER: ...` (with what to do) and exits 2
    when there is none and `init` is not given. `can_init`: the command has an --init option to suggest."""
    from settlement.errors import NoLedger
    from settlement.ledger import open_store

    if (db is None) == (postgres is None):
        raise typer.BadParameter("give exactly one of --db PATH or --postgres DSN")
    try:
        return open_store(db=db, postgres=postgres, init=init)
    except NoLedger as e:
        typer.echo(f"error {e.code}: {e.message}; {INIT_HINT if can_init else NO_INIT_HINT}", err=True)
        raise typer.Exit(2) from None
