"""The settlement wire contract: what terminal, centre and reconciliation say to each other.

Dependency-free (pydantic and the standard library; errors from `settlement.errors`), so a terminal imports
it without loading the engine. It holds:

* the money vocabulary: amounts are integer fen and `yuan()` renders them at the edge; `PARTS`, the national
  platform's breakdown parts; `MONEY_KINDS`, the requests that move money (the kinds of a journal line);
* the engine's values that requests and answers carry (fee lines, breakdowns, accumulators, visits...);
* the HTTP API's request and response models (shared by `settlement.api.service` and `.client`). Every
  money-moving request carries `terminal_serial`, the terminal's serial number for it: with the
  authenticated terminal id it forms the idempotency key `{terminal_id}:{terminal_serial}`, which is also
  the `setl_id` of a settlement;
* the terminal-journal line, below.

**Terminal journal lines**: what a terminal exports for day-end reconciliation. Each terminal keeps a
write-ahead journal; for its business day it exports one `JournalLine` per request it sent to the centre,
in its final state at export time. Two layouts carry the same fields:

**CSV** (UTF-8, comma-separated, RFC 4180 quoting, this exact header on line 1):

    terminal_id,business_day,key,kind,original_key,status,amount,hifp_pay,hifob_pay,hifmi_pay,maf_pay,
    acct_pay,psn_cash_pay,institution_id,insured_region,treatment_region,at,request

**JSON lines** (UTF-8, one object per line, blank lines ignored): the same names; amounts are JSON
integers, `original_key` is "" or absent, `request` is an object or null/absent.

Fields:
  terminal_id       1-64 of A-Z a-z 0-9 _ . -   (the terminal's registered id)
  business_day      YYYY-MM-DD                   (the terminal's business day)
  key               terminal_id:serial           (the idempotency key used at the centre)
  kind              settle | refund | void | pension_collect
  original_key      the settlement a refund or void refers to; empty for settle and pension_collect
  status            confirmed (answer received) | reversed (voided by the terminal; settle and
                    pension_collect only) | failed (typed error received, nothing posted) | pending
                    (no answer yet: the terminal will void it)
  amount            fen, >= 0: medfee_sumamt for settle, the refunded amount for refund, the amount
                    paid out for pension_collect, what was reversed for void (0 if not known)
  hifp_pay .. psn_cash_pay   the national platform breakdown in fen; for a confirmed settle or refund
                    they sum to `amount`; otherwise all 0 (not known) or summing to `amount`; always 0
                    for pension_collect
  institution_id, insured_region, treatment_region   as in the settlement result
  at                ISO 8601 timestamp with a UTC offset (when the terminal sent the request)
  request           what the centre needs to replay the request (JSON object; CSV: JSON text; may be
                    empty for void): settle {register_key, person_id, institution, care, begntime,
                    mdtrt_id, lines: [{cls, amount, over_limit}], use_account}; refund {setl_id,
                    amount}; pension_collect {person_id, amount, institution}

A line is validated when it is built or read (`JournalLine`, `row_from_csv`, `row_from_json`); the file
readers of `settlement.reconcile.journal` add the file and row to the error.

**Trailer**: an export ends with one trailer line saying what it holds, so that a file cut short (at a line
boundary too) or edited is told from a whole one: `rows` (data lines between the header and the trailer),
`last_serial` (the key of the last data line, "" when none) and `sha256` (of the text before the trailer
line, header included, as UTF-8: converting the file to GBK keeps it valid). CSV:

    #trailer,rows=3,last_serial=T0001:000003,sha256=<64 hex digits>

JSON lines: `{"trailer": {"rows": 3, "last_serial": "T0001:000003", "sha256": "<64 hex digits>"}}`. Readers
skip it; reconciliation repairs only journals whose trailer is complete and agrees with the file
(`settlement.reconcile.journal.check_trailer`).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from settlement.errors import InvalidJournalRow, InvalidRequest

PARTS = ("hifp_pay", "hifob_pay", "hifmi_pay", "maf_pay", "acct_pay", "psn_cash_pay")
"""The parts of a settlement in the national platform's names: four funds, the personal account, cash."""
MONEY_KINDS = ("settle", "refund", "void", "pension_collect")
"""The requests that move money: what a terminal exports a journal line for."""
MAX_FEN = 10**15
"""The largest amount in fen any request or journal line may carry (10 trillion yuan): far above any policy's
ceiling per bill, and a sum of `MAX_FEE_LINES` of them still fits a signed 64-bit integer."""
MAX_FEE_LINES = 5_000
"""The most fee lines one request may carry (a policy may allow fewer: `limits.max_fee_lines`)."""
ID_FORM = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
"""An id: a terminal id, serial, person, card number, institution, region, visit (and each half of a key)."""
KEY_FORM = r"([A-Za-z0-9_.\-]{1,64}):[A-Za-z0-9_.\-]{1,64}"
"""An idempotency key, `terminal_id:serial` (the `setl_id` of a settlement)."""


def yuan(amount: int) -> str:
    """Render fen as yuan with two decimals, for receipts and reports: 123456 -> '1234.56'."""
    sign = "-" if amount < 0 else ""
    q, r = divmod(abs(amount), 100)
    return f"{sign}{q}.{r:02d}"


# -- engine values carried in requests and answers --------------------------------------------------------

