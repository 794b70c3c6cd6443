"""`sscard centre import KIND FILE`: enrol institutions, persons, PIN references and terminals from CSV or JSON.

    sscard centre import institutions institutions.csv --db centre.db --init          # the plan: nothing changes
    sscard centre import institutions institutions.csv --db centre.db --apply
    sscard centre import persons persons.csv --db centre.db --encoding gbk --apply
    sscard centre import pin-references pins.json --db centre.db --apply
    sscard centre import terminals terminals.csv --db centre.db --keys-file /etc/sscard/terminal-keys.toml --apply

Each row is checked (an error names the file, row and field) and compared with what the centre holds; the
plan (each row: add, same or replace) is shown, and applied only with `--apply`. Importing the same file
again changes nothing. Terminals are registered with their institution (for reconciliation) and, with
`--keys-file`, written to the settlement service's keys file (restart the service to load them). Formats:
settlement/schemes/enrolment.py. Exit status: 0 done (or planned), 2 refused (the typed error is printed).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from sscard.ops_cmd import ACTOR, DB, ENCODING, POLICIES, POSTGRES, _actor, _book, _engine, _fail, console

if TYPE_CHECKING:
    from settlement.schemes.enrolment import EnrolmentPlan, TerminalRow

KIND_HELP = "institutions | persons | pin-references | terminals"


def import_(
    kind: str = typer.Argument(..., metavar="KIND", help=KIND_HELP),
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV with a header, or a JSON array (.json)."),
    db: Path = DB,
    postgres: str = POSTGRES,
    init: bool = typer.Option(False, "--init", help="Create the ledger if it does not exist (a new centre)."),
    apply: bool = typer.Option(False, "--apply", help="Apply the plan shown; without it nothing changes."),
    keys_file: Path = typer.Option(None, "--keys-file", dir_okay=False,
                                   help="terminals: the settlement service's keys file to add them to."),
    policies: Path = POLICIES,
    encoding: str = ENCODING,
    actor: str = ACTOR,
) -> None:
    """Import enrolment data from a file: the plan is shown, and applied with --apply."""
    from settlement.errors import SettlementError
    from settlement.reconcile.encoding import check_encoding
    from settlement.reconcile.reconciler import Reconciler
    from settlement.schemes import enrolment

    who = _actor(actor)
    try:
        items = enrolment.parse(kind, enrolment.read_records(file, check_encoding(encoding)), file.name)
    except SettlementError as e:
        raise _fail(e) from None
    with _engine(db, postgres, _book(policies), init=init) as eng:
        recon = Reconciler(eng) if kind == "terminals" else None
        try:
            plan = enrolment.plan(eng, kind, items, file.name, terminals=recon.terminals() if recon else None)
            new_keys = _keys_plan(keys_file, items, file.name) if keys_file is not None else []
            _show(plan, new_keys, keys_file)
            if not apply:
                console.print("[bold yellow]plan only: nothing was changed[/bold yellow]; run the same command "
                              "with --apply to apply it")
                return
            enrolment.apply(eng, plan, actor=who,
                            register_terminals=recon.register_terminals if recon is not None else None)
            if new_keys and keys_file is not None:
                _append_keys(keys_file, new_keys)
        except SettlementError as e:
            raise _fail(e) from None
        finally:
            if recon is not None:
                recon.close()
    counts = plan.counts()
    console.print(f"[green]imported[/green] {file.name}: {counts['add']} added, {counts['replace']} replaced, "
                  f"{counts['same']} already there" + (f"; {len(new_keys)} keys written to {keys_file} (restart the "
                                                       "settlement service to load them)" if new_keys else ""))


def _show(plan: EnrolmentPlan, new_keys: list[TerminalRow], keys_file: Path | None) -> None:
    counts = plan.counts()
    t = Table(title=f"Import of {plan.kind} from {plan.source}: {counts['add']} to add, {counts['replace']} to "
                    f"replace, {counts['same']} already there")
    for col in ("row", "key", "action", "detail"):
        t.add_column(col, justify="right" if col == "row" else "left", overflow="fold")
    style = {"add": "green", "replace": "yellow", "same": "dim"}
    for r in plan.rows:
        if r.action != "same" or len(plan.rows) <= 20:
            t.add_row(str(r.row), r.key, f"[{style[r.action]}]{r.action}[/{style[r.action]}]", r.detail)
    console.print(t)
    if new_keys:
        console.print(f"keys file {keys_file}: {len(new_keys)} terminal key(s) to add")


def _keys_plan(keys_file: Path, items: list, source: str) -> list[TerminalRow]:  # type: ignore[type-arg]
    """The terminal rows whose keys the keys file lacks; a row contradicting the file is ENROLMENT_CONFLICT."""
    from settlement.api.auth import load_terminal_keys
    from settlement.errors import EnrolmentConflict, InvalidEnrolmentRow

    try:
        have = {k.terminal_id: k for k in load_terminal_keys(keys_file)} if keys_file.exists() else {}
    except (OSError, ValueError, KeyError, tomllib.TOMLDecodeError) as e:
        raise InvalidEnrolmentRow(f"keys file {keys_file}: {e}", file=str(keys_file), row=0) from None
    hashes = {k.key_sha256: k.terminal_id for k in have.values()}
    out = []
    for n, r in items:
        old = have.get(r.terminal_id)
        if old is None:
            other = hashes.get(r.key_sha256)
            if other is not None:
                raise EnrolmentConflict(f"{source} row {n}: {r.terminal_id}: the key is terminal {other}'s; nothing "
                                        "was imported", file=source, row=n, key=r.terminal_id)
            hashes[r.key_sha256] = r.terminal_id
            out.append(r)
        elif (old.key_sha256, old.institution, old.operator) != (r.key_sha256, r.institution, r.operator):
            raise EnrolmentConflict(f"{source} row {n}: {r.terminal_id}: the keys file has it with another key, "
                                    "institution or role; nothing was imported", file=source, row=n, key=r.terminal_id)
    return out


def _append_keys(keys_file: Path, rows: list[TerminalRow]) -> None:
    text = "".join(f'\n[terminal.{r.terminal_id}]\nkey_sha256 = "{r.key_sha256}"\ninstitution = "{r.institution}"\n'
                   f"operator = {'true' if r.operator else 'false'}\n" for r in rows)
    with open(keys_file, "a", encoding="utf-8") as f:
        f.write(text)
