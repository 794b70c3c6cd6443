"""Day-end reconciliation: terminal journals against the ledger, and the ledger against bank or fund
statements (the national platform's 3201 totals and 3202 details, for our own terminals).

    recon = Reconciler(engine)
    recon.register_terminal("T0001", "H110001")
    recon.import_journal(["T0001-2024-03-01.csv"], actor="ops")      # JournalLine files (settlement/wire.py)
    recon.import_statement(["hifp-2024-03-01.csv"], actor="ops")     # statement files (reconcile/statement.py)
    report = recon.reconcile("2024-03-01", actor="ops")              # Report (reconcile/report.py)
    plan = recon.plan_repair("2024-03-01", actor="ops")              # what repair would do: nothing posted
    result = recon.apply_repair(plan, actor="ops")                   # replays and voids, audited
    restore = recon.plan_restore("2024-03-01", ["T0001:000042"])     # a settlement voided by mistake...
    recon.apply_restore("2024-03-01", restore, actor="ops", reason="the full journal proves it")  # ...restored
    recon.accept("2024-03-01", "T0001:000042", actor="ops", note="HIS corrected the bill")
    recon.close_day("2024-03-01", actor="ops")

How it works: journal lines are imported into `recon_journal` (a terminal's day is replaced whole when it
is imported again); the ledger is copied incrementally into `recon_centre` (one row per posting, by ledger
seq); the comparison is SQL (settlement/reconcile/sql.py), the same on SQLite and PostgreSQL. Totals per terminal
and per fund are what is in force at the end of the day on each side; details are by idempotency key, each
difference classified once (settlement/reconcile/report.py lists the classes).

Where the tables live: on PostgreSQL all in the store. On SQLite the journals and the copy of the ledger
(the bulk: a million rows each a day) live in two scratch files beside the ledger's, with writers of their
own and relaxed durability (settlement/reconcile/scratch.py: nothing in them is original, and a lost file is
made again); statements, repairs, runs, acceptances, closed days and the audit trail stay in the store.
An import copies the ledger alongside (SQL without the GIL on one core, the files read in Python on the
other), and a comparison runs its journal side and its centre side on two threads.

Repairs go through the engine's own idempotent paths, never around them: a transaction missing at the
centre is replayed with its original key and request (medical register + settle, refund, pension
collect); a settlement in force at the centre but voided, failed, pending or missing at the terminal is
voided (with the terminal's own void key when its journal has one, else `RECON:V<hash of the key>`); a
settlement voided by mistake is restored by a correcting posting (`RECON:R...`, Medical.restore). Each
repair is written to `recon_repairs` (so its posting counts for the day it repairs) and to the audit
table before it runs, and its outcome after; running a repair again replays instead of posting twice.
Nothing else is ever posted by reconciliation. A closed day refuses imports, runs, repairs and acceptances
(DAY_CLOSED).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from settlement.errors import (
    DayClosed,
    IncompleteJournal,
    InvalidJournalRow,
    InvalidRequest,
    InvalidState,
    NoData,
    RepairThreshold,
)
from settlement.ledger import Tx
from settlement.ledger.store.sqlite import SqliteStore
from settlement.reconcile import imports
from settlement.reconcile import sql as q
from settlement.reconcile.compare import compare_in
from settlement.reconcile.encoding import check_encoding
from settlement.reconcile.imports import ImportResult
from settlement.reconcile.imports import audit as _audit
from settlement.reconcile.imports import check_open as _check_open
from settlement.reconcile.journal import Chunk, Terminals, check_trailer, iter_import
from settlement.reconcile.journal import chunks as journal_chunks
from settlement.reconcile.plan import DEFAULT_THRESHOLD, PlannedRepair, PlannedRestore, RepairPlan, TerminalShare
from settlement.reconcile.repair import RepairAction, Repairs, recon_restore_key
from settlement.reconcile.report import REPAIRABLE, Report
from settlement.reconcile.scratch import Scratch
from settlement.wire import JournalLine, Row, check_day, row_from_json

if TYPE_CHECKING:
    from settlement.schemes.engine import Engine

@dataclass(frozen=True)
class RepairResult:
    """A repair or restore run: the report before, what was done, the report after."""

    before: Report
    actions: list[RepairAction]
    after: Report
    plan: RepairPlan | None = None  # (a repair's; a restore has none)


@dataclass(frozen=True)
class AuditEntry:
    """One row of the reconciliation audit trail (who, when, what key, outcome)."""

    seq: int
    at: str
    actor: str
    business_day: str
    action: str
    key: str
    posting_key: str
    outcome: str
    detail: dict[str, Any] = field(default_factory=dict)


_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
T = TypeVar("T")


def _day(day: str) -> str:
    try:
        return check_day(day)
    except ValueError as e:
        raise InvalidRequest(str(e), field="business_day") from None


class Reconciler:
    """Reconciliation over one engine (its store and ledger; its flows for repairs)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.store = engine.store
        # On SQLite the imported journals and the centre's copy of the ledger live in scratch files beside
        # the ledger's (settlement/reconcile/scratch.py); on PostgreSQL in the store.
        self.scratch = Scratch(self.store.path) if isinstance(self.store, SqliteStore) else None
        self.store.run(self._migrate)
        if self.scratch is not None:
            self._move_to_scratch()
        self.store.ensure_schema(q.schema(self.store.dialect, scratch=self.scratch is not None))
        self.repairs = Repairs(engine, read=self._read)
        self._link: str | None = None

    @staticmethod
    def _migrate(tx: Tx) -> None:
        """Bring reconciliation tables of an earlier layout to the current one (nothing when current)."""
        cols = {c for (c,) in tx.rows(q.TABLE_COLUMNS[tx.dialect], ("recon_journal",))}
        if cols & set(q.JOURNAL_V1_ONLY):
            for sql in q.migrate_journal(tx.dialect):
                tx.execute(sql)

    def _move_to_scratch(self) -> None:
        """An earlier version kept journals (and the copy of the ledger) in a SQLite store: move the journals
        to the scratch file, drop the copy (it is made again from the ledger), then drop them from the store."""
        assert self.scratch is not None
        there = {t for t in q.SCRATCH_TABLES
                 if self.store.read(lambda tx, t=t: tx.rows(q.TABLE_COLUMNS[tx.dialect], (t,)))}
        if not there:
            return

        def move(tx: Tx) -> None:
            for table, cols in (("recon_journal", (*q.JOURNAL_COLS, "copies")), ("recon_receipts", q.RECEIPT_COLS)):
                if table in there:
                    names = ", ".join(cols)
                    tx.execute(f"DELETE FROM main.{table}")
                    tx.execute(f"INSERT INTO main.{table} ({names}) SELECT {names} FROM ledger.{table}")

        self.scratch.write_journal(move)

        def drop(tx: Tx) -> None:
            for table in there:
                tx.execute(f"DROP TABLE IF EXISTS {table}")

        self.store.run(drop)

    def _centre_run(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn(tx)` as a unit where recon_centre is written (the scratch file, or the store)."""
        return self.scratch.write_centre(fn) if self.scratch is not None else self.store.run(fn)

    def _read(self, fn: Callable[[Tx], T]) -> T:
        """Run read-only `fn(tx)` where both the store's and the centre's reconciliation tables are seen."""
        return self.scratch.read(fn) if self.scratch is not None else self.store.read(fn)

    def close(self) -> None:
        """Close the scratch files' connections (the store is the caller's to close)."""
        if self.scratch is not None:
            self.scratch.close()

    # -- terminals --------------------------------------------------------------------------------------------
    def register_terminal(self, terminal_id: str, institution_id: str | None = None) -> None:
        """Allow `terminal_id`'s journals (idempotent; a new institution replaces the old)."""
        self.register_terminals([(terminal_id, institution_id)])

    def register_terminals(self, terminals: Iterable[tuple[str, str | None]]) -> int:
        """Register (terminal id, institution or None) pairs; returns how many."""
        items = list(terminals)
        for tid, inst in items:
            if type(tid) is not str or not _ID.fullmatch(tid):
                raise InvalidRequest(f"terminal id must be 1-64 letters, digits, '_', '.' or '-': {tid!r}")
            if inst is not None and (type(inst) is not str or not inst.strip()):
                raise InvalidRequest(f"terminal {tid}: institution must be a non-empty text or None")
        at = self.engine.stamp()

        def unit(tx: Tx) -> int:
            tx.executemany(
                "INSERT INTO recon_terminals (terminal_id, institution_id, registered_at) VALUES (?, ?, ?)"
                " ON CONFLICT (terminal_id) DO UPDATE SET institution_id = excluded.institution_id",
                [(t, i, at) for t, i in items])
            return len(items)

        return self.store.run(unit)

    def terminals(self) -> dict[str, str | None]:
        """Registered terminals and their institutions."""
        rows = self.store.read(lambda tx: tx.rows("SELECT terminal_id, institution_id FROM recon_terminals"))
        return dict(rows)  # type: ignore[arg-type]

    # -- imports ----------------------------------------------------------------------------------------------
    def import_journal(self, paths: Sequence[str | Path], *, actor: str,
                       progress: Callable[[int], None] | None = None, encoding: str = "utf-8") -> ImportResult:
        """Import journal files (CSV, or JSON lines by extension) in one unit: all rows or none. `encoding` is
        the files' text encoding (settlement/reconcile/encoding.py: UTF-8, GBK or GB 18030).

        Each (business day, terminal) found in the files replaces what was imported for it before.
        `progress(n)` is called as rows are stored (from the thread storing them). On SQLite the ledger is
        copied (`sync`) alongside, so a reconciliation that follows has nothing left to copy."""
        if not paths:
            raise InvalidRequest("give at least one journal file")
        in_python = self.store.dialect != "sqlite"  # SQLite checks the request JSON in bulk, in SQL
        encoding = check_encoding(encoding)

        complete = [check_trailer(p, encoding) is not None for p in paths]

        def chunks(terminals: Terminals) -> Iterator[Chunk]:
            for i, p in enumerate(paths):
                yield from iter_import(p, terminals, check_request=in_python, file_index=i, encoding=encoding)

        if self.scratch is None:
            return imports.import_rows(self.store, self.engine.stamp(), chunks, actor=actor,
                                       sources=[Path(p).name for p in paths], complete=complete, progress=progress)
        # The ledger is copied into its scratch file (SQL, on a connection of its own, without the GIL) while
        # the files are read, checked and stored in theirs (Python, then SQL): each has a core.
        copier = imports.Background(self.sync)
        try:
            return imports.import_rows(self.store, self.engine.stamp(), chunks, actor=actor,
                                       sources=[Path(p).name for p in paths], complete=complete,
                                       progress=progress, run=self.scratch.write_journal)
        finally:
            copier.join()

    def import_lines(self, lines: Iterable[JournalLine], *, actor: str, source: str = "lines") -> ImportResult:
        """Import JournalLine objects (e.g. straight from a terminal journal export) in one unit. They are whole
        by construction (no file to be cut short): recorded complete, as a file with its trailer."""
        items = list(lines)

        def numbered() -> Iterator[tuple[int, Row]]:
            for n, ln in enumerate(items, 1):
                if not isinstance(ln, JournalLine):
                    raise InvalidJournalRow(f"{source} row {n}: not a JournalLine", file=source, row=n)
                yield n, row_from_json(ln.to_dict())

        return imports.import_rows(self.store, self.engine.stamp(), lambda t: journal_chunks(numbered(), source, t),
                                   actor=actor, sources=[source], complete=[True],
                                   run=self.scratch.write_journal if self.scratch is not None else None)

    def import_statement(self, paths: Sequence[str | Path], *, actor: str, encoding: str = "utf-8") -> int:
        """Import bank or fund statement files (reconcile/statement.py) in one unit; returns the lines read."""
        return imports.import_statement(self.store, self.engine.stamp(), paths, actor=actor,
                                        encoding=check_encoding(encoding))

    def sync(self, progress: Callable[[int], None] | None = None) -> int:
        """Copy ledger postings not yet copied into the reconciliation tables; returns how many.

        Incremental (by ledger seq) and cheap when run often: a day-end run copies only what is new."""
        return imports.sync(self._centre_run, self.store.dialect, self._links(), progress)

    def _links(self) -> str:
        if self._link is None:
            self._link = imports.transfer_link(self.store)
        return self._link

    # -- reconciliation ---------------------------------------------------------------------------------------
    def reconcile(self, day: str, *, actor: str = "operator") -> Report:
        """Reconcile business day `day` (YYYY-MM-DD) and record the run; returns its Report."""
        day = _day(day)
        self._require_open(day)
        self.sync()
        link = self._links()
        report = compare_in(self._read, day, actor, link, parallel=self.store.current() is None)
        at = self.engine.stamp()

        def unit(tx: Tx) -> Report:
            _check_open(tx, day)
            tx.execute("INSERT INTO recon_days (business_day, status) VALUES (?, 'open')"
                       " ON CONFLICT (business_day) DO NOTHING", (day,))
            run_id = tx.value("INSERT INTO recon_runs (business_day, at, actor, open_differences, report)"
                              " VALUES (?, ?, ?, ?, '{}') RETURNING run_id",
                              (day, at, actor, len(report.open_differences)))
            report.run_id, report.at = int(run_id), at
            tx.execute("UPDATE recon_runs SET report = ? WHERE run_id = ?",
                       (json.dumps(report.to_dict(), ensure_ascii=False), run_id))
            _audit(tx, at, actor, day, "reconcile", "", "", "clean" if report.clean else "differences",
                   {"run_id": report.run_id, "counts": {k: v for k, v in report.counts().items() if v}})
            return report

        return self.store.run(unit)

    def report(self, day: str) -> Report | None:
        """The last recorded run of `day`, or None."""
        day = _day(day)
        text = self.store.read(lambda tx: tx.value(
            "SELECT report FROM recon_runs WHERE business_day = ? ORDER BY run_id DESC LIMIT 1", (day,)))
        if text is None:
            return None
        report = Report.from_dict(json.loads(text))
        report.closed = self.is_closed(day)
        return report

    # -- repairs ----------------------------------------------------------------------------------------------
    def plan_repair(self, day: str, *, actor: str, keys: Iterable[str] | None = None,
                    threshold: float = DEFAULT_THRESHOLD) -> RepairPlan:
        """Reconcile, and plan the repair of every repairable open difference (or only those of `keys`):
        nothing is posted. The plan names each key, action, posting key and amount, and each terminal's
        share of its day the voids would take back (settlement/reconcile/plan.py)."""
        if not actor:
            raise InvalidRequest("a repair needs an actor (who is repairing)")
        if not 0 <= threshold <= 1:
            raise InvalidRequest(f"the threshold is a share between 0 and 1, not {threshold}", field="threshold")
        before = self.reconcile(day, actor=actor)
        day = before.business_day
        wanted = set(keys) if keys is not None else None
        items = []
        for d in before.open_differences:
            if d.repair in REPAIRABLE and (wanted is None or d.key in wanted):
                side = (d.journal if d.repair == "replay" else d.centre) or {}
                items.append(PlannedRepair(d, self.repairs.posting_key(day, d), int(side.get("amount", 0))))
        touched = sorted({i.diff.terminal_id for i in items})

        def state(tx: Tx) -> tuple[dict[str, tuple[int, int]], set[str]]:
            marks = ", ".join("?" * len(touched))
            days = {t: (int(n), int(a or 0)) for t, n, a in tx.rows(
                "SELECT terminal_id, COUNT(*), SUM(amount) FROM recon_centre WHERE business_day = ? AND kind IN"
                f" ('settle', 'pension_collect') AND terminal_id IN ({marks}) GROUP BY terminal_id", (day, *touched))}
            whole = {t for (t,) in tx.rows(f"SELECT terminal_id FROM recon_trailers WHERE business_day = ? AND"
                                           f" complete = 1 AND terminal_id IN ({marks})", (day, *touched))}
            return days, whole

        days, whole = self._read(state) if touched else ({}, set())
        shares = []
        for t in touched:
            voids = [i for i in items if i.diff.terminal_id == t and i.action == "void"]
            n, amount = days.get(t, (0, 0))
            shares.append(TerminalShare(t, len(voids), n, sum(i.amount for i in voids), amount))
        return RepairPlan(day, before, items, shares, threshold, [t for t in touched if t not in whole])

    def apply_repair(self, plan: RepairPlan, *, actor: str, force_reason: str | None = None) -> RepairResult:
        """Run a plan's repairs, then reconcile again. Refuses (nothing posted) a plan touching a terminal whose
        journal has no complete trailer (IncompleteJournal), and one voiding more than its threshold of a
        terminal's day (RepairThreshold) unless `force_reason` says why (audited with the shares)."""
        if not actor:
            raise InvalidRequest("a repair needs an actor (who is repairing)")
        day = plan.business_day
        if plan.incomplete:
            raise IncompleteJournal(
                f"business day {day}: the journal of terminal(s) {', '.join(plan.incomplete)} has no complete "
                "trailer (cut short, or exported without one): repair refused; import the whole export "
                "(sscard terminal export) and run again", business_day=day, terminals=plan.incomplete)
        over = plan.over
        if over and not (force_reason and force_reason.strip()):
            worst = max(over, key=lambda s: s.share)
            raise RepairThreshold(
                f"business day {day}: repair would void {worst.voids} of {worst.settlements} settlements "
                f"({worst.share:.0%}) of terminal {worst.terminal_id}, more than the {plan.threshold:.0%} allowed"
                f"{f' (and {len(over) - 1} other terminal(s))' if len(over) > 1 else ''}: nothing changed; check "
                "the journals, or force it with a reason", business_day=day,
                terminals={s.terminal_id: round(s.share, 4) for s in over}, threshold=plan.threshold)
        if over:
            at = self.engine.stamp()
            self.store.run(lambda tx: _audit(tx, at, actor, day, "force_threshold", "", "", "forced", {
                "reason": force_reason, "threshold": plan.threshold,
                "terminals": {s.terminal_id: {"voids": s.voids, "settlements": s.settlements,
                                              "void_amount": s.void_amount, "day_amount": s.day_amount}
                              for s in over}}))
        actions = [self.repairs.repair_one(day, i.diff, actor) for i in plan.items]
        return RepairResult(plan.before, actions, self.reconcile(day, actor=actor), plan)

    def plan_restore(self, day: str, setl_ids: Iterable[str]) -> list[PlannedRestore]:
        """What restoring settlements `setl_ids` (voided by mistake) would do: nothing is posted. Refuses
        (INVALID_STATE, UNKNOWN_TRANSACTION) a settlement that is not voided, or whose void kept no record of
        what it held."""
        day = _day(day)
        self._require_open(day)
        out = []
        for setl_id in dict.fromkeys(setl_ids):
            s = self.engine.medical.settlement(setl_id)
            void = self.engine.ledger.get(s.void_key) if s.status == "voided" and s.void_key else None
            held = (void.payload.get("remaining") or {}) if void is not None else {}
            if void is None or "bill" not in held:
                state = {"settled": "in force", "void_before_arrival": "a tombstone (it never arrived)"}
                raise InvalidState(f"settlement {setl_id} is {state.get(s.status, s.status)}" + (
                    "" if void is None else f", and its void {s.void_key} kept no record of what it held") +
                    ": nothing to restore", key=setl_id, status=s.status)
            out.append(PlannedRestore(setl_id, void.key, recon_restore_key(setl_id, void.key), int(held["bill"]),
                                      s.person_id or "", s.institution or ""))
        return out

    def apply_restore(self, day: str, plan: Sequence[PlannedRestore], *, actor: str, reason: str) -> RepairResult:
        """Restore the planned settlements by correcting postings (counted for `day`), audited with `actor`
        and `reason`, then reconcile again."""
        if not actor or not reason or not reason.strip():
            raise InvalidRequest("a restore needs an actor and a reason (both audited)")
        before = self.reconcile(day, actor=actor)
        actions = [self.repairs.restore_one(before.business_day, p.setl_id, p.restore_key, actor, reason)
                   for p in plan]
        after = self.reconcile(day, actor=actor)
        return RepairResult(before, actions, after)

    def repair(self, day: str, *, actor: str, keys: Iterable[str] | None = None,
               threshold: float = DEFAULT_THRESHOLD, force_reason: str | None = None) -> RepairResult:
        """`plan_repair`, then `apply_repair` of that plan."""
        plan = self.plan_repair(day, actor=actor, keys=keys, threshold=threshold)
        return self.apply_repair(plan, actor=actor, force_reason=force_reason)

    # -- acceptance and closing -------------------------------------------------------------------------------
    def accept(self, day: str, key: str, *, actor: str, note: str) -> None:
        """Accept the difference(s) on `key` (or statement reference) for `day`, with a reason (audited)."""
        day = _day(day)
        if not actor or not note or not note.strip():
            raise InvalidRequest("accepting a difference needs an actor and a note saying why")
        at = self.engine.stamp()

        def unit(tx: Tx) -> None:
            _check_open(tx, day)
            tx.execute("INSERT INTO recon_accepted (business_day, key, actor, at, note) VALUES (?, ?, ?, ?, ?)"
                       " ON CONFLICT (business_day, key) DO UPDATE SET actor = excluded.actor, at = excluded.at,"
                       " note = excluded.note", (day, key, actor, at, note))
            _audit(tx, at, actor, day, "accept", key, "", "ok", {"note": note})

        self.store.run(unit)

    def close_day(self, day: str, *, actor: str, force: bool = False, note: str = "") -> Report:
        """Reconcile once more and close the day; refuses (INVALID_STATE) while differences are open, and
        (NO_DATA) a day without any data, unless `force` (the count is audited)."""
        if not actor:
            raise InvalidRequest("closing a day needs an actor")
        report = self.reconcile(day, actor=actor)
        if report.empty and not force:
            raise NoData(f"business day {report.business_day} has no data: nothing to close",
                         business_day=report.business_day)
        if not report.clean and not force:
            n = len(report.open_differences) + len(report.open_statement_differences)
            raise InvalidState(f"business day {report.business_day} still has {n} open differences: repair or "
                               "accept them, or close with force", business_day=report.business_day, open=n)
        at = self.engine.stamp()

        def unit(tx: Tx) -> None:
            _check_open(tx, report.business_day)
            tx.execute("UPDATE recon_days SET status = 'closed', closed_at = ?, closed_by = ?, run_id = ?, note = ?"
                       " WHERE business_day = ?", (at, actor, report.run_id, note, report.business_day))
            _audit(tx, at, actor, report.business_day, "close", "", "", "forced" if not report.clean else "ok",
                   {"run_id": report.run_id, "open": len(report.open_differences), "note": note})

        self.store.run(unit)
        report.closed = True
        return report

    def is_closed(self, day: str) -> bool:
        return self.store.read(lambda tx: tx.value(
            "SELECT status FROM recon_days WHERE business_day = ?", (day,))) == "closed"

    def _require_open(self, day: str) -> None:
        if self.is_closed(day):
            raise DayClosed(f"business day {day} is closed", business_day=day)

    def audit(self, day: str) -> list[AuditEntry]:
        """The audit trail of `day`, oldest first."""
        day = _day(day)
        rows = self.store.read(lambda tx: tx.rows(
            "SELECT seq, at, actor, business_day, action, key, posting_key, outcome, detail FROM recon_audit"
            " WHERE business_day = ? ORDER BY seq", (day,)))
        return [AuditEntry(*r[:8], json.loads(r[8])) for r in rows]  # type: ignore[arg-type]
