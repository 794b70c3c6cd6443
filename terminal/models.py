"""The terminal daemon's API models: what a front end sends and what it gets back (the OpenAPI contract).

Amounts are integer fen (1 yuan = 100 fen) on every field of this API, with the national medical platform's
field names; `*_yuan` strings and receipt lines are for display only. Each model carries an example.
The centre's own models (visit, breakdown, certification, pensioner) are passed through as they are.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from settlement.wire import CertificationStatus, ErrorBody, FeeLineIn, Pensioner, SelfService, Visit
from settlement.wire import PreSettlement as CentrePreSettlement

__all__ = ["ErrorBody", "FeeLineIn"]

Fen = Annotated[int, Field(description="amount in fen (1 yuan = 100 fen)")]
ReaderName = Annotated[str | None, Field(None, max_length=128,
                                         description="reader name; default: the counter's first user-card reader")]
Pin = Annotated[SecretStr, Field(description="the holder's PIN (4-12 digits, usually 6), typed at the PIN pad; "
                                             "never stored, logged or echoed")]
Operator = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[^\x00-\x1f\x7f]+$",
                                description="who does it at the counter (clerk's name or staff number)")]


#: a real pre-settlement (Beijing employee inpatient, level-3 hospital, first admission of the year)
EXAMPLE_BREAKDOWN: dict[str, Any] = {
    "medfee_sumamt": 3850000, "fulamt_ownpay_amt": 50000, "overlmt_selfpay": 0, "preselfpay_amt": 80000,
    "inscp_scp_amt": 3720000, "act_pay_dedc": 130000, "hifp_pay": 3087500, "hifob_pay": 0, "hifmi_pay": 0,
    "maf_pay": 0, "fund_pay_sumamt": 3087500, "psn_part_amt": 762500, "acct_pay": 500000, "psn_cash_pay": 262500,
    "balc": 0, "notes": [],
    "pieces": [{"fund": "hifp", "lower": 130000, "upper": 3000000, "ratio": "85%", "pay": 2439500},
               {"fund": "hifp", "lower": 3000000, "upper": 3720000, "ratio": "90%", "pay": 648000}]}
EXAMPLE_LINES = [{"field": "medfee_sumamt", "label": "医疗费总额", "amount": 3850000, "yuan": "38500.00"},
                 {"field": "hifp_pay", "label": "统筹基金支付", "amount": 3087500, "yuan": "30875.00"},
                 {"field": "acct_pay", "label": "个人账户支付", "amount": 500000, "yuan": "5000.00"},
                 {"field": "psn_cash_pay", "label": "现金支付", "amount": 262500, "yuan": "2625.00"}]


def example(**values: Any) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [values]})


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- requests -----------------------------------------------------------------------------------------------
class IdentityCheckIn(_In):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"pin": "123456"}]})
    reader: ReaderName = None
    pin: Pin
    biometric_score: float | None = Field(None, ge=0, le=1, description="match score from a face/fingerprint device")


class KioskIn(_In):
    """A holder at a kiosk: the card in the reader and its PIN; nothing else (whose data is shown comes from
    the card, never from the request)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"pin": "123456"}]})
    reader: ReaderName = None
    pin: Pin


class VisitIn(_In):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"care": "outpatient"}]})
    reader: ReaderName = None
    care: Literal["outpatient", "inpatient"] = "outpatient"


_LINES = [{"chrgitm_lv": "A", "det_item_fee_sumamt": 12000}, {"chrgitm_lv": "B", "det_item_fee_sumamt": 8000}]