@dataclass(frozen=True)
class FeeLine:
    """One uploaded fee item: catalogue class, amount (fen) and the part above the price limit."""

    cls: str
    amount: int
    over_limit: int = 0


class Piece(BaseModel):
    """One piece of a layer's base and what the layer pays on it (for receipts and explanations).

    `lower`/`upper` are positions in fen on the layer's base: the year's cumulative in-policy amount for
    hifp/hifob, the cumulative critical-illness base for hifmi, and 0..amount for maf."""

    model_config = ConfigDict(frozen=True)

    fund: str
    lower: int
    upper: int
    ratio: str
    pay: int


class Breakdown(BaseModel):
    """A settlement's split in fen, with the national platform's field names."""

    model_config = ConfigDict(frozen=True)

    medfee_sumamt: int
    fulamt_ownpay_amt: int
    overlmt_selfpay: int
    preselfpay_amt: int
    inscp_scp_amt: int
    act_pay_dedc: int
    hifp_pay: int
    hifob_pay: int
    hifmi_pay: int
    maf_pay: int
    fund_pay_sumamt: int
    psn_part_amt: int
    acct_pay: int
    psn_cash_pay: int
    balc: int
    pieces: tuple[Piece, ...] = ()
    notes: tuple[str, ...] = ()

    def check(self) -> None:
        """Assert the identities (a bug if they fail)."""
        assert self.medfee_sumamt == (self.fulamt_ownpay_amt + self.overlmt_selfpay + self.preselfpay_amt
                                      + self.inscp_scp_amt)
        assert self.fund_pay_sumamt == self.hifp_pay + self.hifob_pay + self.hifmi_pay + self.maf_pay
        assert self.medfee_sumamt == self.fund_pay_sumamt + self.psn_part_amt
        assert self.psn_part_amt == self.acct_pay + self.psn_cash_pay
        assert min(self.model_dump(exclude={"pieces", "notes"}).values()) >= 0


# yearly accumulators (stored as named counters, see settlement.schemes.accumulators)
CARE_COUNTERS = ("deductible_used", "inscp_cum", "hifp_paid", "hifob_paid")
YEAR_COUNTERS = ("admissions", "hifmi_base_cum", "hifmi_paid", "maf_paid")
COUNTERS: tuple[str, ...] = tuple(
    f"{care}.{name}" for care in ("outpatient", "inpatient") for name in CARE_COUNTERS
) + YEAR_COUNTERS


class CareTotals(BaseModel):
    """Running totals for one kind of care (fen)."""

    model_config = ConfigDict(frozen=True)

    deductible_used: int = 0
    inscp_cum: int = 0
    hifp_paid: int = 0
    hifob_paid: int = 0


class Accumulators(BaseModel):
    """One person's totals for one calendar year: deductible used, in-policy cumulative amount, what each
    fund paid, the critical-illness base (in-policy amount left to the patient after hifp and hifob),
    critical-illness and assistance paid (fen), and the number of admissions settled."""

    model_config = ConfigDict(frozen=True)

    year: int
    outpatient: CareTotals = CareTotals()
    inpatient: CareTotals = CareTotals()
    admissions: int = 0
    hifmi_base_cum: int = 0
    hifmi_paid: int = 0
    maf_paid: int = 0

    def care(self, care: str) -> CareTotals:
        return self.inpatient if care == "inpatient" else self.outpatient

    @classmethod
    def from_counters(cls, year: int, counters: Mapping[str, int]) -> Accumulators:
        if not counters:  # most persons, most of the year: nothing counted yet
            return cls(year=year)
        g = counters.get
        return cls(  # written out: a settlement batch builds one per visit
            year=year,
            outpatient=CareTotals(deductible_used=g("outpatient.deductible_used", 0),
                                  inscp_cum=g("outpatient.inscp_cum", 0), hifp_paid=g("outpatient.hifp_paid", 0),
                                  hifob_paid=g("outpatient.hifob_paid", 0)),
            inpatient=CareTotals(deductible_used=g("inpatient.deductible_used", 0),
                                 inscp_cum=g("inpatient.inscp_cum", 0), hifp_paid=g("inpatient.hifp_paid", 0),
                                 hifob_paid=g("inpatient.hifob_paid", 0)),
            admissions=g("admissions", 0), hifmi_base_cum=g("hifmi_base_cum", 0), hifmi_paid=g("hifmi_paid", 0),
            maf_paid=g("maf_paid", 0),
        )

    def counters(self) -> dict[str, int]:
        out = {f"{care}.{c}": getattr(self.care(care), c) for care in ("outpatient", "inpatient")
               for c in CARE_COUNTERS}
        out.update({c: getattr(self, c) for c in YEAR_COUNTERS})
        return out

    def plus(self, deltas: Mapping[str, int]) -> Accumulators:
        merged = self.counters()
        for name, value in deltas.items():
            merged[name] = merged.get(name, 0) + value
        return Accumulators.from_counters(self.year, merged)


class Person(BaseModel):
    """An insured person of record."""

    model_config = ConfigDict(frozen=True)

    person_id: str
    name: str
    card_no: str | None = None
    region: str
    category: str
    assistance_class: str | None = None
    death_date: dt.date | None = None


