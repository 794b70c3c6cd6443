"""Request and response models of the settlement service's HTTP API (shared by service and client).

All amounts are integer fen. Every money-moving request carries `terminal_serial`, the terminal's
serial number for it: with the authenticated terminal id it forms the idempotency key
`{terminal_id}:{terminal_serial}`, which is also the `setl_id` of a settlement.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from settlement.accumulators import Accumulators, CareTotals
from settlement.audit import AuditEntry
from settlement.breakdown import Breakdown, FeeLine, Piece
from settlement.fraud import Flag
from settlement.identity import Certification, CertificationStatus, pin_pan
from settlement.medical import PreSettlement, Refund, RefundParts, Settlement, SettlementRecord, Visit, Void
from settlement.pension import Collection, CollectionVoid, IssueBatch, Pensioner
from settlement.registry import Person

__all__ = [
    "Accumulators", "AuditEntry", "Balances", "Breakdown", "CareTotals", "Certification", "CertificationStatus",
    "CertifyRequest", "CollectRequest", "Collection", "CollectionVoid",
    "CollectionVoidRequest", "DeathReportRequest", "ErrorBody", "FeeLineIn", "Flag",
    "IssueBatch", "IssueRequest", "PersonBalances", "Pensioner", "Person", "Piece", "PostingOut", "PreSettleRequest",
    "PreSettlement", "Refund", "RefundParts", "RefundRequest", "RegisterRequest", "Settlement", "SettleRequest",
    "SettlementRecord", "TransferOut", "Visit", "Void", "VoidRequest", "pin_pan",
]

Fen = Annotated[int, Field(strict=True, ge=0, description="amount in fen (1 yuan = 100 fen)")]
Serial = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$", description="the terminal's serial number for "
                              "this request (流水号); with the terminal id it is the idempotency key")]
PinBlockHex = Annotated[str, Field(
    pattern=r"^(?:[0-9A-Fa-f]{16}|[0-9A-Fa-f]{32})$",
    description="the PIN as an ISO 9564 format-0 PIN block encrypted under the terminal PIN key, hex: 16 digits "
                "(3DES key) or 32 (SM4); PAN = the person's social security number (`pin_pan`)")]
AMOUNT_FIELDS = frozenset({"det_item_fee_sumamt", "overlmt_amt", "amount"})


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    """Every error: a stable `code` to switch on, a `message` for the clerk, and `details`."""

    code: str = Field(examples=["REFUND_TOO_LARGE"])
    message: str
    details: dict[str, Any] = {}


class FeeLineIn(_In):
    """One fee item (as uploaded with 2204)."""

    feedetl_sn: str = Field("", description="fee line serial number in the HIS")
    med_list_codg: str = Field("", description="catalogue code of the item")
    chrgitm_lv: str = Field(description="catalogue class: A/B/C, or the national 01 甲类 / 02 乙类 / 03 丙类")
    det_item_fee_sumamt: Fen = Field(description="line amount in fen")
    overlmt_amt: Fen = Field(0, description="part of the amount above the price limit, in fen")

    def line(self) -> FeeLine:
        return FeeLine(self.chrgitm_lv, self.det_item_fee_sumamt, self.overlmt_amt)


class RegisterRequest(_In):
    """Register a visit (2201 outpatient / 2303 inpatient admission)."""

    terminal_serial: Serial
    person_id: str = Field(description="insured person's id (psn_no)")
    institution: str = Field(description="designated institution code (fixmedins_code)")
    care: Literal["outpatient", "inpatient"]
    begntime: dt.date | None = Field(None, description="visit or admission date; default today")
    card_no: str | None = Field(None, description="card number read from the card (卡号)")


class PreSettleRequest(_In):
    """Pre-settle (2206): compute the split, post nothing."""

    mdtrt_id: str
    lines: list[FeeLineIn] = Field(min_length=1)
    use_account: bool = Field(True, description="let the personal account pay what the policy allows")


class SettleRequest(PreSettleRequest):
    """Settle (2207)."""

    terminal_serial: Serial


class RefundRequest(_In):
    """Refund all or part of a settlement (linked to it)."""

    terminal_serial: Serial
    setl_id: str
    amount: Fen | None = Field(None, description="fen to refund; omitted: everything not yet refunded")


class VoidRequest(_In):
    """Void (冲正 / 2208) a settlement, e.g. when its response was lost."""

    terminal_serial: Serial
    setl_id: str


class CertifyRequest(_In):
    """A certification attempt. card_pin needs card_no and pin_block (checked online against the PIN
    reference recorded at issuance; pin_verified, optional, says whether the card accepted the PIN; a
    centre without an online PIN check takes pin_verified alone); biometric needs score, modality and
    device_id; assisted needs agent_id and agent_region."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)  # never echo a PIN block

    terminal_serial: Serial
    person_id: str
    method: Literal["card_pin", "biometric", "assisted"]
    card_no: str | None = None
    pin_block: PinBlockHex | None = Field(None, repr=False)
    pin_verified: bool | None = None
    score: float | None = Field(None, description="match score in [0, 1] from the biometric device")
    modality: Literal["face", "fingerprint"] | None = None
    device_id: str | None = None
    agent_id: str | None = None
    agent_region: str | None = None
    note: str | None = None


class CollectRequest(_In):
    """Collect pension at a counter."""

    terminal_serial: Serial
    person_id: str
    amount: Fen
    institution: str


class CollectionVoidRequest(_In):
    """Void (冲正) a pension collection whose answer the counter never got; also one not arrived yet."""

    terminal_serial: Serial
    collection_key: str


class IssueRequest(_In):
    """Issue a month's pension entitlements for a region (operator)."""

    region: str
    month: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", examples=["2024-05"])


class DeathReportRequest(_In):
    death_date: dt.date
    source: str = Field("", description="who reported it (civil affairs, hospital, family...)")


class TransferOut(BaseModel):
    debit: str
    credit: str
    amount: int
    memo: str


class PostingOut(BaseModel):
    """A ledger posting."""

    key: str
    kind: str
    links_to: str | None
    status: str
    created_at: str
    transfers: list[TransferOut]
    payload: dict[str, Any]


class PersonBalances(BaseModel):
    person_id: str
    personal_account: int = Field(description="personal medical account balance (fen)")
    pensioner_account: int = Field(description="pension account balance (fen)")


class Balances(BaseModel):
    balances: dict[str, int]
