"""Operator commands: `sscard reconcile`, `sscard clear`, `sscard load generate`, `sscard load region`.

    sscard load generate --db day.db --out day/ --discrepancy missing_at_centre=2
    sscard load region --postgres 110000=DSN1 --postgres 990100=DSN2 --seed 7 --visits 600
    sscard reconcile --day 2026-03-02 --db day.db --journal day/journal.csv --statement day/statement.csv \\
        --policies day/policies --report-dir day/reports [--repair] [--close]
    sscard reconcile --day 2026-03-02 --db day.db --repair --apply [--threshold 0.2] [--force-threshold REASON]
    sscard reconcile --day 2026-03-02 --db day.db --accept T0001:000042 --note "HIS corrected the bill" --apply
    sscard reconcile --day 2026-03-02 --db day.db --restore T0001:000042 --note "the full journal has it" --apply
    sscard reconcile --day 2026-03-02 --db day.db --close --force --note "bank confirms; see ticket 88" --apply
    sscard clear --period 2026-03 --db day.db --report-dir day/reports

Whatever changes money or the day's record is planned and shown first (rich tables: each settlement to replay
or void, its posting key and amount, the sums, each terminal's share of its day) and applied only with
`--apply`. `reconcile` exits 0 when the day is clean, 1 when differences remain (a plan not applied leaves
them), 2 on bad input or a refusal (the message names the file and row, or the typed error:
INCOMPLETE_JOURNAL, REPAIR_THRESHOLD...). Call `register(app)` to add the commands to a Typer app.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from settlement.reconcile.plan import DEFAULT_THRESHOLD

if TYPE_CHECKING:
    from settlement.ledger import Store
    from settlement.reconcile.report import Report
    from settlement.schemes.engine import Engine
    from settlement.schemes.policy import PolicyBook

console = Console()
load_app = typer.Typer(help="Workload generators: a hospital day and a pension day; a day of several regions.",
                       no_args_is_help=True)

DB = typer.Option(None, "--db", help="SQLite database file (the default store).")
POSTGRES = typer.Option(None, "--postgres", help="PostgreSQL DSN, instead of --db.")
POLICIES = typer.Option(None, "--policies", file_okay=False, exists=True,
                        help="Directory of extra policy TOML files (loaded with the shipped ones), for repairs.")
ACTOR = typer.Option(None, "--actor", help="Who is running this (audited); default: the login name.")
ENCODING = typer.Option("utf-8", "--encoding", help="Text encoding of the journal and statement files: utf-8, gbk or "
                                                     "gb18030.")


def register(app: typer.Typer) -> None:
    """Add `reconcile`, `clear` and `load generate` to `app`."""
    app.command("reconcile")(reconcile)
    app.command("clear")(clear)
    app.add_typer(load_app, name="load")


def _actor(actor: str | None) -> str:
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # pragma: no cover - no login name
        return "operator"


def _book(extra: Path | None) -> PolicyBook:
    from settlement.schemes.policy import POLICY_DIR, PolicyBook, load_policy

    files = sorted(POLICY_DIR.glob("*.toml")) + (sorted(extra.glob("*.toml")) if extra else [])
    return PolicyBook(load_policy(p) for p in files)


@contextmanager
def _engine(db: Path | None, postgres: str | None, policies: PolicyBook,
            clock: Callable[[], dt.datetime] | None = None, *, init: bool = False) -> Iterator[Engine]:
    """An engine over the existing ledger the options name (a new one only with `init`)."""
    from settlement.ledger import utc_now
    from settlement.schemes.engine import Engine
    from sscard.stores import open_ledger

    store: Store = open_ledger(db, postgres, init=init)
    try:
        yield Engine(store, policies=policies, clock=clock or utc_now)
    finally:
        store.close()


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


_HINTS = {
    "UNKNOWN_TERMINAL": "register the centre's terminals with --terminals KEYS_FILE (the settlement service's "
                        "terminal keys file; once is enough, they are remembered)",
}


def _fail(e: Exception) -> typer.Exit:
    code = getattr(e, "code", type(e).__name__)
    hint = _HINTS.get(code)
    console.print(f"[red]error[/red] {code}: {getattr(e, 'message', str(e))}" + (f"; {hint}" if hint else ""))
    return typer.Exit(2)


def _check_day(day: str) -> str:
    from settlement.errors import InvalidRequest
    from settlement.wire import check_day

    try:
        return check_day(day)
    except ValueError as e:
        raise InvalidRequest(str(e), field="business_day") from None


def _yuan(fen: int) -> str:
    from settlement.wire import yuan

    return yuan(fen)


# -- reconcile -------------------------------------------------------------------------------------------------
def reconcile(
    day: str = typer.Option(..., "--day", help="Business day, YYYY-MM-DD."),
    journal: list[Path] = typer.Option(None, "--journal", exists=True, dir_okay=False,
                                       help="Terminal journal file (CSV, or .jsonl); repeat for several."),
    statement: list[Path] = typer.Option(None, "--statement", exists=True, dir_okay=False,
                                         help="Bank or fund statement CSV; repeat for several."),
    db: Path = DB,
    postgres: str = POSTGRES,
    terminals: Path = typer.Option(None, "--terminals", exists=True, dir_okay=False,
                                   help="Terminal keys file (settlement/api/auth.py) to register terminals from."),
    policies: Path = POLICIES,
    repair: bool = typer.Option(False, "--repair", help="Plan the replays and voids repair can do (shown; "
                                                        "applied only with --apply)."),
    accept: list[str] = typer.Option(None, "--accept", metavar="KEY",
                                     help="Accept the difference on KEY (or statement reference) with --note; "
                                          "repeatable; applied only with --apply."),
    restore: list[str] = typer.Option(None, "--restore", metavar="SETL_ID",
                                      help="Restore a settlement voided by mistake (a correcting posting) with "
                                           "--note; repeatable; applied only with --apply."),
    close: bool = typer.Option(False, "--close", help="Close the day if it is clean (with --force: even with "
                                                      "open differences, given --note and --apply)."),
    force: bool = typer.Option(False, "--force", help="With --close: close with open differences (audited)."),
    note: str = typer.Option(None, "--note", help="Why (audited): needed by --accept, --restore and --force."),
    apply: bool = typer.Option(False, "--apply", help="Apply the plan shown (repairs, acceptances, restores, a "
                                                      "forced close); without it nothing changes."),
    threshold: float = typer.Option(DEFAULT_THRESHOLD, "--threshold", min=0.0, max=1.0,
                                    help="Largest share of a terminal's day (by count or amount) a repair may void "
                                         "(more than one settlement)."),
    force_threshold: str = typer.Option(None, "--force-threshold", metavar="REASON",
                                        help="Apply a repair over --threshold; the reason is audited."),
    report_dir: Path = typer.Option(None, "--report-dir", file_okay=False, help="Write CSV and JSON reports here."),
    encoding: str = ENCODING,
    actor: str = ACTOR,
) -> None:
    """Reconcile a business day: terminal journals and statements against the ledger. What changes money
    (--repair, --accept, --restore, --close --force) is planned and shown first, and applied with --apply."""
    from settlement.errors import InvalidRequest, NoData, SettlementError
    from settlement.reconcile.encoding import check_encoding
    from settlement.reconcile.reconciler import Reconciler

    who = _actor(actor)
    try:
        day, encoding = _check_day(day), check_encoding(encoding)
        if (accept or restore or force) and not (note and note.strip()):
            raise InvalidRequest("--accept, --restore and --force need --note saying why (it is audited)",
                                 field="note")
        if force and not close:
            raise InvalidRequest("--force goes with --close", field="force")
    except SettlementError as e:
        raise _fail(e) from None
    with _engine(db, postgres, _book(policies)) as eng:
        recon = Reconciler(eng)
        try:
            with _progress() as prog:
                if terminals is not None:
                    from settlement.api.auth import load_terminal_keys

                    keys = load_terminal_keys(terminals)
                    recon.register_terminals((k.terminal_id, k.institution) for k in keys)
                if journal:
                    task = prog.add_task("importing journals", total=None)
                    res = recon.import_journal(journal, actor=who, progress=lambda n: prog.advance(task, n),
                                               encoding=encoding)
                    prog.update(task, total=res.lines, completed=res.lines)
                if statement:
                    task = prog.add_task("importing statements", total=None)
                    n = recon.import_statement(statement, actor=who, encoding=encoding)
                    prog.update(task, total=n, completed=n)
                task = prog.add_task("copying the ledger", total=None)
                copied = recon.sync(progress=lambda n: prog.advance(task, n))
                prog.update(task, total=copied, completed=copied)
                task = prog.add_task("comparing", total=None)
                report = recon.reconcile(day, actor=who)
                prog.update(task, total=1, completed=1)
            if report.empty:
                raise NoData(f"business day {day} has no journal lines, no centre postings and no statement lines: "
                             "nothing was reconciled (is it the right --day and ledger?)", business_day=day)
            planned = False
            if accept:
                report = _accept(recon, report, accept, note, who, apply)
                planned = planned or not apply
            if restore:
                planned_restores = recon.plan_restore(day, restore)
                _restores(planned_restores, note, apply)
                if apply:
                    done = recon.apply_restore(day, planned_restores, actor=who, reason=note)
                    _repairs(done.actions)
                    report = done.after
                else:
                    planned = True
            if repair:
                plan = recon.plan_repair(day, actor=who, threshold=threshold)
                _plan(plan)
                if apply and plan.items:
                    result = recon.apply_repair(plan, actor=who, force_reason=force_threshold)
                    _repairs(result.actions)
                    report = result.after
                else:
                    report = plan.before
                    planned = planned or bool(plan.items)
            if close and (report.clean or (force and apply)):
                report = recon.close_day(day, actor=who, force=force, note=note or "")
            elif close and force:
                console.print(f"[yellow]plan[/yellow]: close business day {day} with "
                              f"{len(report.open_differences) + len(report.open_statement_differences)} open "
                              "differences (forced, audited with the note)")
                planned = True
            elif close:
                console.print(f"day not closed: {len(report.open_differences) + len(report.open_statement_differences)}"
                              " open differences (repair or --accept them, or --close --force --note ... --apply)")
        except SettlementError as e:
            raise _fail(e) from None
    _summary(report)
    if planned:
        console.print("[bold yellow]plan only: nothing was changed[/bold yellow]; run the same command with --apply "
                      "to apply it")
    if report_dir is not None:
        for p in report.write(report_dir):
            console.print(f"wrote {p}")
    raise typer.Exit(0 if report.clean else 1)


def _accept(recon, report: Report, keys: list[str], note: str, who: str, apply: bool) -> Report:  # type: ignore[no-untyped-def]
    """Show the differences to accept; accept them with `apply`."""
    from settlement.errors import InvalidRequest

    diffs = {d.key: d.message for d in report.open_differences}
    diffs.update({s.reference: s.message for s in report.open_statement_differences})
    unknown = [k for k in keys if k not in diffs]
    if unknown:
        raise InvalidRequest(f"no open difference on {', '.join(unknown)} for {report.business_day}", keys=unknown)
    t = Table(title=f"Accept ({'applying' if apply else 'plan'}): {note}")
    t.add_column("key")
    t.add_column("difference", overflow="fold")
    for k in keys:
        t.add_row(k, diffs[k])
    console.print(t)
    if not apply:
        return report
    for k in keys:
        recon.accept(report.business_day, k, actor=who, note=note)
    return recon.reconcile(report.business_day, actor=who)


def _restores(items: list, note: str, apply: bool) -> None:  # type: ignore[type-arg]
    """The settlements a restore would put back in force, and what they held."""
    t = Table(title=f"Restore ({'applying' if apply else 'plan'}): {note}")
    for col in ("settlement", "voided by", "correcting posting", "person", "institution", "yuan"):
        t.add_column(col, justify="right" if col == "yuan" else "left", overflow="fold")
    for p in items:
        t.add_row(p.setl_id, p.void_key, p.restore_key, p.person_id, p.institution, _yuan(p.amount))
    t.add_section()
    t.add_row(f"{len(items)} to restore", "", "", "", "", _yuan(sum(p.amount for p in items)))
    console.print(t)


def _plan(plan) -> None:  # type: ignore[no-untyped-def]
    """The repair plan: each repair and its money, the sums, and each terminal's share of its day."""
    if not plan.items:
        console.print("repair: nothing to repair")
        return
    t = Table(title=f"Repair plan for {plan.business_day}")
    for col in ("key", "terminal", "difference", "action", "posting key", "yuan"):
        t.add_column(col, justify="right" if col == "yuan" else "left", overflow="fold")
    for i in plan.items:
        style = "red" if i.action == "void" else "green"
        t.add_row(i.diff.key, i.diff.terminal_id, i.diff.cls, f"[{style}]{i.action}[/{style}]", i.posting_key,
                  _yuan(i.amount))
    t.add_section()
    for action, verb in (("replay", "replay (post)"), ("void", "void (take back)")):
        if plan.count(action):
            t.add_row("", "", f"{plan.count(action)} to {verb}", action, "", _yuan(plan.total(action)))
    console.print(t)
    s = Table(title=f"Share of each terminal's day voided (threshold {plan.threshold:.0%})")
    for col in ("terminal", "voids", "settlements", "void yuan", "day yuan", "share"):
        s.add_column(col, justify="left" if col == "terminal" else "right")
    for sh in plan.shares:
        share = f"{sh.share:.0%}"
        s.add_row(sh.terminal_id, str(sh.voids), str(sh.settlements), _yuan(sh.void_amount), _yuan(sh.day_amount),
                  f"[red]{share} over[/red]" if sh in plan.over else share)
    console.print(s)
    if plan.incomplete:
        console.print(f"[red]journal without a complete trailer[/red]: {', '.join(plan.incomplete)} (repair refuses "
                      "it: import the whole export)")


