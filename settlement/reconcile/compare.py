"""The comparison of one business day, as SQL inside the store (settlement/reconcile/sql.py), assembled into a
Report: differences by key, totals per terminal, statement differences."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from settlement.ledger import Tx
from settlement.reconcile import sql as q
from settlement.reconcile.report import (
    AccountTotals,
    Difference,
    Report,
    StatementDifference,
    TerminalTotals,
    Totals,
)
from settlement.wire import AMOUNTS


@dataclass
class _Side:
    """What one side's queries found: differences, totals per terminal, timings, and the state they saw."""

    state: tuple[Any, ...]
    diffs: list[Difference] = field(default_factory=list)
    journal_totals: dict[str, Totals] = field(default_factory=dict)
    centre_totals: dict[str, Totals] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    postings: dict[str, int] = field(default_factory=dict)
    received: list[str] = field(default_factory=list)
    lines: int = 0
    accepted: set[str] = field(default_factory=set)
    statement: tuple[list[StatementDifference], list[AccountTotals]] = ([], [])
    closed: bool = False


def compare(tx: Tx, day: str, actor: str, link: str) -> Report:
    """Run the day's comparison queries in one read transaction and assemble the Report (run id 0)."""
    return _report(day, actor, _journal_side(tx, day), _centre_side(tx, day, link))


def compare_in(read: Callable[[Callable[[Tx], Any]], Any], day: str, actor: str, link: str, *,
               parallel: bool = True) -> Report:
    """`compare` through `read(fn)` (which runs `fn(tx)` in a read transaction of its own per thread), with
    the journal's queries and the centre's in two read transactions on two threads (SQL runs without the
    GIL, so each side has a core). Both sides note the state they read (how far the ledger is copied, the
    last audited import, repair or acceptance, the journals' receipts); if a write came between them, the
    comparison runs again in one transaction. `parallel=False` runs it in one transaction from the start."""
    if not parallel:
        return read(lambda tx: compare(tx, day, actor, link))
    box: dict[str, Any] = {}

    def journal() -> None:
        try:
            box["j"] = read(lambda tx: _journal_side(tx, day))
        except BaseException as e:  # handed to the caller
            box["error"] = e

    helper = threading.Thread(target=journal, name="recon-compare", daemon=True)
    helper.start()
    try:
        centre = read(lambda tx: _centre_side(tx, day, link))
    finally:
        helper.join()
    if "error" in box:
        raise box["error"]
    if box["j"].state != centre.state:
        return read(lambda tx: compare(tx, day, actor, link))
    return _report(day, actor, box["j"], centre)


def _state(tx: Tx) -> tuple[Any, ...]:
    """What a read transaction sees of the writes that change a comparison (read first: on SQLite this also
    fixes the snapshot of each file the tables live in)."""
    return (tx.value("SELECT seq FROM recon_cursor WHERE name = 'ledger'"),
            tx.value("SELECT MAX(seq) FROM recon_audit"),
            *tx.rows("SELECT COUNT(*), SUM(lines), MAX(imported_at) FROM recon_receipts")[0])


class _Lap:
    def __init__(self, timings: dict[str, float]) -> None:
        self.timings, self.clock = timings, time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self.clock, 4)
        self.clock = now


def _journal_side(tx: Tx, day: str) -> _Side:
    """Pass J (every journal line of the day that is not a void, against the centre) and the centre's totals."""
    side = _Side(_state(tx))
    lap = _Lap(side.timings)
    near, _ = _neighbours(tx, day)
    later: dict[str, list[str]] = {}  # journal lines (by terminal) whose centre posting is filed on another day
    sql = q.pass_j(tx.dialect, day, near)
    for r in tx.rows(sql.text, sql.params):
        if r[0] == "cross_day":
            later.setdefault(r[2], []).append(r[1])
        else:
            side.diffs.append(_difference(day, dict(zip(q.DIFF_COLS, r, strict=True))))
    for terminal, keys in sorted(later.items()):
        for i in range(0, len(keys), 500):
            sql = q.pass_j_by_key(tx.dialect, day, near, terminal, keys[i:i + 500])
            side.diffs.extend(_difference(day, dict(zip(q.DIFF_COLS, r, strict=True)))
                              for r in tx.rows(sql.text, sql.params))
    lap("journal_pass")
    # (the centre's totals here, the journal's on the other side: the two sides then take about as long)
    side.centre_totals = _side_totals(tx, q.CENTRE_TOTALS, day)
    side.postings = {t: int(n) for t, n in tx.rows(q.CENTRE_COUNTS, (day,))}
    lap("centre_totals")
    return side


