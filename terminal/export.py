"""The journal's business day as day-end reconciliation reads it (settlement.wire's journal-line contract).

One `JournalLine` per money-moving request of the day (settle, refund, void, pension collection), in its
final state. A confirmed settlement carries its breakdown and what the centre needs to replay it (the
registration, the fee lines), so a settlement missing at the centre can be replayed through the idempotent
settle path. Registrations and certifications move no money and are not exported.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from settlement.wire import MONEY_KINDS, PARTS, JournalLine
from terminal.journal import Entry, Journal

_CLASS = {"01": "A", "02": "B", "03": "C"}


def _register_for(entries: list[Entry], mdtrt_id: str) -> Entry | None:
    for e in entries:
        if e.kind == "register" and (e.response or {}).get("mdtrt_id") == mdtrt_id:
            return e
    return None


def _settle_request(e: Entry, register: Entry | None, institution: str) -> dict[str, Any]:
    visit = (register.response or {}) if register else {}
    return {
        "register_key": register.key if register else "",
        "person_id": e.person_id or visit.get("person_id", ""),
        "institution": visit.get("institution", institution),
        "care": visit.get("care", "outpatient"),
        "begntime": visit.get("begntime"),
        "mdtrt_id": e.request["mdtrt_id"],
        "lines": [{"cls": _CLASS.get(x["chrgitm_lv"], x["chrgitm_lv"]), "amount": x["det_item_fee_sumamt"],
                   "over_limit": x.get("overlmt_amt", 0)} for x in e.request["lines"]],
        "use_account": e.request.get("use_account", True),
    }


def _regions(e: Entry, by_key: dict[str, Entry], everything: list[Entry], region: str) -> tuple[str, str]:
    """(insured region, treatment region): from the answer, else the settlement or visit it belongs to,
    else this terminal's own region."""
    seen: Entry | None = e
    for _ in range(3):  # the entry, the settlement it refers to, that settlement's registration
        if seen is None:
            break
        resp = seen.response or {}
        if resp.get("insured_region"):
            return resp["insured_region"], resp.get("treatment_region") or resp.get("collect_region") or region
        if seen.kind == "settle":
            seen = _register_for(everything, seen.request["mdtrt_id"])
        else:
            seen = by_key.get(seen.original_key or "")
    return region, region


def journal_lines(journal: Journal, day: dt.date, institution: str, region: str = "") -> list[JournalLine]:
    """The day's money-moving entries as journal lines (the whole journal is searched for registrations)."""
    everything = journal.all()
    by_key = {e.key: e for e in everything}
    out = []
    for e in everything:
        if e.business_day != day.isoformat() or e.kind not in MONEY_KINDS:
            continue
        resp = e.response or {}
        parts = {p: 0 for p in PARTS}
        amount = e.amount
        request: dict[str, Any] | None = None
        if e.kind == "settle":
            request = _settle_request(e, _register_for(everything, e.request["mdtrt_id"]), institution)
            if e.state == "confirmed":
                parts = {p: resp["breakdown"][p] for p in PARTS}
                amount = resp["breakdown"]["medfee_sumamt"]
        elif e.kind == "refund":
            request = {"setl_id": e.request["setl_id"], "amount": e.request.get("amount")}
            if e.state == "confirmed":
                parts = {p: resp["refund"].get(p, 0) for p in PARTS}
                amount = resp["refund"]["medfee_sumamt"]
        elif e.kind == "pension_collect":
            request = {k: e.request[k] for k in ("person_id", "amount", "institution")}
        if amount == 0 and e.kind != "void":
            continue  # a refund of "all that is left" that never got an answer: nothing known, nothing moved
        insured, treatment = _regions(e, by_key, everything, region)
        out.append(JournalLine(
            terminal_id=journal.terminal_id, business_day=e.business_day, key=e.key, kind=e.kind, status=e.state,
            amount=amount, institution_id=institution, insured_region=insured,
            treatment_region=treatment, at=e.created_at,
            original_key=e.original_key or "", request=request, **parts,
        ))
    return out