# certification
Method = Literal["card_pin", "biometric", "assisted"]
METHODS = ("card_pin", "biometric", "assisted")
#: Why a certification failed, for software to switch on (`Certification.failure`).
Failure = Literal["card_mismatch", "pin_not_verified", "pin_wrong", "pin_block_unreadable", "no_pin_reference",
                  "score_below_threshold"]
FAILURES: tuple[str, ...] = get_args(Failure)


def pin_pan(person_id: str) -> str:
    """The PAN of a holder's PIN blocks: the social security number (17 digits and a check character),
    with a check character X written as 0. Format 0 uses the 12 digits before the last character (the
    end of the birth date and the sequence number), so the check character never counts. Terminal,
    issuer and centre all use this function. InvalidRequest if the id cannot be a PAN."""
    pan = person_id[:-1] + "0" if person_id[-1:] in ("X", "x") else person_id
    if not (2 <= len(pan) <= 19 and pan.isascii() and pan.isdigit()):
        raise InvalidRequest("the person id is not a social security number, so it cannot be a PIN block's PAN",
                             field="person_id")
    return pan


class Certification(BaseModel):
    """The outcome of one certification attempt. `reason` is for the clerk."""

    model_config = ConfigDict(frozen=True)

    key: str
    person_id: str
    method: Method
    passed: bool
    reason: str
    failure: Failure | None = None
    certified_at: str
    valid_until: dt.date | None = None
    benefit_status: int | None = None
    replayed: bool = False


class CertificationStatus(BaseModel):
    """Whether a person holds a valid certification now."""

    person_id: str
    certified: bool
    last_certified_at: str | None = None
    method: str | None = None
    valid_until: dt.date | None = None


class IdentityCheck(BaseModel):
    """An identity check as the centre recorded it (`check_id`, to quote later). `verified` when nothing speaks
    against the person and card: the person enrolled and alive, the card their active card, the PIN verified by
    the card (and a biometric match, when one was made); otherwise `reasons` says why not, as error codes
    (UNKNOWN_PERSON, DEATH_REPORTED, NOT_ENROLLED, a card refusal such as CARD_REPORTED_LOST, PIN_NOT_VERIFIED,
    BIOMETRIC_FAILED). The certification state and benefit status are given for a pensioner."""

    model_config = ConfigDict(frozen=True)

    check_id: str
    person_id: str
    name: str | None = None
    verified: bool
    reasons: list[str] = []
    card_no: str
    card_status: str | None = None
    card_authenticated: bool
    enrolled_regions: list[str] = []
    certified: bool | None = None
    certified_until: dt.date | None = None
    benefit_status: int | None = None
    checked_at: str
    replayed: bool = False


# visits and settlements
class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class Visit(_Out):
    """A registered visit (就诊). `mdtrt_id` is the id later calls use."""

    mdtrt_id: str
    person_id: str
    institution: str
    insured_region: str
    treatment_region: str
    level: str
    care: Literal["outpatient", "inpatient"]
    begntime: dt.date
    status: Literal["registered", "settled"]
    settle_key: str | None = None


class PreSettlement(_Out):
    """What a settlement would be now (2206): nothing is posted."""

    mdtrt_id: str
    person_id: str
    insured_region: str
    treatment_region: str
    breakdown: Breakdown


class Settlement(_Out):
    """A posted settlement (2207). `setl_id` is its idempotency key."""

    setl_id: str
    mdtrt_id: str
    person_id: str
    institution: str
    insured_region: str
    treatment_region: str
    cross_region: bool
    setl_time: str
    year: int
    breakdown: Breakdown
    replayed: bool = False


class RefundParts(_Out):
    """Amounts (fen) moved back by a refund, by part of the settlement."""

    medfee_sumamt: int
    hifp_pay: int = 0
    hifob_pay: int = 0
    hifmi_pay: int = 0
    maf_pay: int = 0
    fund_pay_sumamt: int = 0
    acct_pay: int = 0
    psn_cash_pay: int = 0


class Refund(_Out):
    """A refund. `actor` is the terminal (or operator) that made it; `reason` and `operator` (the clerk) as
    given."""

    refund_key: str
    setl_id: str
    refund: RefundParts
    refundable_after: int
    actor: str = ""
    reason: str | None = None
    operator: str | None = None
    replayed: bool = False


class Void(_Out):
    """A void (冲正). status "voided": the settlement was reversed; "voided_before_arrival": it had not
    arrived, and it will be refused if it does."""

    void_key: str
    setl_id: str
    status: Literal["voided", "voided_before_arrival"]
    reversed: RefundParts | None = None
    actor: str = ""
    reason: str | None = None
    replayed: bool = False


class Restoration(_Out):
    """A settlement voided by mistake, restored by a correcting posting (`restore_key`)."""

    restore_key: str
    setl_id: str
    void_key: str
    at: str
    replayed: bool = False


class SettlementRecord(_Out):
    """A settlement's state: status and what may still be refunded per part."""

    setl_id: str
    status: Literal["settled", "voided", "void_before_arrival"]
    mdtrt_id: str | None
    person_id: str | None
    institution: str | None
    void_key: str | None
    refundable: int
    remaining: dict[str, int]


# pensions
class Pensioner(BaseModel):
    model_config = ConfigDict(frozen=True)

    person_id: str
    region: str
    monthly_amount: int
    status: int
    status_text: str
    reason: str | None = None
    since: str