def _centre_side(tx: Tx, day: str, link: str) -> _Side:
    """Passes C and V (the centre's postings without a line, voids across days), the journal's totals, the
    statement, and what the report needs besides."""
    side = _Side(_state(tx))
    lap = _Lap(side.timings)
    near, back = _neighbours(tx, day)
    for name, sql in q.centre_passes(tx.dialect, day, near, back):
        side.diffs.extend(_difference(day, dict(zip(q.DIFF_COLS, r, strict=True)))
                          for r in tx.rows(sql.text, sql.params))
        lap(name)
    side.diffs = _institutions(tx, side.diffs)
    side.received = sorted(t for (t,) in tx.rows(
        "SELECT terminal_id FROM recon_receipts WHERE business_day = ?", (day,)))
    side.journal_totals = _side_totals(tx, q.JOURNAL_TOTALS, day)
    side.lines = int(tx.value("SELECT COALESCE(SUM(lines), 0) FROM recon_receipts WHERE business_day = ?", (day,)))
    lap("journal_totals")
    side.accepted = {k for (k,) in tx.rows("SELECT key FROM recon_accepted WHERE business_day = ?", (day,))}
    side.statement = _statement(tx, day, side.accepted, link)
    lap("statement")
    side.closed = tx.value("SELECT status FROM recon_days WHERE business_day = ?", (day,)) == "closed"
    return side


def _side_totals(tx: Tx, sql: str, day: str) -> dict[str, Totals]:
    return {r[0]: Totals(*(int(v or 0) for v in r[1:])) for r in tx.rows(sql, (day,) * sql.count("?"))}


def _report(day: str, actor: str, j: _Side, c: _Side) -> Report:
    received = set(c.received)
    zero = Totals()
    jt, ct, postings = {**j.journal_totals, **c.journal_totals}, {**j.centre_totals, **c.centre_totals}, \
        {**j.postings, **c.postings}
    totals = [TerminalTotals(t, jt.get(t, zero), ct.get(t, zero), t in received)
              for t in sorted(set(jt) | set(ct) | set(postings) | received)]
    diffs = j.diffs + c.diffs
    for t in totals:
        if not t.journal_received:
            diffs.append(Difference(day, "journal_missing", "journal_missing", t.terminal_id, t.terminal_id,
                                    "journal", "", "", "absent", f"{postings[t.terminal_id]} postings", None,
                                    None, "manual"))
    diffs = [Difference(**{**d.__dict__, "accepted": d.key in c.accepted}) for d in diffs]
    diffs.sort(key=lambda d: (d.cls, d.terminal_id, d.key))
    st_diffs, st_totals = c.statement
    return Report(day, 0, "", actor, c.received, totals, diffs, st_diffs, st_totals, c.lines,
                  sum(postings.values()), c.closed, {**j.timings, **c.timings})


def _institutions(tx: Tx, diffs: list[Difference]) -> list[Difference]:
    """Fill the institution of centre-only differences from the settlement's result (or its original's)."""
    need = [d.key for d in diffs if not d.institution_id]
    found: dict[str, str] = {}
    for i in range(0, len(need), 500):
        chunk = need[i:i + 500]
        for key, payload, original in tx.rows(
                "SELECT p.key, p.payload, o.payload FROM ledger_postings p LEFT JOIN ledger_postings o"
                f" ON o.key = p.links_to WHERE p.key IN ({','.join('?' * len(chunk))})", chunk):
            for text in (payload, original):
                result = json.loads(text or "{}").get("result", {}) if text else {}
                if isinstance(result, dict) and result.get("institution"):
                    found[key] = str(result["institution"])
                    break
    return [replace(d, institution_id=found.get(d.key, "")) if not d.institution_id else d for d in diffs]