def _repairs(actions: list) -> None:  # type: ignore[type-arg]
    t = Table(title="Repairs applied")
    for col in ("key", "action", "posting key", "outcome", "detail"):
        t.add_column(col)
    for a in actions:
        style = "red" if a.outcome == "failed" else "green"
        t.add_row(a.key, a.action, a.posting_key, f"[{style}]{a.outcome}[/{style}]", a.detail)
    console.print(t)


def _summary(report: Report) -> None:
    from settlement.reconcile.report import TOTAL_FIELDS

    n_j, n_s = len(report.open_differences), len(report.open_statement_differences)
    state = ("[green]clean[/green]" if report.clean else
             f"[red]{n_j + n_s} open differences[/red] ({n_j} journal, {n_s} statement)")
    console.print(f"business day {report.business_day} (run {report.run_id}): {report.journal_lines:,} journal "
                  f"lines, {report.centre_postings:,} centre postings, {len(report.terminals)} terminals: {state}"
                  + (" [bold]closed[/bold]" if report.closed else ""))
    t = Table(title="Totals in force at day end (yuan)")
    t.add_column("field")
    t.add_column("journals", justify="right")
    t.add_column("centre", justify="right")
    t.add_column("difference", justify="right")
    for f, (j, c) in report.fund_totals().items():
        if f in TOTAL_FIELDS:
            fmt = (lambda v: f"{v:,}") if f == "count" else _yuan
            diff = "" if j == c else f"[red]{fmt(j - c)}[/red]"
            t.add_row(f, fmt(j), fmt(c), diff)
    console.print(t)
    counts = {k: v for k, v in report.counts().items() if v}
    if counts:
        t = Table(title="Open differences by class")
        t.add_column("class")
        t.add_column("count", justify="right")
        for k, v in counts.items():
            t.add_row(k, str(v))
        console.print(t)
        t = Table(title="Differences (first 20)")
        for col in ("class", "key", "terminal", "repair", "what"):
            t.add_column(col, overflow="fold")
        for d in report.open_differences[:20]:
            t.add_row(d.cls, d.key, d.terminal_id, d.repair, d.message)
        for s in report.open_statement_differences[:max(0, 20 - len(report.open_differences))]:
            t.add_row(s.cls, s.reference, s.account, "manual", s.message)
        console.print(t)


