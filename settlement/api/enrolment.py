"""Enrolment over the API (operator terminals only): POST /v1/enrolment/{kind} with the rows of a file.

The same checks, plan and apply as `sscard centre import` (settlement/schemes/enrolment.py): without
`apply` the answer is the plan and nothing changes; with it the plan is applied. A bad row is 422
INVALID_ENROLMENT_ROW naming the row (1 = first of `rows`) and field; a row contradicting the record is 409
ENROLMENT_CONFLICT; nothing is written in either case. Terminals are not imported here: their API keys live
in the service's keys file (`sscard centre import terminals --keys-file`).
"""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from settlement.api.auth import TerminalKey
from settlement.schemes import enrolment
from settlement.schemes.engine import Engine

MAX_ROWS = 10_000


class EnrolmentRequest(BaseModel):
    rows: list[dict[str, Any]] = Field(max_length=MAX_ROWS, description="the file's rows, as objects")
    apply: bool = Field(False, description="apply the plan (default: only show it)")
    operator: str = Field(min_length=1, max_length=64, description="who at the operator terminal (audited)")
    source: str = Field("request", min_length=1, max_length=128, description="the file's name, for messages")


class PlannedRowOut(BaseModel):
    row: int
    key: str
    action: Literal["add", "same", "replace"]
    detail: str


class EnrolmentResult(BaseModel):
    kind: str
    source: str
    applied: bool
    counts: dict[str, int]
    rows: list[PlannedRowOut]


def router(engine: Engine, operator: Any) -> APIRouter:
    """The enrolment routes; `operator` is the service's dependency that admits operator terminals only."""
    r = APIRouter(prefix="/v1/enrolment", tags=["enrolment"])
    Oper = Annotated[TerminalKey, Depends(operator)]

    @r.post("/{kind}", operation_id="import_enrolment")
    def import_enrolment(kind: Literal["institutions", "persons", "pin-references"], req: EnrolmentRequest,
                         t: Oper) -> EnrolmentResult:
        """Plan (and with `apply`, apply) an enrolment import of institutions, persons or PIN references
        (operator)."""
        items = enrolment.parse(kind, req.rows, req.source)
        plan = enrolment.plan(engine, kind, items, req.source)
        if req.apply:
            enrolment.apply(engine, plan, actor=f"{t.terminal_id}/{req.operator}")
        return EnrolmentResult(kind=kind, source=req.source, applied=req.apply, counts=plan.counts(),
                               rows=[PlannedRowOut(row=x.row, key=x.key, action=x.action, detail=x.detail)  # type: ignore[arg-type]
                                     for x in plan.rows])

    return r