class FeesIn(_In):
    """Fee lines for a visit, as the HIS uploads them (2204); the counter page loads them for pre-settlement."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"lines": _LINES, "source": "HIS"}]})
    lines: list[FeeLineIn] = Field(min_length=1, max_length=500)
    source: str = Field("HIS", max_length=64, description="who sent them (HIS name, or 'counter')")


class PreSettleIn(_In):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"lines": _LINES}]})
    lines: list[FeeLineIn] = Field(min_length=1, max_length=500)
    use_account: bool = True


class SettleIn(PreSettleIn):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"lines": _LINES, "pin": "123456"}]})
    reader: ReaderName = None
    pin: Pin


class RefundIn(_In):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"amount": 5000, "reason": "患者退药", "operator": "收费员 王芳"}]})
    amount: Fen | None = Field(None, ge=1, le=10**12, description="fen to refund; omitted: all that is left")
    reason: str = Field(min_length=2, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$",
                        description="why the money goes back (shown on the receipt)")
    operator: Operator
    reader: ReaderName = Field(None, description=(
        "the reader holding the patient's card: needed for another terminal's settlement (the centre asks for "
        "the card as proof); default: the first"))


class CertifyIn(_In):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"pin": "111111"}]})
    reader: ReaderName = None
    pin: SecretStr | None = Field(None, description="the holder's PIN (card + PIN certification)")
    biometric_score: float | None = Field(None, ge=0, le=1)
    modality: Literal["face", "fingerprint"] | None = None
    device_id: str | None = Field(None, max_length=64)


class CollectIn(_In):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"pin": "111111", "amount": 100000}]})
    reader: ReaderName = None
    pin: Pin
    amount: Fen = Field(ge=1, le=10**10, description="fen to pay out")


class EventsTokenIn(_In):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}]})
    reader: ReaderName = None


# ---- responses ----------------------------------------------------------------------------------------------
class ReaderStatus(BaseModel):
    model_config = example(reader="sscard Virtual 00 00", available=True, busy=False, busy_with=None,
                           card_present=True, card_no="B10238475")
    reader: str
    available: bool = Field(description="false while the reader or its PC/SC service is gone")
    busy: bool = Field(description="a flow holds the reader (card_present still says whether a card is in it)")
    busy_with: str | None
    card_present: bool
    card_no: str | None


class EventsToken(BaseModel):
    """A short-lived token for one reader's event stream, to put in the URL (`EventSource` sends no headers)."""

    model_config = example(token="q2r8...", expires_in=60, reader="sscard Virtual 00 00",
                           url="/v1/readers/events?reader=sscard+Virtual+00+00&access_token=q2r8...")
    token: str
    expires_in: int = Field(description="seconds left; a stream must be opened before then")
    reader: str
    url: str = Field(description="the stream's URL with the token in it")


class ReadWarning(BaseModel):
    """Something odd about one item that was read anyway (cardlib.basic.ReadWarning)."""

    code: str = Field(description='stable name, e.g. "date_absent", "undecodable"')
    item: str
    message: str
    file: str = ""
    record: int | None = None
    tag: str | None = None
    raw: str = Field("", description="the item's value bytes, hex")


class CardInfo(BaseModel):
    """The card's basic data (EF05 + EF06). Items other than the core ones (card id and number, social
    security number, name, region) are null when the card's value could not be decoded (a warning says
    which and why); `national` is the national reader interface's string."""

    model_config = example(
        card_id="110100D156000005B1A0C3D4E5F60718", card_type="3", spec_version="2.00", issuer_code="110100000001",
        issue_date="2019-05-20", expiry_date="2029-05-20", card_number="B10238475",
        social_security_number="110105198001010016", name="张三", sex="1", nation="01", birth_place="110105",
        birth_date="1980-01-01", region_code="110100", atr="3B8A80014D4F485253532D53494D69", profile="v2",
        warnings=[], national=None)
    card_id: str
    card_type: str | None
    spec_version: str | None
    issuer_code: str | None
    issue_date: str | None
    expiry_date: str | None
    card_number: str
    social_security_number: str
    name: str
    sex: str | None
    nation: str | None
    birth_place: str | None
    birth_date: str | None
    region_code: str
    atr: str
    profile: str = Field("", description="the card profile the read used")
    warnings: list[ReadWarning] = []
    national: str | None = None
    blacklist_version: int | None = Field(None, description="the blacklist copy the card was screened against")
    blacklist_age_seconds: int | None = Field(None, description="how old that copy is (offline it grows: the "
                                              "counter decides from it alone); null: never fetched")


