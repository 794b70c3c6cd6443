"""Settlements already made: refunds."""

from __future__ import annotations

from fastapi import APIRouter

from terminal.models import Receipt, RefundIn
from terminal.routers.deps import WRITE, Ident, LangDep, TerminalDep, answers, receipt_of

router = APIRouter(tags=["visit"])


@router.post("/v1/settlements/{setl_id}/refund", operation_id="refundSettlement", dependencies=WRITE,
             response_model=Receipt, responses=answers(Receipt))
def refund(t: TerminalDep, setl_id: Ident, body: RefundIn, lang: LangDep) -> Receipt:
    """Refund all or part of a settlement (linked to it, never more than was paid), with the reason and who
    does it; both are journaled and printed on the receipt. Another terminal's settlement needs the patient's
    card in the reader."""
    entry = t.refund(setl_id, body.amount, body.reason, body.operator, body.reader)
    return Receipt(**receipt_of(t, entry, lang))
