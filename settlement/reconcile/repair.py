"""Repairs of reconciliation differences, through the engine's own idempotent paths only.

A transaction missing at the centre is replayed under its own key with the journal's request (medical
register + settle, refund, pension collect); a settlement in force at the centre but voided, failed,
pending or missing at the terminal is voided: with the terminal's own void key when its journal has one,
else with `RECON:V<hash of the key>`. Before the engine is called, the posting key is written to
`recon_repairs` (so the posting counts for the day it repairs) and the intent to the audit table; the
outcome is audited after. A crash in between is harmless: the next repair finds the difference gone, or
sends the same key again and the engine answers with the first result. A settlement voided by mistake is
restored the same way, under `RECON:R<hash of the settlement and its void>`, with the operator's reason
(Medical.restore).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from settlement.errors import InvalidRequest, SettlementError
from settlement.ledger import Tx
from settlement.reconcile.imports import audit, check_open
from settlement.reconcile.report import Difference
from settlement.wire import FeeLine

if TYPE_CHECKING:
    from settlement.schemes.engine import Engine

RECON_TERMINAL = "RECON"
"""Terminal id of the keys reconciliation itself makes (voids of orphans with no terminal void key)."""


@dataclass(frozen=True)
class RepairAction:
    """One repair attempt: what was done for which difference, and how it ended."""

    key: str
    action: str  # replay | void | restore
    posting_key: str
    outcome: str  # posted | replayed | voided | voided_before_arrival | restored | failed
    detail: str = ""


def recon_void_key(setl_id: str) -> str:
    """The key reconciliation voids an orphan under when the terminal has no void of its own."""
    return f"{RECON_TERMINAL}:V{hashlib.blake2b(setl_id.encode(), digest_size=12).hexdigest()}"


def recon_restore_key(setl_id: str, void_key: str) -> str:
    """The key reconciliation restores settlement `setl_id`, voided by `void_key`, under."""
    return f"{RECON_TERMINAL}:R{hashlib.blake2b(f'{setl_id}|{void_key}'.encode(), digest_size=12).hexdigest()}"


class Repairs:
    """Repairs over one engine."""

    def __init__(self, engine: Engine, read: Callable[[Callable[[Tx], Any]], Any] | None = None) -> None:
        self.engine = engine
        self.store = engine.store
        self.read = read or self.store.read  # where the journals are read (a SQLite store's scratch file)

    def posting_key(self, day: str, d: Difference) -> str:
        """The key the repair of `d` posts under: a replay its own key; a void the terminal's void key when
        its journal has one, else `recon_void_key`."""
        if d.repair == "replay":
            return d.key
        void_key = self.read(lambda tx: tx.value(
            "SELECT key FROM recon_journal WHERE original_key = ? AND original_key <> '' AND kind = 'void'"
            " AND status IN ('confirmed', 'pending') AND business_day <= ? ORDER BY business_day, row_no"
            " LIMIT 1", (d.key, day)))
        return str(void_key or recon_void_key(d.key))

    def repair_one(self, day: str, d: Difference, actor: str) -> RepairAction:
        """Run the repair of difference `d` (replay or void): intent audited first, outcome after."""
        eng = self.engine
        posting_key = self.posting_key(day, d)
        why = {"class": d.cls, "reason": d.reason}
        if d.repair == "replay":
            line = self.read(lambda tx: tx.one(
                "SELECT kind, original_key, amount, request FROM recon_journal WHERE business_day = ?"
                " AND terminal_id = ? AND key = ? ORDER BY row_no LIMIT 1", (day, d.terminal_id, d.key)))
            if line is None or not line["request"]:
                return self._record(day, d.key, actor, "replay", posting_key, "failed",
                                    "the journal line carries no request to replay", why)
            req = json.loads(line["request"])

            def run() -> str:
                return self.replay(line["kind"], d.key, line["original_key"], int(line["amount"]), req, actor)
        else:
            def run() -> str:
                v = eng.medical.void(posting_key, d.key)
                return "replayed" if v.replayed else v.status

        self._intent(day, d.key, actor, d.repair, posting_key, why)
        try:
            outcome = run()
        except SettlementError as e:
            return self._record(day, d.key, actor, d.repair, posting_key, "failed", f"{e.code}: {e.message}", why)
        return self._record(day, d.key, actor, d.repair, posting_key, outcome, "", why)

    def replay(self, kind: str, key: str, original_key: str, amount: int, req: dict[str, Any], actor: str) -> str:
        """Send a journal line's request again, under its own key, through the engine's idempotent path."""
        eng = self.engine
        try:
            if kind == "settle":
                mdtrt_id = req.get("mdtrt_id")
                if req.get("register_key"):
                    begn = req.get("begntime")
                    visit = eng.medical.register(
                        req["register_key"], req["person_id"], req["institution"], req["care"],
                        begntime=dt.date.fromisoformat(begn) if begn else None, card_no=req.get("card_no"))
                    mdtrt_id = mdtrt_id or visit.mdtrt_id
                lines = [FeeLine(x["cls"], int(x["amount"]), int(x.get("over_limit", 0))) for x in req["lines"]]
                s = eng.medical.settle(key, mdtrt_id, lines, use_account=bool(req.get("use_account", True)))
                return "replayed" if s.replayed else "posted"
            if kind == "refund":
                r = eng.medical.refund(key, req.get("setl_id", original_key), req.get("amount", amount))
                return "replayed" if r.replayed else "posted"
            if kind == "pension_collect":
                c = eng.pensions.collect(key, req["person_id"], int(req.get("amount", amount)), req["institution"],
                                         actor=actor)
                return "replayed" if c.replayed else "posted"
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidRequest(f"the journal's request for {key} cannot be replayed: {e!r}") from None
        raise InvalidRequest(f"a {kind} cannot be replayed")

    def restore_one(self, day: str, setl_id: str, restore_key: str, actor: str, reason: str) -> RepairAction:
        """Restore settlement `setl_id`, voided by mistake, under `restore_key` (Medical.restore): intent audited
        first with the operator's reason, outcome after; the correcting posting counts for `day`."""
        detail = {"reason": reason}
        self._intent(day, setl_id, actor, "restore", restore_key, detail)
        try:
            r = self.engine.medical.restore(restore_key, setl_id, actor=actor, reason=reason)
        except SettlementError as e:
            return self._record(day, setl_id, actor, "restore", restore_key, "failed", f"{e.code}: {e.message}",
                                detail)
        return self._record(day, setl_id, actor, "restore", restore_key, "replayed" if r.replayed else "restored", "",
                            detail)

    def _intent(self, day: str, key: str, actor: str, action: str, posting_key: str, detail: dict[str, Any]) -> None:
        at = self.engine.stamp()

        def unit(tx: Tx) -> None:
            check_open(tx, day)
            tx.execute("INSERT INTO recon_repairs (posting_key, business_day, diff_key, action, created_at)"
                       " VALUES (?, ?, ?, ?, ?) ON CONFLICT (posting_key) DO NOTHING",
                       (posting_key, day, key, action, at))
            audit(tx, at, actor, day, action, key, posting_key, "started", detail)

        self.store.run(unit)

    def _record(self, day: str, key: str, actor: str, action: str, posting_key: str, outcome: str,
                detail: str, more: dict[str, Any]) -> RepairAction:
        at = self.engine.stamp()
        self.store.run(lambda tx: audit(tx, at, actor, day, action, key, posting_key, outcome,
                                        {**more, "detail": detail}))
        return RepairAction(key, action, posting_key, outcome, detail)