class IdentityResult(BaseModel):
    """An identity check: "verified" or "refused" as the centre judged and recorded it (`check_id` to quote
    later; `reasons` as error codes), or "provisional" when the centre could not be asked (never verified: the
    card was screened against a blacklist copy `blacklist_age_seconds` old; the check is sent later)."""

    model_config = example(status="verified", verified=True, check_id="T0001:12", key="T0001:12", reasons=[],
                           pin_verified=True, card_authenticated=True, biometric_passed=None,
                           person_id="110105198001010016", name="张三", card_no="B10238475", region_code="110100",
                           card_status="active", enrolled_regions=["110000"], certified=None, certified_until=None,
                           benefit_status=None, blacklist_version=3, blacklist_age_seconds=42)
    status: Literal["verified", "refused", "provisional"]
    verified: bool = Field(description="true only when the centre verified the person and card")
    check_id: str | None = Field(description="the centre's record of the check (null while provisional)")
    key: str = Field(description="the journal key of the check")
    reasons: list[str] = Field(description="why not verified: UNKNOWN_PERSON, DEATH_REPORTED, NOT_ENROLLED, "
                               "CARD_* (the card's status), PIN_NOT_VERIFIED, BIOMETRIC_FAILED, CENTRE_UNREACHABLE")
    pin_verified: bool
    card_authenticated: bool
    biometric_passed: bool | None
    person_id: str
    name: str
    card_no: str
    region_code: str
    card_status: str | None = None
    enrolled_regions: list[str] = []
    certified: bool | None = Field(None, description="a pensioner's eligibility certification is valid")
    certified_until: dt.date | None = None
    benefit_status: int | None = None
    blacklist_version: int | None = None
    blacklist_age_seconds: int | None = None


class KioskSummary(SelfService):
    """The holder's own view at a kiosk (the centre's, for the card in the reader), with the card as read."""

    model_config = example(person_id="110105198001010016", name="张三", card={
        "card_no": "B10238475", "card_id": "110100D156000005B1A0C3D4E5F60718", "person_id": "110105198001010016",
        "status": "active", "changed_at": "2024-03-01T02:00:00+00:00"}, personal_account=450000,
        pensioner_account=0, accumulators={"year": 2024}, settlements=[], pension_payments=[], expiry_date="2029-05-20",
        blacklist_version=3, blacklist_age_seconds=42)
    expiry_date: str | None = Field(None, description="the card's expiry date as read from it")
    blacklist_version: int | None = None
    blacklist_age_seconds: int | None = None


class VisitRegistered(Visit):
    """The centre's visit, with the registration's journal key and the holder as the card says."""

    model_config = example(key="T0001:1", mdtrt_id="MD639512A05C867BC909CC", person_id="110105198001010016",
                           institution="H11000301",
                           insured_region="110000", treatment_region="110000", level="3", care="outpatient",
                           begntime="2024-05-01", status="registered", settle_key=None, name="张三",
                           card_no="B10238475")
    key: str = Field(description="the journal key of the registration")
    name: str
    card_no: str


class FeeLines(BaseModel):
    model_config = example(mdtrt_id="MD639512A05C867BC909CC", lines=_LINES, source="HIS",
                           updated_at="2024-05-01T10:02:03+08:00")
    mdtrt_id: str
    lines: list[FeeLineIn]
    source: str
    updated_at: str


class AmountLine(BaseModel):
    """One amount with its label in the request's language, for display (the amount stays in fen)."""

    model_config = example(field="hifp_pay", label="统筹基金支付", amount=10260, yuan="102.60")
    field: str
    label: str
    amount: Fen
    yuan: str


class PreSettlement(CentrePreSettlement):
    """The centre's pre-settlement, with its amounts labelled and the split explained for the clerk."""

    model_config = example(mdtrt_id="MD639512A05C867BC909CC", person_id="110105198001010016", insured_region="110000",
                           treatment_region="110000", breakdown=EXAMPLE_BREAKDOWN, lines=EXAMPLE_LINES,
                           explanation=["本次医疗费总额 38500.00 元。", "全自费项目 500.00 元，由个人支付。",
                                        "统筹基金支付：累计 1300.00–30000.00 元段按 85% 支付 24395.00 元。"])
    lines: list[AmountLine] = Field(description="the breakdown's non-zero amounts, labelled")
    explanation: list[str] = Field(description="the split in sentences, in the request's language")