class IssueBatch(BaseModel):
    """What one month's issuance run did, by person id."""

    region: str
    month: str
    issued: list[str] = []
    already_issued: list[str] = []
    suspended: list[str] = []
    skipped: list[str] = []
    amount_issued: int = 0


class CollectionVoid(BaseModel):
    """A void (冲正) of a pension collection. "voided": the collection was reversed and `amount` fen went
    back to the pensioner account; "voided_before_arrival": it had not arrived and never will be applied."""

    model_config = ConfigDict(frozen=True)

    void_key: str
    collection_key: str
    status: Literal["voided", "voided_before_arrival"]
    amount: int = 0
    actor: str = ""
    reason: str | None = None
    replayed: bool = False


class Collection(BaseModel):
    """A pension collection at a counter."""

    model_config = ConfigDict(frozen=True)

    key: str
    person_id: str
    amount: int
    institution: str
    collect_region: str
    insured_region: str
    cross_region: bool
    collected_at: str
    balance_after: int
    replayed: bool = False


class Flag(BaseModel):
    """A raised fraud flag."""

    flag_id: str
    kind: str
    person_id: str
    raised_at: str
    detail: dict[str, Any]


class AuditEntry(BaseModel):
    """One audit row: `event` such as certified, certification_failed, suspended, resumed, death_reported."""

    seq: int
    at: str
    person_id: str
    event: str
    actor: str
    detail: dict[str, Any]


# cards (settlement/schemes/cards.py)
CardStatus = Literal["active", "reported_lost", "cancelled", "replaced", "expired"]
CARD_STATUSES: tuple[str, ...] = get_args(CardStatus)
#: The statuses that put a card on the blacklist terminals keep.
BLACKLISTED: tuple[str, ...] = ("reported_lost", "cancelled", "replaced")
CARD_NO_FORM = re.compile(r"[A-Za-z0-9]{1,20}")
CARD_ID_FORM = re.compile(r"[0-9A-F]{32}")


class Card(BaseModel):
    """A card at the centre: its number (卡号) and identification code (卡识别码, hex; None for a card taken
    over from a person's card number before the registry knew identifiers), holder, spec version, issuing
    region, dates, and status. `status` is "expired" for an active card past its expiry date.
    `application_blocked` names the application a terminal blocked on the card (APPLICATION BLOCK), if any."""

    model_config = ConfigDict(frozen=True)

    card_no: str
    card_id: str | None = None
    person_id: str
    spec_version: str | None = None
    region: str | None = None
    issued_on: dt.date | None = None
    expires_on: dt.date | None = None
    status: CardStatus
    replaced_by: str | None = None
    changed_at: str
    application_blocked: str | None = None


class BlacklistDelta(BaseModel):
    """What changed on the centre's card blacklist after version `since`, oldest first.

    Each entry is `[card_no, card_id or "", status, application]`: status one of BLACKLISTED (the card is
    refused; `application` is "" or the application a terminal blocked on it), or "active" (the card left
    the list: unlocked; `application` non-empty: a terminal blocked that application on it, and the next
    counter that reads the card unblocks it). A terminal applies the entries and remembers `version`; with
    `more` it asks again from there. `epoch` names the list: a different epoch, or `reset`, means start
    again from an empty list."""

    epoch: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
    since: Annotated[int, Field(ge=0)]
    version: Annotated[int, Field(ge=0)]
    more: bool = False
    reset: bool = False
    entries: list[tuple[
        Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,20}$")],
        Annotated[str, Field(pattern=r"^(?:[0-9A-F]{32})?$")],
        Literal["reported_lost", "cancelled", "replaced", "active"],
        Literal["", "DF01", "DF02", "DF03", "DF04"],
    ]] = []


# a holder's own view (a kiosk's)
class SettlementLine(BaseModel):
    """One settlement of a person, as a statement shows it (fen): what it was, and what was refunded since."""

    model_config = ConfigDict(frozen=True)

    setl_id: str
    mdtrt_id: str | None
    institution: str | None
    setl_time: str
    status: Literal["settled", "voided"]
    medfee_sumamt: int
    fund_pay_sumamt: int
    acct_pay: int
    psn_cash_pay: int
    refunded: int