def _difference(day: str, r: dict[str, Any]) -> Difference:
    cls, _, reason = r["code"].partition(":")
    reason = reason if cls == "status_mismatch" else ("kind" if reason == "kind" else cls)
    j = {c: int(r[f"j_{c}"]) for c in AMOUNTS} if r["j_amount"] is not None else None
    c = {k: int(r[f"c_{k}"]) for k in AMOUNTS} if r["c_amount"] is not None else None
    kind = r["kind"]
    if cls == "missing_at_centre":
        repair = "replay"
    elif cls == "missing_at_terminal" or (cls == "status_mismatch" and reason != "reversed_at_centre_only"):
        repair = "void" if kind == "settle" else "manual"
    else:
        repair = "manual"
    return Difference(day, cls, reason, r["key"], r["terminal_id"], kind, r["original_key"] or "",
                      r["institution_id"] or "", r["journal_status"], r["centre_status"], j, c, repair)

def _statement(tx: Tx, day: str, accepted: set[str], link: str
               ) -> tuple[list[StatementDifference], list[AccountTotals]]:
    """The statement lines of the day against the ledger's movements on the same accounts."""
    lines = tx.rows(q.STATEMENT_LINES, (day,))
    if not lines:
        return [], []
    groups: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for account, ref, row_no, net, _src in lines:
        groups.setdefault((account, ref), []).append((int(row_no), int(net)))
    moves: dict[tuple[str, str], int] = {}
    batches: dict[tuple[str, str], list[str]] = {}
    for account, key, net in tx.rows(q.LEDGER_MOVES.format(link=q.STATEMENT_LINK[link]), (day, day)):
        if int(net):
            moves[(account, key)] = int(net)
            batches.setdefault((account, key.split(":", 1)[0]), []).append(key)
    covered: set[tuple[str, str]] = set()
    batch_accounts: set[str] = set()  # accounts whose statement lists batches: compare uncovered by batch too
    out: list[StatementDifference] = []
    for (account, ref), items in sorted(groups.items()):
        rows = tuple(r for r, _ in items)
        st = sum(n for _, n in items)
        keys = [ref] if (account, ref) in moves else batches.get((account, ref), [])
        if ":" not in ref:
            batch_accounts.add(account)
        covered.update((account, k) for k in keys)
        if len(items) > 1:
            out.append(StatementDifference(day, "statement_duplicate", account, ref, st, None, rows))
            continue
        if not keys:
            out.append(StatementDifference(day, "statement_only", account, ref, st, None, rows))
            continue
        lg = sum(moves[(account, k)] for k in keys)
        if lg != st:
            out.append(StatementDifference(day, "statement_amount_mismatch", account, ref, st, lg, rows))
    uncovered: dict[tuple[str, str], int] = {}
    for (account, key), net in sorted(moves.items()):
        if (account, key) not in covered:
            ref = key.split(":", 1)[0] if account in batch_accounts else key
            uncovered[(account, ref)] = uncovered.get((account, ref), 0) + net
    for (account, ref), net in sorted(uncovered.items()):
        if net:  # a batch that nets to nothing moves no money at the bank
            out.append(StatementDifference(day, "ledger_only", account, ref, None, net))
    out = [StatementDifference(**{**s.__dict__, "accepted": s.reference in accepted}) for s in out]
    totals = []
    for account in sorted({a for a, _ in groups}):
        sd = -sum(n for (a, _), it in groups.items() if a == account for _, n in it if n < 0)
        sc = sum(n for (a, _), it in groups.items() if a == account for _, n in it if n > 0)
        ld = -sum(v for (a, _), v in moves.items() if a == account and v < 0)
        lc = sum(v for (a, _), v in moves.items() if a == account and v > 0)
        totals.append(AccountTotals(account, sd, sc, ld, lc))
    return out, totals


def _neighbours(tx: Tx, day: str) -> tuple[list[str], list[str]]:
    """Days with journals next to `day` (one day either side) and in the 31 days before it."""
    d = dt.date.fromisoformat(day)
    lo, hi = (d - dt.timedelta(days=31)).isoformat(), (d + dt.timedelta(days=1)).isoformat()
    days = [x for (x,) in tx.rows("SELECT DISTINCT business_day FROM recon_receipts WHERE business_day >= ?"
                                  " AND business_day <= ? AND business_day <> ?", (lo, hi, day))]
    near = {(d - dt.timedelta(days=1)).isoformat(), hi}
    return sorted(x for x in days if x in near), sorted(days)