class ErrorInfo(BaseModel):
    code: str
    message: str


class Receipt(BaseModel):
    """A transaction as the counter prints it: names, local time (Asia/Shanghai), labelled amounts."""

    model_config = example(
        key="T0001:2", kind="settle", title="医疗费用结算单", kind_label="医疗费用结算", state="confirmed",
        state_label="成功",
        terminal_id="T0001", terminal_number="110100000042", institution="H11000301",
        institution_name="北京市第一人民医院", business_day="2024-05-01", at="2024-05-01T10:03:04+08:00",
        person_id="110105198001010016", name="张三", card_no="B10238475", amount=3850000, amount_yuan="38500.00",
        breakdown=EXAMPLE_BREAKDOWN, lines=EXAMPLE_LINES, response={"setl_id": "T0001:2", "replayed": False},
        card_record="written", reason=None, error=None, operator=None, original_key=None)
    key: str
    kind: str
    title: str = Field(description="the receipt's title (a pension payout is not a settlement)")
    kind_label: str
    state: str
    state_label: str
    terminal_id: str
    terminal_number: str
    institution: str
    institution_name: str
    business_day: str
    at: str = Field(description="last change, local time in Asia/Shanghai (ISO 8601 with +08:00)")
    person_id: str | None
    name: str | None = Field(description="the holder's name as read from the card")
    card_no: str | None
    amount: Fen
    amount_yuan: str
    breakdown: dict[str, Any] = Field(description="amounts in fen by national field name")
    lines: list[AmountLine]
    response: dict[str, Any] = Field(description="the centre's answer as it came")
    card_record: str | None = Field(description="whether the transaction record reached the card")
    reason: str | None = Field(description="why it was refunded, reversed, refused or failed")
    error: ErrorInfo | None = Field(description="what the centre or the card refused, for a failed transaction")
    operator: str | None = Field(description="who did it at the counter (refunds)")
    original_key: str | None = Field(description="the transaction a refund or reversal belongs to")


class CounterInfo(BaseModel):
    """Who this counter is: what the page shows in its header and a HIS checks at sign-in."""

    model_config = example(terminal_id="T0001", terminal_number="110100000042", institution="H11000301",
                           institution_name="北京示例第三医院", readers=["sscard Virtual 00 00"], version="0.1.0")
    terminal_id: str
    terminal_number: str
    institution: str
    institution_name: str
    readers: list[str] = Field(description="the user-card readers; the first is the default")
    version: str


class Certification(BaseModel):
    model_config = example(key="T0001:3", person_id="310101195001010027", method="card_pin", passed=True,
                           reason="PIN verified by the centre", failure=None, certified_at="2024-05-01T10:05:00",
                           valid_until="2025-05-01", benefit_status=1, summary="认证通过，有效期至 2025-05-01。")
    key: str = Field(description="the journal key of the certification")
    person_id: str
    method: str
    passed: bool
    reason: str
    failure: str | None = None
    certified_at: str
    valid_until: str | None = None
    benefit_status: int | None = None
    summary: str = Field("", description="the outcome in a sentence, in the request's language")


class PensionStatus(BaseModel):
    model_config = example(pensioner={"person_id": "310101195001010027", "region": "310000", "monthly_amount": 420000,
                                      "status": 1, "status_text": "normal", "since": "2024-01-01"},
                           certification={"person_id": "310101195001010027", "certified": True,
                                          "last_certified_at": "2024-05-01T10:05:00+00:00", "method": "card_pin",
                                          "valid_until": "2025-05-01"}, status_label="正常")
    pensioner: Pensioner
    certification: CertificationStatus
    status_label: str = Field("", description="the benefit status, in the request's language")


class Component(BaseModel):
    status: Literal["ok", "degraded", "down", "absent"]
    detail: str = ""


class Health(BaseModel):
    model_config = example(status="ok", terminal_id="T0001", version="0.1.0",
                           components={"journal": {"status": "ok", "detail": "pending=0"}},
                           journal={"pending": 0, "confirmed": 3, "failed": 0, "reversed": 0})
    status: Literal["ok", "degraded", "down"]
    terminal_id: str
    version: str
    components: dict[str, Component]
    journal: dict[str, int]
