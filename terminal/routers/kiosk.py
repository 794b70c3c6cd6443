"""Self-service queries (自助查询) for kiosks: the holder of the card in the reader, with its PIN, sees their
own card status, balances, this year's accumulators, recent settlements and pension payments.

Scoped to the card in the reader and nothing else: the request names no person (a field naming one is
refused as malformed), the card is screened against the blacklist and authenticated and its PIN verified at
the card before the centre is asked, and the centre answers only for that card's holder and only if it is
their active card. Answers are never kept for an `Idempotency-Key` replay (terminal/idempotency.py).
"""

from __future__ import annotations

from fastapi import APIRouter

from terminal.models import KioskIn, KioskSummary
from terminal.routers.deps import READ, TerminalDep, answers

router = APIRouter(tags=["kiosk"])


@router.post("/v1/kiosk/summary", operation_id="kioskSummary", dependencies=READ, response_model=KioskSummary,
             responses=answers(KioskSummary))
def kiosk_summary(t: TerminalDep, body: KioskIn) -> KioskSummary:
    """Card + PIN: the holder's own view (the card in the reader decides whose)."""
    return KioskSummary(**t.kiosk(body.reader, body.pin.get_secret_value()))
