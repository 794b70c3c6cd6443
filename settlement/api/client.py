"""HTTP client of the settlement service, for the terminal daemon.

    with SettlementClient("http://127.0.0.1:8700", key) as svc:
        visit = svc.register_visit(serial="000101", person_id="P1", institution="H1", care="outpatient")
        result = svc.settle(serial="000102", mdtrt_id=visit.mdtrt_id, lines=[FeeLineIn(...)])

Every call has a timeout. An error answer raises the typed `settlement.errors` exception of its code
(with the service's message and details). No answer raises ServiceUnreachable: for a money-moving call
the outcome is then unknown, and the defined next step is to repeat it with the same serial (which
returns the first result if it was applied) or to void it.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from settlement import errors
from settlement.errors import ServiceUnreachable, SettlementError
from settlement.wire import (
    Accumulators,
    AuditEntry,
    BlacklistDelta,
    Card,
    Certification,
    CertificationStatus,
    Collection,
    CollectionVoid,
    FeeLineIn,
    Flag,
    IdentityCheck,
    IssueBatch,
    Pensioner,
    Person,
    PersonBalances,
    PostingOut,
    PreSettlement,
    Refund,
    SelfService,
    Settlement,
    SettlementRecord,
    Visit,
    Void,
)

M = TypeVar("M")
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=3.0)
_BY_CODE: dict[str, type[SettlementError]] = {
    cls.code: cls for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, SettlementError) and cls is not SettlementError
}


def error_from(status: int, body: Any) -> SettlementError:
    """The typed exception for an error answer `{code, message, details}`."""
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        cls = _BY_CODE.get(body["code"], SettlementError)
        err = cls(str(body.get("message", "")), **(body.get("details") or {}))
        if cls is SettlementError:
            err.code, err.http_status = body["code"], status
        return err
    return SettlementError(f"settlement service answered HTTP {status}", status=status)


@functools.cache
def _adapter(model: Any) -> TypeAdapter[Any]:
    return TypeAdapter(model)


def _seg(value: str) -> str:
    """One path segment, percent-encoded (ids come from cards and front ends: never trust them in a URL)."""
    return quote(str(value), safe="")


class SettlementClient:
    """Typed calls to the settlement service; `key` is this terminal's API key."""

    def __init__(
        self,
        base_url: str,
        key: str,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        """`transport` or a ready `http` client (e.g. FastAPI's TestClient) replace the network in tests."""
        self.http = http if http is not None else httpx.Client(
            base_url=base_url, timeout=timeout, transport=transport)
        self.http.headers["X-Terminal-Key"] = key

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> SettlementClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, model: Any, *, json: Any = None, params: Any = None,
              card_no: str | None = None) -> Any:
        """`card_no`: the proof of the person's card for a read (the `X-Card-No` header)."""
        try:
            r = self.http.request(method, path, json=json, params=params,
                                  headers={"X-Card-No": card_no} if card_no else None)
        except httpx.TimeoutException as e:
            raise ServiceUnreachable(f"no answer from the settlement service in time ({e.__class__.__name__})",
                                     path=path, outcome_unknown=method != "GET") from e
        except httpx.TransportError as e:
            raise ServiceUnreachable(f"cannot reach the settlement service: {e}", path=path,
                                     outcome_unknown=not isinstance(e, httpx.ConnectError) and method != "GET") from e
        if r.status_code >= 400:
            try:
                body = r.json()
            except ValueError:
                body = None
            raise error_from(r.status_code, body)
        return _adapter(model).validate_json(r.content)

    @staticmethod
    def _body(**fields: Any) -> dict[str, Any]:
        out = {}
        for k, v in fields.items():
            if v is None:
                continue
            if isinstance(v, list):
                v = [x.model_dump(mode="json") if isinstance(x, BaseModel) else x for x in v]
            elif isinstance(v, dt.date):
                v = v.isoformat()
            out[k] = v
        return out

    # -- medical -----------------------------------------------------------------------------------------
    def register_visit(self, *, serial: str, person_id: str, institution: str, care: str,
                       begntime: dt.date | None = None, card_no: str | None = None,
                       card_id: str | None = None) -> Visit:
        return self._call("POST", "/v1/medical/visits", Visit, json=self._body(
            terminal_serial=serial, person_id=person_id, institution=institution, care=care, begntime=begntime,
            card_no=card_no, card_id=card_id))

    def visit(self, mdtrt_id: str) -> Visit:
        return self._call("GET", f"/v1/medical/visits/{_seg(mdtrt_id)}", Visit)

    def presettle(self, *, mdtrt_id: str, lines: list[FeeLineIn], use_account: bool = True) -> PreSettlement:
        return self._call("POST", "/v1/medical/presettle", PreSettlement,
                          json=self._body(mdtrt_id=mdtrt_id, lines=lines, use_account=use_account))

    def settle(self, *, serial: str, mdtrt_id: str, lines: list[FeeLineIn], use_account: bool = True,
               card_no: str | None = None, card_id: str | None = None) -> Settlement:
        return self._call("POST", "/v1/medical/settle", Settlement, json=self._body(
            terminal_serial=serial, mdtrt_id=mdtrt_id, lines=lines, use_account=use_account, card_no=card_no,
            card_id=card_id))

    def refund(self, *, serial: str, setl_id: str, amount: int | None = None, reason: str | None = None,
               operator: str | None = None, card_no: str | None = None, card_id: str | None = None) -> Refund:
        """The card (`card_no`, `card_id`) and `reason` are needed for another terminal's settlement."""
        return self._call("POST", "/v1/medical/refund", Refund, json=self._body(
            terminal_serial=serial, setl_id=setl_id, amount=amount, reason=reason, operator=operator, card_no=card_no,
            card_id=card_id))

    def void(self, *, serial: str, setl_id: str, reason: str | None = None) -> Void:
        return self._call("POST", "/v1/medical/void", Void,
                          json=self._body(terminal_serial=serial, setl_id=setl_id, reason=reason))

    def settlement(self, setl_id: str) -> SettlementRecord:
        return self._call("GET", f"/v1/medical/settlements/{_seg(setl_id)}", SettlementRecord)

    # -- identity and persons ------------------------------------------------------------------------------
    def certify(self, *, serial: str, person_id: str, method: str, **evidence: Any) -> Certification:
        """evidence: card_no + pin_block (hex; + pin_verified) | score + modality + device_id | agent_id +
        agent_region (+ note); card_id and card_no with any method. A `bytes` pin_block is sent as hex."""
        if isinstance(evidence.get("pin_block"), bytes):
            evidence["pin_block"] = evidence["pin_block"].hex().upper()
        return self._call("POST", "/v1/identity/certify", Certification, json=self._body(
            terminal_serial=serial, person_id=person_id, method=method, **evidence))

    def identity_check(self, *, serial: str, person_id: str, card_no: str, pin_verified: bool,
                       card_authenticated: bool, card_id: str | None = None,
                       biometric_passed: bool | None = None) -> IdentityCheck:
        return self._call("POST", "/v1/identity/check", IdentityCheck, json=self._body(
            terminal_serial=serial, person_id=person_id, card_no=card_no, card_id=card_id, pin_verified=pin_verified,
            card_authenticated=card_authenticated, biometric_passed=biometric_passed))

    def identity_check_record(self, check_id: str) -> IdentityCheck:
        return self._call("GET", f"/v1/identity/checks/{_seg(check_id)}", IdentityCheck)

    # a person's data: `card_no` is the card read from the person's card (operators need none)
    def person(self, person_id: str, *, card_no: str | None = None) -> Person:
        return self._call("GET", f"/v1/persons/{_seg(person_id)}", Person, card_no=card_no)

    def certification_status(self, person_id: str, *, card_no: str | None = None) -> CertificationStatus:
        return self._call("GET", f"/v1/persons/{_seg(person_id)}/certification", CertificationStatus,
                          card_no=card_no)

    def accumulators(self, person_id: str, year: int | None = None, *, card_no: str | None = None) -> Accumulators:
        return self._call("GET", f"/v1/persons/{_seg(person_id)}/accumulators", Accumulators,
                          params={"year": year} if year else None, card_no=card_no)

    def person_balances(self, person_id: str, *, card_no: str | None = None) -> PersonBalances:
        return self._call("GET", f"/v1/persons/{_seg(person_id)}/balances", PersonBalances, card_no=card_no)

    def self_service(self, person_id: str, *, card_no: str | None = None, card_id: str | None = None,
                     limit: int | None = None) -> SelfService:
        return self._call("GET", f"/v1/persons/{_seg(person_id)}/self-service", SelfService,
                          params=self._body(card_no=card_no, card_id=card_id, limit=limit))

    def audit_trail(self, person_id: str) -> list[AuditEntry]:
        return self._call("GET", f"/v1/persons/{_seg(person_id)}/audit", list[AuditEntry])

    def report_death(self, person_id: str, death_date: dt.date, source: str = "") -> Person:
        return self._call("POST", f"/v1/persons/{_seg(person_id)}/death-report", Person,
                          json=self._body(death_date=death_date, source=source))

    # -- cards ---------------------------------------------------------------------------------------------
    def card(self, card_no: str) -> Card:
        return self._call("GET", f"/v1/cards/{_seg(card_no)}", Card)

    def card_blacklist(self, since: int = 0, limit: int | None = None) -> BlacklistDelta:
        """The blacklist's changes after version `since`; a malformed answer raises InvalidRequest."""
        return self._call("GET", "/v1/cards/blacklist", BlacklistDelta,
                          params=self._body(since=since, limit=limit))

    def report_card_application(self, card_no: str, card_id: str | None, application: str | None) -> Card:
        return self._call("POST", f"/v1/cards/{_seg(card_no)}/application", Card,
                          json={"card_id": card_id, "application": application})

    def issue_card(self, person_id: str, **card: Any) -> Card:
        """card: card_no, card_id, operator, reason (+ spec_version, region, issued_on, expires_on)."""
        return self._call("POST", f"/v1/persons/{_seg(person_id)}/cards", Card, json=self._body(**card))

    def replace_card(self, person_id: str, **card: Any) -> Card:
        return self._call("POST", f"/v1/persons/{_seg(person_id)}/cards/replacement", Card, json=self._body(**card))

    def change_card(self, card_no: str, change: str, *, operator: str, reason: str) -> Card:
        """`change`: report-lost, unlock or cancel."""
        return self._call("POST", f"/v1/cards/{_seg(card_no)}/{_seg(change)}", Card,
                          json={"operator": operator, "reason": reason})

    def person_cards(self, person_id: str) -> list[Card]:
        return self._call("GET", f"/v1/persons/{_seg(person_id)}/cards", list[Card])

    def card_history(self, card_no: str) -> list[AuditEntry]:
        return self._call("GET", f"/v1/cards/{_seg(card_no)}/history", list[AuditEntry])

    # -- pensions ------------------------------------------------------------------------------------------
    def collect_pension(self, *, serial: str, person_id: str, amount: int, institution: str,
                        card_no: str | None = None, card_id: str | None = None) -> Collection:
        return self._call("POST", "/v1/pension/collect", Collection, json=self._body(
            terminal_serial=serial, person_id=person_id, amount=amount, institution=institution, card_no=card_no,
            card_id=card_id))

    def void_collection(self, *, serial: str, collection_key: str, reason: str | None = None) -> CollectionVoid:
        return self._call("POST", "/v1/pension/void", CollectionVoid, json=self._body(
            terminal_serial=serial, collection_key=collection_key, reason=reason))

    def issue_pensions(self, *, region: str, month: str) -> IssueBatch:
        return self._call("POST", "/v1/pension/issue", IssueBatch, json={"region": region, "month": month})

    def pensioner(self, person_id: str, *, card_no: str | None = None) -> Pensioner:
        return self._call("GET", f"/v1/pension/pensioners/{_seg(person_id)}", Pensioner, card_no=card_no)

    # -- ledger and supervision ----------------------------------------------------------------------------
    def posting(self, key: str) -> PostingOut:
        return self._call("GET", f"/v1/postings/{_seg(key)}", PostingOut)

    def balances(self, codes: list[str]) -> dict[str, int]:
        return self._call("GET", "/v1/balances", dict[str, dict[str, int]], params={"code": codes})["balances"]

    def fraud_flags(self, *, person_id: str | None = None, kind: str | None = None) -> list[Flag]:
        return self._call("GET", "/v1/fraud/flags", list[Flag], params=self._body(person_id=person_id, kind=kind))

    def fraud_scan(self) -> list[Flag]:
        return self._call("POST", "/v1/fraud/scan", list[Flag])

    def health(self) -> dict[str, str]:
        return self._call("GET", "/v1/health", dict[str, str])