class PensionPayment(BaseModel):
    """A month's pension issued into the pensioner account, or money collected from it at a counter (fen)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["issued", "collected"]
    key: str
    at: str
    amount: int
    month: str | None = None
    institution: str | None = None


class SelfService(BaseModel):
    """What a holder sees at a kiosk with their card and PIN: their card's status, balances, this year's
    accumulators, recent settlements and pension payments, and (pensioners) benefit and certification."""

    person_id: str
    name: str
    card: Card
    personal_account: int
    pensioner_account: int
    accumulators: Accumulators
    settlements: list[SettlementLine]
    pension_payments: list[PensionPayment]
    pensioner: Pensioner | None = None
    certification: CertificationStatus | None = None


# -- HTTP API: requests and answers ----------------------------------------------------------------------
Fen = Annotated[int, Field(strict=True, ge=0, le=MAX_FEN, description="amount in fen (1 yuan = 100 fen)")]
Serial = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$", max_length=64, description=(
    "the terminal's serial number for this request (流水号); with the terminal id it is the idempotency key"))]
Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$", max_length=64)]
"""An id of 1-64 letters, digits, '_', '.', '-' (person, card number, institution, region, visit)."""
Key = Annotated[str, Field(pattern=f"^{KEY_FORM}$", max_length=129, description=(
    "an idempotency key, terminal_id:serial (a settlement's setl_id)"), examples=["T0001:000102"])]
Text = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
"""Free text for people (a reason, a note): 1-200 characters, no control characters."""
PinBlockHex = Annotated[str, Field(
    pattern=r"^(?:[0-9A-Fa-f]{16}|[0-9A-Fa-f]{32})$",
    description="the PIN as an ISO 9564 format-0 PIN block encrypted under the terminal PIN key, hex: 16 digits "
                "(3DES key) or 32 (SM4); PAN = the person's social security number (`pin_pan`)")]
CardNo = Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,20}$", description="the card number read from the card (卡号)")]
CardId = Annotated[str, Field(pattern=r"^[0-9A-Fa-f]{32}$", description="the card identification code read from the "
                              "card (卡识别码, EF05 item 01), 16 bytes as hex")]
Reason = Annotated[str, Field(min_length=2, max_length=200, pattern=r"^[^\x00-\x1f]+$",
                              description="why (audited with the operator)")]
OperatorName = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[^\x00-\x1f]+$",
                                    description="who at the service hall (audited with the terminal id)")]
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

    feedetl_sn: str = Field("", max_length=64, pattern=r"^[^\x00-\x1f\x7f]*$",
                            description="fee line serial number in the HIS")
    med_list_codg: str = Field("", max_length=64, pattern=r"^[^\x00-\x1f\x7f]*$",
                               description="catalogue code of the item")
    chrgitm_lv: str = Field(max_length=16, pattern=r"^[^\x00-\x1f\x7f]+$",
                            description="catalogue class: A/B/C, or the national 01 甲类 / 02 乙类 / 03 丙类")
    det_item_fee_sumamt: Fen = Field(description="line amount in fen")
    overlmt_amt: Fen = Field(0, description="part of the amount above the price limit, in fen")

    def line(self) -> FeeLine:
        return FeeLine(self.chrgitm_lv, self.det_item_fee_sumamt, self.overlmt_amt)


class RegisterRequest(_In):
    """Register a visit (2201 outpatient / 2303 inpatient admission)."""

    terminal_serial: Serial
    person_id: Id = Field(description="insured person's id (psn_no)")
    institution: Id = Field(description="designated institution code (fixmedins_code)")
    care: Literal["outpatient", "inpatient"]
    begntime: dt.date | None = Field(None, description="visit or admission date; default today")
    card_no: CardNo | None = None
    card_id: CardId | None = None


class PreSettleRequest(_In):
    """Pre-settle (2206): compute the split, post nothing."""

    mdtrt_id: Id
    lines: list[FeeLineIn] = Field(min_length=1, max_length=MAX_FEE_LINES)
    use_account: bool = Field(True, description="let the personal account pay what the policy allows")


class SettleRequest(PreSettleRequest):
    """Settle (2207). The card presented (default: the one the visit was registered with) must be the
    person's active card."""

    terminal_serial: Serial
    card_no: CardNo | None = None
    card_id: CardId | None = None


class RefundRequest(_In):
    """Refund all or part of a settlement (linked to it)."""

    terminal_serial: Serial
    setl_id: Key
    amount: Fen | None = Field(None, description="fen to refund; omitted: everything not yet refunded")
    card_no: CardNo | None = Field(None, description="the card presented, which must be the person's active card: "
                                   "a refund to the card, and the proof of the card for a refund of another terminal's "
                                   "settlement")
    card_id: CardId | None = None
    reason: Reason | None = Field(None, description="why: required for a refund of another terminal's settlement and "
                                  "from an operator; kept with who did it, and audited")
    operator: OperatorName | None = Field(None, description="who does it at the counter (clerk)")


class VoidRequest(_In):
    """Void (冲正 / 2208) a settlement, e.g. when its response was lost."""

    terminal_serial: Serial
    setl_id: Key
    reason: Reason | None = Field(None, description="why: required from an operator (audited)")


