"""The comparison of one business day, as SQL inside the store (settlement/recon_sql.py), assembled into a
Report: differences by key, totals per terminal, statement differences."""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import replace
from typing import Any

from settlement import recon_sql as q
from settlement.recon_journal import AMOUNTS
from settlement.recon_report import (
    AccountTotals,
    Difference,
    Report,
    StatementDifference,
    TerminalTotals,
    Totals,
)
from settlement.store.base import Tx


def compare(tx: Tx, day: str, actor: str, link: str) -> Report:
    """Run the day's comparison queries (in one read transaction) and assemble the Report (run id 0)."""
    diffs: list[Difference] = []
    clock = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 4)
        clock = now

    near, back = _neighbours(tx, day)
    later: list[str] = []  # journal lines whose centre posting is filed under another day
    for name, sql in q.classification(tx.dialect, day, near, back):
        assert sql.text.count("?") == len(sql.params), name
        for r in tx.rows(sql.text, sql.params):
            if r[0] == "cross_day":
                later.append(r[1])
            else:
                diffs.append(_difference(day, dict(zip(q.DIFF_COLS, r, strict=True))))
        lap(name)
    for i in range(0, len(later), 500):
        sql = q.pass_j_by_key(tx.dialect, day, near, later[i:i + 500])
        diffs.extend(_difference(day, dict(zip(q.DIFF_COLS, r, strict=True)))
                     for r in tx.rows(sql.text, sql.params))
    diffs = _institutions(tx, diffs)
    received = sorted(t for (t,) in tx.rows(
        "SELECT terminal_id FROM recon_receipts WHERE business_day = ?", (day,)))
    totals, lines, postings = _totals(tx, day, set(received))
    lap("totals")
    for t in totals:
        if not t.journal_received:
            diffs.append(Difference(day, "journal_missing", "journal_missing", t.terminal_id, t.terminal_id,
                                    "journal", "", "", "absent", f"{postings[t.terminal_id]} postings", None,
                                    None, "manual"))
    accepted = {k for (k,) in tx.rows("SELECT key FROM recon_accepted WHERE business_day = ?", (day,))}
    diffs = [Difference(**{**d.__dict__, "accepted": d.key in accepted}) for d in diffs]
    diffs.sort(key=lambda d: (d.cls, d.terminal_id, d.key))
    st_diffs, st_totals = _statement(tx, day, accepted, link)
    lap("statement")
    closed = tx.value("SELECT status FROM recon_days WHERE business_day = ?", (day,)) == "closed"
    return Report(day, 0, "", actor, received, totals, diffs, st_diffs, st_totals, lines,
                  sum(postings.values()), closed, timings)

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

def _totals(tx: Tx, day: str, received: set[str]) -> tuple[list[TerminalTotals], int, dict[str, int]]:
    """Totals per terminal, the day's journal lines (voids included) and centre postings per terminal."""
    def side(sql: str) -> dict[str, Totals]:
        return {r[0]: Totals(*(int(v or 0) for v in r[1:])) for r in tx.rows(sql, (day,) * sql.count("?"))}

    jt, ct = side(q.JOURNAL_TOTALS), side(q.CENTRE_TOTALS)
    postings = {t: int(n) for t, n in tx.rows(q.CENTRE_COUNTS, (day,))}
    lines = int(tx.value("SELECT COALESCE(SUM(lines), 0) FROM recon_receipts WHERE business_day = ?", (day,)))
    zero = Totals()
    totals = [TerminalTotals(t, jt.get(t, zero), ct.get(t, zero), t in received)
              for t in sorted(set(jt) | set(ct) | set(postings) | received)]
    return totals, lines, postings

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
