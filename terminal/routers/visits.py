"""Hospital visits: register (2201/2303), fee lines from the HIS (2204), pre-settle (2206), settle (2207)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from settlement.errors import SettlementError
from terminal.errors import TerminalError, from_settlement_error
from terminal.models import FeeLines, FeesIn, PreSettleIn, PreSettlement, Receipt, SettleIn, VisitIn, VisitRegistered
from terminal.receipts import SETTLE_FIELDS, amount_lines, explain, local_time
from terminal.routers.deps import READ, WRITE, Ident, LangDep, TerminalDep, answers, receipt_of

router = APIRouter(tags=["visit"])


@router.post("/v1/visits", operation_id="registerVisit", dependencies=WRITE, response_model=VisitRegistered,
             responses=answers(VisitRegistered))
def register_visit(t: TerminalDep, body: VisitIn) -> VisitRegistered:
    """Register a visit (2201 outpatient / 2303 inpatient) for the card in the reader."""
    return VisitRegistered(**t.register_visit(body.reader, body.care))


def _known_visit(t, mdtrt_id: str) -> None:
    if t.journal.visit(mdtrt_id) is None:
        try:
            t.centre.visit(mdtrt_id)
        except SettlementError as e:
            raise from_settlement_error(e) from e


@router.post("/v1/visits/{mdtrt_id}/fees", operation_id="putVisitFees", dependencies=WRITE, response_model=FeeLines,
             responses=answers(FeeLines))
def put_fees(request: Request, t: TerminalDep, mdtrt_id: Ident, body: FeesIn) -> FeeLines:
    """The HIS hands the visit's fee lines (2204) to the counter; each upload replaces the last.

    Nothing is sent to the centre: the counter page loads them to pre-settle and settle."""
    _known_visit(t, mdtrt_id)
    out = request.app.state.fees.put(mdtrt_id, [x.model_dump() for x in body.lines], body.source)
    return FeeLines(**out | {"updated_at": local_time(out["updated_at"])})


@router.get("/v1/visits/{mdtrt_id}/fees", operation_id="getVisitFees", dependencies=READ, response_model=FeeLines,
            responses=answers(FeeLines))
def get_fees(request: Request, mdtrt_id: Ident) -> FeeLines:
    """The fee lines the HIS uploaded for the visit (404 NO_FEE_LINES when it has sent none)."""
    out = request.app.state.fees.get(mdtrt_id)
    if out is None:
        raise TerminalError("NO_FEE_LINES", f"no fee lines uploaded for {mdtrt_id}", 404, mdtrt_id=mdtrt_id)
    return FeeLines(**out | {"updated_at": local_time(out["updated_at"])})


@router.post("/v1/visits/{mdtrt_id}/presettle", operation_id="presettleVisit", dependencies=WRITE,
             response_model=PreSettlement, responses=answers(PreSettlement))
def presettle(t: TerminalDep, mdtrt_id: Ident, body: PreSettleIn, lang: LangDep) -> PreSettlement:
    """Pre-settle (2206): the split the patient would pay, labelled and explained; nothing is posted."""
    pre = t.presettle(mdtrt_id, body.lines, body.use_account)
    b = pre["breakdown"]
    return PreSettlement(**pre, lines=amount_lines(b, SETTLE_FIELDS, lang), explanation=explain(b, lang))


@router.post("/v1/visits/{mdtrt_id}/settle", operation_id="settleVisit", dependencies=WRITE, response_model=Receipt,
             responses=answers(Receipt))
def settle(t: TerminalDep, mdtrt_id: Ident, body: SettleIn, lang: LangDep) -> Receipt:
    """Settle (2207) with the holder's PIN; the transaction record is then written to the card.

    The card's identity is checked against the visit's patient before its PIN is tried (CARD_MISMATCH
    costs the holder no try)."""
    entry = t.settle(body.reader, mdtrt_id, body.lines, body.pin.get_secret_value(), body.use_account)
    return Receipt(**receipt_of(t, entry, lang))