class CertifyRequest(_In):
    """A certification attempt; a card presented (card_no, card_id) must be the person's active card. card_pin
    needs card_no and pin_block (checked online against the PIN
    reference recorded at issuance; pin_verified, optional, says whether the card accepted the PIN; a
    centre without an online PIN check takes pin_verified alone); biometric needs score, modality and
    device_id; assisted needs agent_id and agent_region."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)  # never echo a PIN block

    terminal_serial: Serial
    person_id: Id
    method: Literal["card_pin", "biometric", "assisted"]
    card_no: CardNo | None = None
    card_id: CardId | None = None
    pin_block: PinBlockHex | None = Field(None, repr=False)
    pin_verified: bool | None = None
    score: float | None = Field(None, description="match score in [0, 1] from the biometric device")
    modality: Literal["face", "fingerprint"] | None = None
    device_id: Id | None = None
    agent_id: Id | None = None
    agent_region: Id | None = None
    note: Text | None = None


class CardIn(_In):
    """A personalised card to enrol: its number and identification code as written on it, and its data."""

    card_no: CardNo
    card_id: CardId
    spec_version: str | None = Field(None, max_length=8, examples=["3.00"])
    region: str | None = Field(None, pattern=r"^\d{6}$", description="issuing region; default: the card id's first 6 "
                               "digits")
    issued_on: dt.date | None = None
    expires_on: dt.date | None = None
    operator: OperatorName
    reason: Reason


class CardStatusIn(_In):
    """A status change of a card (report lost, unlock, cancel)."""

    operator: OperatorName
    reason: Reason


class ApplicationReport(_In):
    """A terminal reports that it blocked an application on a blacklisted card (APPLICATION BLOCK), or, with
    `application` null, that it unblocked it again (APPLICATION UNBLOCK)."""

    card_id: CardId | None = None
    application: Literal["DF01", "DF02", "DF03", "DF04"] | None


class IdentityCheckRequest(_In):
    """An identity check at a counter: the card read (and authenticated, and its PIN verified) there, checked
    at the centre against the person and the card registry, and recorded."""

    terminal_serial: Serial
    person_id: str = Field(max_length=64)
    card_no: CardNo
    card_id: CardId | None = None
    pin_verified: bool
    card_authenticated: bool
    biometric_passed: bool | None = Field(None, description="a face/fingerprint match at the counter, if one was made")


class CollectRequest(_In):
    """Collect pension at a counter, with the card presented (which must be the person's active card)."""

    terminal_serial: Serial
    person_id: Id
    amount: Fen
    institution: Id
    card_no: CardNo | None = None
    card_id: CardId | None = None


class CollectionVoidRequest(_In):
    """Void (冲正) a pension collection whose answer the counter never got; also one not arrived yet."""

    terminal_serial: Serial
    collection_key: Key
    reason: Reason | None = Field(None, description="why: required from an operator (audited)")


class IssueRequest(_In):
    """Issue a month's pension entitlements for a region (operator)."""

    region: Id
    month: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", examples=["2024-05"])


class DeathReportRequest(_In):
    death_date: dt.date
    source: str = Field("", max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$",
                        description="who reported it (civil affairs, hospital, family...)")


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


# -- terminal journal lines --------------------------------------------------------------------------------
STATUSES = ("confirmed", "reversed", "failed", "pending")
AMOUNTS = ("amount", *PARTS)
FIELDS = (
    "terminal_id", "business_day", "key", "kind", "original_key", "status", *AMOUNTS,
    "institution_id", "insured_region", "treatment_region", "at", "request",
)
CSV_HEADER = ",".join(FIELDS)
ORIGINALS = frozenset({"settle", "pension_collect"})
LINKED = frozenset({"refund", "void"})

_KEY = re.compile(KEY_FORM)
_AMOUNTS_TEXT = re.compile(r"[0-9]{1,16}(?:,[0-9]{1,16}){6}")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_KINDS = frozenset(MONEY_KINDS)
_STATUSES = frozenset(STATUSES)
_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode

# A validated line as a row: FIELDS' values in order, with `parts_known` (derived) after the amounts.
Row = tuple[Any, ...]


class LineError(Exception):
    """A field problem inside one row; the reader adds file and row."""

    def __init__(self, fld: str, message: str) -> None:
        super().__init__(message)
        self.field = fld
        self.message = message


def check_day(value: str) -> str:
    """`value` if it is a valid YYYY-MM-DD date (raises ValueError otherwise)."""
    if type(value) is not str or not _DAY.fullmatch(value):
        raise ValueError(f"business day must look like 2024-03-01, got {value!r}")
    dt.date.fromisoformat(value)
    return value


# values already validated: the readers' fast paths skip re-checking them (bounded caches)
valid_days: dict[str, str] = {}
valid_texts: dict[str, str] = {}
valid_ids: dict[str, str] = {}


def _day(v: str) -> str:
    d = valid_days.get(v)
    if d is None:
        try:
            d = check_day(v)
        except ValueError as e:
            raise LineError("business_day", str(e)) from None
        if len(valid_days) < 10_000:
            valid_days[v] = d
    return d


def _text(v: object, fld: str) -> str:
    t = valid_texts.get(v) if type(v) is str else None
    if t is not None:
        return t
    if type(v) is not str or not v.strip() or len(v) > 64:
        raise LineError(fld, f"{fld} must be a non-empty text of at most 64 characters, got {v!r}")
    if len(valid_texts) < 100_000:
        valid_texts[v] = v
    return v


def _fen_text(v: str, fld: str) -> int:
    if not (v.isascii() and v.isdigit()) or len(v) > 16:
        raise LineError(fld, f"{fld} must be a whole number of fen (digits only, e.g. 12345 for 123.45 yuan), "
                             f"got {v!r}")
    return int(v)


def _fen_json(v: object, fld: str) -> int:
    if type(v) is not int or v < 0 or v > MAX_FEN:
        raise LineError(fld, f"{fld} must be a whole number of fen (a JSON integer >= 0), got {v!r}")
    return v


def _check(
    terminal_id: object, day: object, key: object, kind: object, original_key: object, status: object,
    amounts: list[int], institution: object, insured: object, treatment: object, at: object, request: str,
) -> Row:
    """Validate one line's values; return the DB row (without source and row number)."""
    if terminal_id not in valid_ids:
        if type(terminal_id) is not str or not ID_FORM.fullmatch(terminal_id):
            raise LineError("terminal_id",
                       f"terminal_id must be 1-64 letters, digits, '_', '.' or '-', got {terminal_id!r}")
        if len(valid_ids) < 100_000:
            valid_ids[terminal_id] = terminal_id
    m = _KEY.fullmatch(key) if type(key) is str else None
    if m is None or m.group(1) != terminal_id:
        raise LineError("key", f"key must be {terminal_id}:<serial> (the terminal's own idempotency key), got {key!r}")
    if kind not in _KINDS:
        raise LineError("kind", f"kind must be one of {', '.join(MONEY_KINDS)}, got {kind!r}")
    if status not in _STATUSES:
        raise LineError("status", f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    if kind in LINKED:
        if type(original_key) is not str or not _KEY.fullmatch(original_key):
            raise LineError("original_key", f"a {kind} needs original_key, the key of the settlement it refers to")
        if original_key == key:
            raise LineError("original_key", "original_key must differ from key")
        if status == "reversed":
            raise LineError("status", f"a {kind} cannot be 'reversed' (only settle and pension_collect can)")
    elif original_key:
        raise LineError("original_key", f"a {kind} has no original_key, got {original_key!r}")
    amount = amounts[0]
    if amount > MAX_FEN:
        raise LineError("amount", f"amount {amount} is too large")
    parts = sum(amounts[1:])
    if kind == "pension_collect":
        if parts:
            raise LineError("hifp_pay",
                            "a pension_collect carries no medical breakdown: hifp_pay..psn_cash_pay must be 0")
        known = 0
    elif (status == "confirmed" and kind != "void") or parts:
        if parts != amount:
            raise LineError("amount", f"the breakdown sums to {parts} fen but amount is {amount} fen")
        known = 1
    else:
        known = 0
    if kind != "void" and amount == 0:
        raise LineError("amount", f"a {kind} needs an amount above 0 fen")
    if type(at) is not str:
        raise LineError("at", f"at must be an ISO 8601 timestamp, got {at!r}")
    try:
        t = dt.datetime.fromisoformat(at)
    except ValueError:
        raise LineError("at", f"at must be an ISO 8601 timestamp like 2024-03-01T09:30:00+08:00, got {at!r}") from None
    if t.tzinfo is None:
        raise LineError("at", f"at needs a UTC offset (e.g. +08:00), got {at!r}")
    return (
        terminal_id, _day(day) if type(day) is str else _day(repr(day)), key, kind, original_key or "", status,
        *amounts, known, _text(institution, "institution_id"), _text(insured, "insured_region"),
        _text(treatment, "treatment_region"), at, request,
    )


def check_request_text(v: str) -> str:
    if not v:
        return ""
    try:
        obj = json.loads(v)
    except ValueError as e:
        raise LineError("request", f"request is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise LineError("request", "request must be a JSON object")
    return v


_fromiso = dt.datetime.fromisoformat
_key_match = _KEY.fullmatch
_amounts_match = _AMOUNTS_TEXT.fullmatch


def row_from_csv(values: list[str], *, check_request: bool = True) -> Row:
    """Validate one CSV record (strings in FIELDS order) into a DB row. With `check_request=False` the
    caller validates the request JSON itself (the SQLite import does it in SQL, in bulk).

    The common case is checked inline against the caches of values already validated; anything unusual
    goes through `_row_from_csv`, which names the field that is wrong."""
    if len(values) == 18:
        tid, day, key, kind, orig, status, a, b, c, d, e, f, g, inst, ins, trt, at, req = values
        m = _key_match(key)
        if (tid in valid_ids and day in valid_days and m is not None and m.group(1) == tid and kind in _KINDS
                and status in _STATUSES and inst in valid_texts and ins in valid_texts and trt in valid_texts
                and _amounts_match(f"{a},{b},{c},{d},{e},{f},{g}") is not None
                and (not orig if kind in ORIGINALS else status != "reversed" and orig != key and _key_match(orig))):
            amount, *parts = amounts = [int(a), int(b), int(c), int(d), int(e), int(f), int(g)]
            total = sum(parts)
            if kind == "pension_collect":
                ok, known = total == 0, 0
            elif (status == "confirmed" and kind != "void") or total:
                ok, known = total == amount, 1
            else:
                ok, known = True, 0
            if ok and (amount or kind == "void") and amount <= MAX_FEN and (not req or not check_request
                                                                          or req[0] == "{"):
                try:
                    t = _fromiso(at)
                except ValueError:
                    t = None
                if t is not None and t.tzinfo is not None:
                    if req and check_request:
                        check_request_text(req)
                    return (valid_ids[tid], valid_days[day], key, kind, orig, status, *amounts, known,
                            valid_texts[inst], valid_texts[ins], valid_texts[trt], at, req)
    return _row_from_csv(values, check_request=check_request)


def _row_from_csv(values: list[str], *, check_request: bool = True) -> Row:
    if len(values) != len(FIELDS):
        raise LineError("(row)", f"expected {len(FIELDS)} columns ({CSV_HEADER}), got {len(values)}")
    text = values[6:13]
    if _AMOUNTS_TEXT.fullmatch(",".join(text)) is None:
        for v, f in zip(text, AMOUNTS, strict=True):
            _fen_text(v, f)
    request = values[17]
    if request and check_request:
        check_request_text(request)
    return _check(values[0], values[1], values[2], values[3], values[4], values[5], list(map(int, text)),
                  values[13], values[14], values[15], values[16], request)


def row_from_json(obj: object) -> Row:
    """Validate one JSON-lines object into a DB row."""
    if not isinstance(obj, dict):
        raise LineError("(row)", "each line must be a JSON object")
    unknown = set(obj) - set(FIELDS)
    if unknown:
        raise LineError(sorted(unknown)[0], f"unknown field(s): {', '.join(sorted(unknown))}")
    missing = [f for f in FIELDS if f not in obj and f not in ("original_key", "request")]
    if missing:
        raise LineError(missing[0], f"missing field(s): {', '.join(missing)}")
    amounts = [_fen_json(obj[f], f) for f in AMOUNTS]
    req = obj.get("request")
    if req is not None and not isinstance(req, dict):
        raise LineError("request", "request must be a JSON object or null")
    return _check(obj["terminal_id"], obj["business_day"], obj["key"], obj["kind"], obj.get("original_key") or "",
                  obj["status"], amounts, obj["institution_id"], obj["insured_region"], obj["treatment_region"],
                  obj["at"], _canonical(req) if req else "")


@dataclass(frozen=True, slots=True)
class JournalLine:
    """One request a terminal sent, as its journal knows it at day end (see the module docstring)."""

    terminal_id: str
    business_day: str
    key: str
    kind: str
    status: str
    amount: int
    institution_id: str
    insured_region: str
    treatment_region: str
    at: str
    original_key: str = ""
    hifp_pay: int = 0
    hifob_pay: int = 0
    hifmi_pay: int = 0
    maf_pay: int = 0
    acct_pay: int = 0
    psn_cash_pay: int = 0
    request: Mapping[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        try:
            row_from_json(self.to_dict())
        except LineError as e:
            raise InvalidJournalRow(f"journal line {self.key!r}: {e.field}: {e.message}", field=e.field,
                                    key=self.key) from None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-lines object of this line."""
        return {f: (dict(self.request) if self.request is not None else None) if f == "request"
                else getattr(self, f) for f in FIELDS}

    def csv_values(self) -> list[str]:
        out = []
        for f in FIELDS:
            v = getattr(self, f)
            out.append(("" if v is None else _canonical(dict(v))) if f == "request" else str(v))
        return out

    @classmethod
    def from_row(cls, row: Row) -> JournalLine:
        """A line from a validated DB row (as `row_from_csv`/`row_from_json` return)."""
        (tid, day, key, kind, orig, status, amount, hifp, hifob, hifmi, maf, acct, cash, _known,
         inst, ins, trt, at, req) = row[:19]
        return cls(terminal_id=tid, business_day=day, key=key, kind=kind, status=status, amount=amount,
                   institution_id=inst, insured_region=ins, treatment_region=trt, at=at, original_key=orig or "",
                   hifp_pay=hifp, hifob_pay=hifob, hifmi_pay=hifmi, maf_pay=maf, acct_pay=acct, psn_cash_pay=cash,
                   request=json.loads(req) if req else None)


# -- writing --------------------------------------------------------------------------------------------
TRAILER_TAG = "#trailer"
"""How a trailer line starts (a CSV record whose first field no terminal id can be; the JSON key of the JSON-lines
trailer is `trailer`)."""


@dataclass(frozen=True)
class Trailer:
    """What a journal file says it holds (see the module docstring)."""

    rows: int
    last_serial: str
    sha256: str

    def csv_line(self) -> str:
        return f"{TRAILER_TAG},rows={self.rows},last_serial={self.last_serial},sha256={self.sha256}\n"

    def jsonl_line(self) -> str:
        return json.dumps({"trailer": {"rows": self.rows, "last_serial": self.last_serial, "sha256": self.sha256}},
                          separators=(",", ":")) + "\n"


class _Summing:
    """A text sink that passes writes on and sums them (SHA-256 of their UTF-8), for the trailer."""

    def __init__(self, dest: IO[str]) -> None:
        self.dest, self.hash = dest, hashlib.sha256()

    def write(self, text: str) -> int:
        self.hash.update(text.encode("utf-8"))
        return self.dest.write(text)


def _write_journal(lines: Iterable[JournalLine], dest: str | Path | IO[str], jsonl: bool) -> int:
    if isinstance(dest, (str, Path)):
        with open(dest, "w", encoding="utf-8", newline="") as f:
            return _write_journal(lines, f, jsonl)
    out = _Summing(dest)
    w = csv.writer(out, lineterminator="\n")
    if not jsonl:
        w.writerow(FIELDS)
    n, last = 0, ""
    for ln in lines:
        if jsonl:
            out.write(json.dumps(ln.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n")
        else:
            w.writerow(ln.csv_values())
        n, last = n + 1, ln.key
    trailer = Trailer(n, last, out.hash.hexdigest())
    dest.write(trailer.jsonl_line() if jsonl else trailer.csv_line())
    return n


def write_journal_csv(lines: Iterable[JournalLine], dest: str | Path | IO[str]) -> int:
    """Write lines as a CSV journal, its trailer last; returns the number of lines."""
    return _write_journal(lines, dest, jsonl=False)


def write_journal_jsonl(lines: Iterable[JournalLine], dest: str | Path | IO[str]) -> int:
    """Write lines as a JSON-lines journal, its trailer last; returns the number of lines."""
    return _write_journal(lines, dest, jsonl=True)


def journal_csv_text(lines: Iterable[JournalLine]) -> str:
    buf = io.StringIO()
    write_journal_csv(lines, buf)
    return buf.getvalue()
