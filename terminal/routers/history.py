"""Receipts and the day's transactions, from the journal."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from terminal.models import Receipt
from terminal.receipts import receipt_text
from terminal.routers.deps import READ, Ident, LangDep, TerminalDep, answers, receipt_of

router = APIRouter(tags=["history"])

_TEXT = ("      北京市第一人民医院\n        医疗费用结算单\n--------------------------------\n"
         "姓名                        张三\n")


@router.get("/v1/receipts/{key}", operation_id="getReceipt", dependencies=READ, response_model=Receipt,
            responses=answers(Receipt) | {200: {"content": {
                "application/json": {"example": Receipt.model_config["json_schema_extra"]["examples"][0]},
                "text/plain": {"example": _TEXT}}}})
def get_receipt(t: TerminalDep, key: Ident, lang: LangDep,
                format: Literal["json", "text"] = "json",  # noqa: A002 - the query parameter's name
                width: Annotated[int, Query(ge=24, le=64, description=(
                    "text columns: 32 for 58 mm paper, 48 for 80 mm"))] = 32):
    """A transaction's receipt, as JSON or as text for a thermal printer (`format=text`, Chinese)."""
    entry = t.journal.get(key)
    if format == "text":
        return PlainTextResponse(receipt_text(receipt_of(t, entry, "zh"), width))
    return Receipt(**receipt_of(t, entry, lang))


@router.get("/v1/transactions", operation_id="listTransactions", dependencies=READ, response_model=list[Receipt],
            responses=answers(Receipt, many=True))
def transactions(t: TerminalDep, lang: LangDep, card_no: Annotated[str | None, Query(max_length=32)] = None,
                 day: dt.date | None = None) -> list[Receipt]:
    """Transaction history by card number or by business day (today when neither is given), with outcomes."""
    entries = t.journal.by_card(card_no) if card_no else t.journal.by_day(day or t.clock.today())
    return [Receipt(**receipt_of(t, e, lang)) for e in entries]