# -- clear -----------------------------------------------------------------------------------------------------
def clear(
    period: str = typer.Option(..., "--period", help="YYYY-MM, YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD."),
    db: Path = DB,
    postgres: str = POSTGRES,
    policies: Path = POLICIES,
    report_dir: Path = typer.Option(None, "--report-dir", file_okay=False, help="Write CSV and JSON statements here."),
    actor: str = ACTOR,
) -> None:
    """Clear a period: net what regions owe each other and post the clearing transfers."""
    from settlement.errors import SettlementError
    from settlement.reconcile.clearing import Clearing

    with _engine(db, postgres, _book(policies)) as eng:
        try:
            with _progress() as prog:
                task = prog.add_task(f"clearing {period}", total=1)
                result = Clearing(eng).clear(period, actor=_actor(actor))
                prog.update(task, completed=1)
        except SettlementError as e:
            raise _fail(e) from None
    t = Table(title=f"Clearing {result.period} ({result.start}..{result.end})"
                    + (" - already cleared, nothing changed" if result.replayed else ""))
    for col in ("region", "owes", "is owed", "net position", "posting"):
        t.add_column(col, justify="right" if col in ("owes", "is owed", "net position") else "left")
    for s in result.statements:
        t.add_row(s.region, _yuan(s.total_owes), _yuan(s.total_owed), _yuan(s.net_position), s.posting_key or "")
    console.print(t)
    console.print(f"{result.postings_consumed} postings consumed ({result.late_postings} from earlier days); "
                  f"net positions sum to {_yuan(result.net_sum())}")
    if report_dir is not None:
        for p in result.write(report_dir):
            console.print(f"wrote {p}")


