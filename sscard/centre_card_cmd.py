"""`sscard centre card ...`: the card registry for operators at the centre or a service hall.

    sscard centre card show B10238475 --db centre.db
    sscard centre card list 110105198001010016 --db centre.db
    sscard centre card report-lost B10238475 --reason "lost on the bus" --db centre.db
    sscard centre card unlock B10238475 --reason "found at home" --db centre.db
    sscard centre card cancel B10238475 --reason "moved abroad" --db centre.db
    sscard centre card issue 110105198001010016 --card-no B10238476 --card-id 110100D1...19 --reason "new card" ...
    sscard centre card replace 110105198001010016 --card-no B10238476 --card-id ... --reason "chip worn" ...
    sscard centre card blacklist --db centre.db

Each command that changes a card plans, shows, then applies: it shows the card(s) now, tries the change
in a transaction it rolls back (a refusal ends the command there, before any question), shows the card(s)
as they would be and what the blacklist gains or loses, and asks before applying it (`--yes` applies
without asking). Every change is audited with the operator (`--actor`, default the login name) and
the reason. Exit status: 0 done, 1 not confirmed, 2 refused (the message names the typed error).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from sscard.ops_cmd import ACTOR, DB, POSTGRES, _actor, _book, _engine, _fail, console

if TYPE_CHECKING:
    from settlement.ledger import Store
    from settlement.wire import Card

app = typer.Typer(help="Cards: issue, report lost, unlock, replace, cancel; status, history, blacklist.",
                  no_args_is_help=True)
REASON = typer.Option(..., "--reason", help="Why (audited with the operator).")
YES = typer.Option(False, "--yes", "-y", help="Apply without asking.")
STATUS_TEXT = {"active": "[green]active[/green]", "reported_lost": "[red]reported lost[/red]",
               "cancelled": "[red]cancelled[/red]", "replaced": "[yellow]replaced[/yellow]",
               "expired": "[yellow]expired[/yellow]"}


def _table(cards: list[Card], title: str) -> Table:
    t = Table(title=title)
    for col in ("card no", "person", "status", "expires", "note", "since"):
        t.add_column(col, overflow="fold")
    for c in cards:
        note = "; ".join(x for x in (f"replaced by {c.replaced_by}" if c.replaced_by else "",
                                     f"{c.application_blocked} blocked" if c.application_blocked else "") if x)
        t.add_row(c.card_no, c.person_id, STATUS_TEXT.get(c.status, c.status), str(c.expires_on or ""), note,
                  c.changed_at[:10])
    return t


def _cards(result: Card | list[Card]) -> list[Card]:
    return result if isinstance(result, list) else [result]


def _blacklist_notes(before: list[Card], after: list[Card]) -> list[str]:
    """What the change does to the blacklist counters fetch: cards that go on it or leave it."""
    from settlement.wire import BLACKLISTED

    was = {c.card_no: c.status in BLACKLISTED for c in before}
    notes = []
    for c in after:
        listed = c.status in BLACKLISTED
        if listed and not was.get(c.card_no, False):
            notes.append(f"{c.card_no} goes on the blacklist: every counter refuses it from its next fetch")
        elif was.get(c.card_no) and not listed:
            notes.append(f"{c.card_no} leaves the blacklist: counters accept it from their next fetch")
    return notes


def _apply(store: Store, title: str, shown: list[Card], yes: bool,
           change: Callable[[], Card | list[Card]]) -> None:
    """Plan, show, then apply: the card(s) as they are; the change tried and rolled back (a refusal ends here,
    before any question), the card(s) as they would be; a question; then the change applied, the card(s) after."""
    from settlement.errors import SettlementError

    if shown:
        console.print(_table(shown, "now"))
    try:
        planned = _cards(store.trial(lambda tx: change()))
    except SettlementError as e:
        raise _fail(e) from None
    console.print(_table(planned, "planned"))
    console.print(f"[bold]{title}[/bold]")
    for note in _blacklist_notes(shown, planned):
        console.print(f"  {note}")
    if not yes and not typer.confirm("apply?", default=False):
        console.print("nothing changed")
        raise typer.Exit(1)
    try:
        after = change()
    except SettlementError as e:  # changed meanwhile by someone else
        raise _fail(e) from None
    console.print(_table(_cards(after), "after"))


def _status_change(verb: str, what: str, doc: str):  # type: ignore[no-untyped-def]
    def command(card_no: str = typer.Argument(..., help="The card number (卡号)."), reason: str = REASON,
                db: Path = DB, postgres: str = POSTGRES, actor: str = ACTOR, yes: bool = YES) -> None:
        from settlement.errors import SettlementError

        with _engine(db, postgres, _book(None)) as eng:
            try:
                card = eng.cards.card(card_no)
            except SettlementError as e:
                raise _fail(e) from None
            _apply(eng.store, f"{what} card {card_no} of {card.person_id}: {reason}", [card], yes,
                   lambda: getattr(eng.cards, verb)(card_no, actor=_actor(actor), reason=reason))

    command.__doc__ = doc
    return command


app.command("report-lost")(_status_change("report_lost", "report lost", "Report a card lost (挂失): every counter "
                                          "refuses it (blacklisted) until it is unlocked."))
app.command("unlock")(_status_change("unlock", "unlock", "Unlock a card reported lost (解挂): it works again."))
app.command("cancel")(_status_change("cancel", "cancel", "Cancel a card for good (注销)."))


def _enrol(replace: bool):  # type: ignore[no-untyped-def]
    def command(
        person_id: str = typer.Argument(..., help="The holder's person id (social security number)."),
        card_no: str = typer.Option(..., "--card-no", help="The new card's number (卡号)."),
        card_id: str = typer.Option(..., "--card-id", help="The new card's identification code (32 hex digits)."),
        spec_version: str = typer.Option(None, "--spec-version", help="e.g. 3.00"),
        region: str = typer.Option(None, "--region", help="Issuing region; default: the first 6 digits of the id."),
        issued_on: dt.datetime = typer.Option(None, "--issued-on", formats=["%Y-%m-%d"]),
        expires_on: dt.datetime = typer.Option(None, "--expires-on", formats=["%Y-%m-%d"]),
        reason: str = REASON, db: Path = DB, postgres: str = POSTGRES, actor: str = ACTOR, yes: bool = YES,
    ) -> None:
        from settlement.errors import SettlementError

        with _engine(db, postgres, _book(None)) as eng:
            try:
                now = [c for c in eng.cards.cards_of(person_id) if c.status in ("active", "expired", "reported_lost")]
            except SettlementError as e:
                raise _fail(e) from None
            verb = "replace the card above with" if replace else "issue"

            def change() -> list[Card]:
                (eng.cards.replace if replace else eng.cards.issue)(
                    person_id, card_no, card_id, actor=_actor(actor), reason=reason, spec_version=spec_version,
                    region=region, issued_on=issued_on.date() if issued_on else None,
                    expires_on=expires_on.date() if expires_on else None)
                return eng.cards.cards_of(person_id)

            _apply(eng.store, f"{verb} card {card_no} ({card_id}) for {person_id}: {reason}", now, yes, change)

    command.__doc__ = ("Replace a person's card (补换卡): the new card becomes active, the old one is blacklisted."
                       if replace else "Enrol a personalised card as a person's card.")
    return command


app.command("issue")(_enrol(False))
app.command("replace")(_enrol(True))


@app.command("show")
def show(card_no: str = typer.Argument(..., help="The card number."), db: Path = DB, postgres: str = POSTGRES) -> None:
    """A card and its history (who did what, and why)."""
    from settlement.errors import SettlementError

    with _engine(db, postgres, _book(None)) as eng:
        try:
            card, history = eng.cards.card(card_no), eng.cards.history(card_no)
        except SettlementError as e:
            raise _fail(e) from None
    console.print(_table([card], f"card {card_no}"))
    console.print(f"identification code {card.card_id or '(not known to the centre)'}, spec {card.spec_version or '?'},"
                  f" issuing region {card.region or '?'}, issued {card.issued_on or '?'}")
    t = Table(title="history")
    for col in ("at", "event", "operator", "reason"):
        t.add_column(col, overflow="fold")
    for e in history:
        t.add_row(e.at[:19], e.event.removeprefix("card_").replace("_", " "), e.actor, str(e.detail.get("reason", "")))
    console.print(t)


@app.command("list")
def list_cards(person_id: str = typer.Argument(..., help="The person id."), db: Path = DB,
               postgres: str = POSTGRES) -> None:
    """A person's cards, the active one first."""
    from settlement.errors import SettlementError

    with _engine(db, postgres, _book(None)) as eng:
        try:
            cards = eng.cards.cards_of(person_id)
        except SettlementError as e:
            raise _fail(e) from None
    console.print(_table(cards, f"cards of {person_id}"))


@app.command("blacklist")
def blacklist(since: int = typer.Option(0, "--since", min=0, help="Changes after this version only."),
              db: Path = DB, postgres: str = POSTGRES) -> None:
    """The blacklist terminals fetch: its version and entries (after `--since`)."""
    with _engine(db, postgres, _book(None)) as eng:
        delta = eng.cards.blacklist(since)
        while delta.more:
            more = eng.cards.blacklist(delta.version)
            delta = more.model_copy(update={"entries": delta.entries + more.entries, "since": since})
    t = Table(title=f"blacklist {delta.epoch} version {delta.version}: {len(delta.entries)} entries after {since}")
    for col in ("card no", "identification code", "status", "blocked app"):
        t.add_column(col, overflow="fold")
    for no, cid, status, app_ in delta.entries:
        t.add_row(no, cid, STATUS_TEXT.get(status, status), app_)
    console.print(t)