# -- load generate ---------------------------------------------------------------------------------------------
def _counts(items: list[str] | None, what: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items or []:
        name, _, n = item.partition("=")
        try:
            out[name] = int(n or "1")
        except ValueError:
            raise typer.BadParameter(f"{what} must look like CLASS=N, got {item!r}") from None
    return out


@load_app.command("generate")
def generate(
    out: Path = typer.Option(..., "--out", file_okay=False, help="Directory for journal, statement and policies."),
    db: Path = DB,
    postgres: str = POSTGRES,
    seed: int = typer.Option(1, "--seed", help="Same seed and day, same postings, journals and statement."),
    day: str = typer.Option(None, "--day", help="Business day YYYY-MM-DD to simulate (default: today in China)."),
    visits: int = typer.Option(300, "--visits", min=0, help="Hospital visits."),
    collections: int = typer.Option(100, "--collections", min=0, help="Pension collections."),
    persons: int = typer.Option(150, "--persons-per-region", min=10),
    discrepancy: list[str] = typer.Option(None, "--discrepancy",
                                          help="Seed discrepancies in the hospital day, CLASS=N (missing_at_centre,"
                                               " missing_at_terminal, amount_mismatch, status_mismatch, duplicate);"
                                               " repeatable."),
    statement_discrepancy: list[str] = typer.Option(None, "--statement-discrepancy",
                                                    help="Seed statement discrepancies, CLASS=N (statement_only,"
                                                         " ledger_only, statement_amount_mismatch,"
                                                         " statement_duplicate); repeatable."),
) -> None:
    """Drive a hospital day and a pension day through the engine; write the journals and a fund statement."""
    from settlement.errors import SettlementError
    from settlement.ledger import CST
    from settlement.reconcile.reconciler import Reconciler
    from settlement.reconcile.statement import write_statement
    from settlement.wire import write_journal_csv, write_journal_jsonl
    from testing import load

    counts = _counts(discrepancy, "--discrepancy")
    st_counts = _counts(statement_discrepancy, "--statement-discrepancy")
    try:
        when = dt.date.fromisoformat(day) if day else dt.datetime.now(CST).date()
    except ValueError:
        raise typer.BadParameter(f"--day must look like 2024-03-01, got {day!r}") from None
    out.mkdir(parents=True, exist_ok=True)
    pop = load.population(seed, persons_per_region=persons)
    with _engine(db, postgres, load.policy_book(), load.DayClock(when), init=True) as eng:
        recon = Reconciler(eng)
        try:
            with _progress() as prog:
                task = prog.add_task("population", total=len(pop.persons))
                load.install(eng, pop, recon, progress=lambda n: prog.advance(task, n))
                task = prog.add_task("hospital day", total=visits)
                day = load.hospital_day(eng, pop, seed=seed, visits=visits, discrepancies=counts,
                                        progress=lambda n: prog.advance(task, n))
                task = prog.add_task("pension day", total=min(collections, sum(1 for h in pop.persons if h.pension)))
                day.extend(load.pension_day(eng, pop, seed=seed, collections=collections,
                                            progress=lambda n: prog.advance(task, n)))
            accounts = sorted({f"{r}/fund/hifp" for r in load.REGIONS})
            lines, seeded_st = load.fund_statement(eng, day.day, accounts, seed=seed, discrepancies=st_counts)
        except (SettlementError, ValueError) as e:
            raise _fail(e) from None
    write_journal_csv(day.journal, out / "journal.csv")
    write_journal_jsonl(day.journal, out / "journal.jsonl")
    write_statement(lines, out / "statement.csv")
    load.write_policies(out / "policies")
    (out / "seeded.json").write_text(json.dumps({"day": day.day, "seed": seed, "journal": day.seeded,
                                                 "statement": seeded_st, "stats": dict(day.stats)},
                                                ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    console.print(f"business day {day.day}: {len(day.journal):,} journal lines, {len(lines):,} statement lines "
                  f"in {out}; seeded {sum(len(v) for v in day.seeded.values())} journal and "
                  f"{sum(len(v) for v in seeded_st.values())} statement discrepancies")
    console.print(f"next: sscard reconcile --day {day.day} --journal {out / 'journal.csv'} "
                  f"--statement {out / 'statement.csv'} --policies {out / 'policies'} "
                  + (f"--db {db}" if db else "--postgres DSN"))


# -- load region -----------------------------------------------------------------------------------------------
@load_app.command("region")
def region(
    postgres: list[str] = typer.Option(None, "--postgres", metavar="REGION=DSN",
                                       help="A regional centre and its own PostgreSQL database; repeat per region."),
    db_dir: Path = typer.Option(None, "--db-dir", file_okay=False,
                                help="Instead of --postgres: each region's centre on DIR/REGION.db (SQLite)."),
    region_codes: list[str] = typer.Option(None, "--region", help="With --db-dir: a region (repeat; default all "
                                                                   "the generator's regions)."),
    seed: int = typer.Option(1, "--seed", help="Same seed and day, same requests, postings and journals."),
    day: str = typer.Option(None, "--day", help="Business day YYYY-MM-DD to simulate (default: today in China)."),
    visits: int = typer.Option(600, "--visits", min=0, help="Hospital visits over all regions."),
    cross: float = typer.Option(0.10, "--cross-region", min=0.0, max=1.0,
                                help="Share of visits by a person insured in another region (settled there)."),
    persons: int = typer.Option(150, "--persons-per-region", min=10),
    out: Path = typer.Option(None, "--out", file_okay=False,
                             help="Directory for each region's journal and clearing report."),
    actor: str = ACTOR,
) -> None:
    """A day of N regions, each its own settlement centre and database: every region's terminals settle
    their own region's insured at home and, for a person insured elsewhere, at that person's centre (as the
    national platform routes 异地就医); then each centre clears the day, the clearings are netted between
    regions, and each centre reconciles the journal lines it answered. Exits 0 when everything is clean."""
    from contextlib import ExitStack

    from settlement.errors import SettlementError
    from settlement.ledger import CST
    from settlement.wire import write_journal_csv
    from testing import load, regions

    try:
        when = dt.date.fromisoformat(day) if day else dt.datetime.now(CST).date()
    except ValueError:
        raise typer.BadParameter(f"--day must look like 2024-03-01, got {day!r}") from None
    if bool(postgres) == (db_dir is not None):
        raise typer.BadParameter("give --postgres REGION=DSN (repeated) or --db-dir DIR")
    if postgres and region_codes:
        raise typer.BadParameter("--region goes with --db-dir; with --postgres each REGION=DSN names its region")
    dsns: dict[str, str | None] = {}
    for item in postgres or []:
        code, sep, dsn = item.partition("=")
        if not sep or not dsn or code in dsns:
            raise typer.BadParameter(f"--postgres must look like REGION=DSN, once per region, got {item!r}")
        dsns[code] = dsn
    if db_dir is not None:
        dsns = dict.fromkeys(region_codes or load.REGIONS)
    unknown = sorted(set(dsns) - set(load.REGIONS))
    if unknown or len(dsns) < 2:
        raise typer.BadParameter(f"regions must be two or more of {', '.join(load.REGIONS)}; got {sorted(dsns)}")
    who = _actor(actor)
    clock = load.DayClock(when)
    book = load.policy_book()
    pop = load.population(seed, regions=sorted(dsns), persons_per_region=persons)
    with ExitStack() as stack:
        if db_dir is not None:
            db_dir.mkdir(parents=True, exist_ok=True)
        centres = {code: stack.enter_context(_engine(db_dir / f"{code}.db" if db_dir else None, dsn, book, clock,
                                                    init=True))
                   for code, dsn in sorted(dsns.items())}
        country = regions.Country(centres, clock)
        try:
            with console.status("population"):
                regions.install(country, pop)
            with console.status(f"{visits} visits"):
                the_day = regions.region_day(country, pop, seed=seed, visits=visits, cross_region_rate=cross)
            with console.status("clearing and reconciliation"):
                close = regions.close_day(country, pop, the_day, actor=who)
            for engine in centres.values():
                engine.ledger.check_invariants()
        except (SettlementError, ValueError) as e:
            raise _fail(e) from None
    t = Table(title=f"Region day {the_day.day} (seed {seed})")
    for col in ("region", "journal lines", "postings", "reconciled", "net position"):
        t.add_column(col, justify="left" if col in ("region", "reconciled") else "right")
    for code in sorted(centres):
        rep = close.reports[code]
        t.add_row(code, f"{rep.journal_lines:,}", f"{rep.centre_postings:,}",
                  "clean" if rep.clean else f"{len(rep.open_differences)} differences",
                  _yuan(close.national.get(code, 0)))
    console.print(t)
    stats = the_day.stats
    console.print(f"{stats['visits']} visits ({stats['cross_region']} across regions), {stats['settled']} settled, "
                  f"{stats['voided']} voided, {stats['refunded']} refunded, {stats['refused']} refused; "
                  f"net positions between regions sum to {_yuan(sum(close.national.values()))}")
    if out is not None:
        for code in sorted(centres):
            close.clearings[code].write(out / code)
            write_journal_csv(the_day.lines.get(code, []), out / code / "journal.csv")
        console.print(f"journals and clearing reports in {out}")
    console.print("[green]clean[/green]" if close.clean else "[red]not clean[/red]")
    raise typer.Exit(0 if close.clean else 1)
