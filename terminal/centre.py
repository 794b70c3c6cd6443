"""The terminal's upstream: what the flows, reversal and recovery ask of a settlement centre.

`Centre` is the interface; two dialects implement it, chosen by `[centre] dialect` in the terminal config:

- `native` (`NativeCentre`): sscard's own settlement API (`settlement.api.client.SettlementClient`): integer
  fen, the terminal's serial as idempotency key, the engine's models as they are.
- `national` (`terminal.national.NationalCentre`): the national medical security platform's transaction
  interface (envelope with `infno`, `msgid`, `sign_no`..., yuan with two decimals at the edge). It covers
  what the platform has transactions for (sign-in, person lookup, visits, fees, settlement and its
  cancellation); what it has none for (refunds, lookups by id, pensions, identity certification, cards) goes
  to the native API of the same centre alongside (`[centre] others = "native"`), or is refused with
  `NOT_AVAILABLE_IN_DIALECT` (`others = "none"`).

Either way the flows see the same values (`settlement.wire` models, amounts in fen) and the same typed
errors (`settlement.errors`): a refusal raises the error of its code (nothing was applied), no answer raises
`ServiceUnreachable` (the outcome is unknown: the flows reverse or resend with the same serial). The journal
numbers requests in the upstream's form (`serials_for`), so a request's key at the centre is its key in
the journal in either dialect.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from settlement.api.client import SettlementClient
from settlement.errors import SettlementError
from settlement.wire import (
    BlacklistDelta,
    Card,
    Certification,
    CertificationStatus,
    Collection,
    CollectionVoid,
    FeeLineIn,
    IdentityCheck,
    Pensioner,
    PreSettlement,
    Refund,
    SelfService,
    Settlement,
    Visit,
    Void,
)
from terminal.clock import utc_now
from terminal.journal import counting

if TYPE_CHECKING:
    from terminal.config import TerminalConfig

DIALECTS = ("native", "national")


class NotInDialect(SettlementError):
    """The configured upstream has no transaction for this request (and no native API alongside)."""

    code = "NOT_AVAILABLE_IN_DIALECT"
    http_status = 501


@dataclass(frozen=True)
class Outcome:
    """What the centre made of a money-moving request, for recovery: `applied` (and still standing) with the
    answer it gave, or undone there (voided, or refused for good by a void that arrived first)."""

    applied: bool
    result: dict[str, Any] = field(default_factory=dict)
    why: str = ""


class Centre(Protocol):
    """The calls a terminal makes. Money-moving calls take the terminal's `serial`; a repeat with the same
    serial returns the first outcome. `*_outcome` raise `UnknownTransaction` when the centre never applied
    the key. Settling and voiding name the visit as the terminal knows it (`visit`, from its registration
    here) and a void the visit and person of what it undoes: the national platform's messages carry them,
    and it has no query by visit id."""

    dialect: str

    # visits
    def register_visit(self, *, serial: str, person_id: str, institution: str, care: str,
                       card_no: str | None = None, card_id: str | None = None) -> Visit: ...
    def visit(self, mdtrt_id: str) -> Visit: ...
    def presettle(self, *, mdtrt_id: str, lines: list[FeeLineIn], use_account: bool = True,
                  visit: Visit | None = None) -> PreSettlement: ...
    def settle(self, *, serial: str, mdtrt_id: str, lines: list[FeeLineIn], use_account: bool = True,
               card_no: str | None = None, card_id: str | None = None, visit: Visit | None = None) -> Settlement: ...
    def refund(self, *, serial: str, setl_id: str, amount: int | None = None, reason: str | None = None,
               operator: str | None = None, card_no: str | None = None, card_id: str | None = None) -> Refund: ...
    def void(self, *, serial: str, setl_id: str, mdtrt_id: str | None = None, person_id: str | None = None,
             visit: Visit | None = None) -> Void: ...
    def settlement_outcome(self, setl_id: str) -> Outcome: ...

    # identity and pensions
    def identity_check(self, *, serial: str, person_id: str, card_no: str, pin_verified: bool,
                       card_authenticated: bool, card_id: str | None = None,
                       biometric_passed: bool | None = None) -> IdentityCheck: ...
    def certify(self, *, serial: str, person_id: str, method: str, **evidence: Any) -> Certification: ...
    def certification_status(self, person_id: str, *, card_no: str | None = None) -> CertificationStatus: ...
    def pensioner(self, person_id: str, *, card_no: str | None = None) -> Pensioner: ...
    def collect_pension(self, *, serial: str, person_id: str, amount: int, institution: str,
                        card_no: str | None = None, card_id: str | None = None) -> Collection: ...
    def void_collection(self, *, serial: str, collection_key: str) -> CollectionVoid: ...
    def collection_outcome(self, key: str) -> Outcome: ...

    # cards: the blacklist (terminal/blacklist.py), what the terminal did to a card, a holder's own view
    def card_blacklist(self, since: int = 0) -> BlacklistDelta: ...
    def report_card_application(self, card_no: str, card_id: str | None, application: str | None) -> Card: ...
    def self_service(self, person_id: str, *, card_no: str, card_id: str | None = None) -> SelfService: ...

    def health(self) -> dict[str, str]: ...
    def close(self) -> None: ...


class NativeCentre:
    """sscard's native settlement API behind the `Centre` interface."""

    dialect = "native"

    def __init__(self, client: SettlementClient) -> None:
        self.client = client

    def register_visit(self, *, serial: str, person_id: str, institution: str, care: str,
                       card_no: str | None = None, card_id: str | None = None) -> Visit:
        return self.client.register_visit(serial=serial, person_id=person_id, institution=institution, care=care,
                                          card_no=card_no, card_id=card_id)

    def visit(self, mdtrt_id: str) -> Visit:
        return self.client.visit(mdtrt_id)

    def presettle(self, *, mdtrt_id: str, lines: list[FeeLineIn], use_account: bool = True,
                  visit: Visit | None = None) -> PreSettlement:
        return self.client.presettle(mdtrt_id=mdtrt_id, lines=lines, use_account=use_account)

    def settle(self, *, serial: str, mdtrt_id: str, lines: list[FeeLineIn], use_account: bool = True,
               card_no: str | None = None, card_id: str | None = None, visit: Visit | None = None) -> Settlement:
        return self.client.settle(serial=serial, mdtrt_id=mdtrt_id, lines=lines, use_account=use_account,
                                  card_no=card_no, card_id=card_id)

    def refund(self, *, serial: str, setl_id: str, amount: int | None = None, reason: str | None = None,
               operator: str | None = None, card_no: str | None = None, card_id: str | None = None) -> Refund:
        return self.client.refund(serial=serial, setl_id=setl_id, amount=amount, reason=reason, operator=operator,
                                  card_no=card_no, card_id=card_id)

    def void(self, *, serial: str, setl_id: str, mdtrt_id: str | None = None, person_id: str | None = None,
             visit: Visit | None = None) -> Void:
        return self.client.void(serial=serial, setl_id=setl_id)

    def settlement_outcome(self, setl_id: str) -> Outcome:
        record = self.client.settlement(setl_id)
        if record.status != "settled":
            return Outcome(False, why=f"found {record.status} at the centre by recovery")
        return Outcome(True, self.client.posting(setl_id).payload.get("result", record.model_dump(mode="json")))

    def identity_check(self, *, serial: str, person_id: str, card_no: str, pin_verified: bool,
                       card_authenticated: bool, card_id: str | None = None,
                       biometric_passed: bool | None = None) -> IdentityCheck:
        return self.client.identity_check(serial=serial, person_id=person_id, card_no=card_no, card_id=card_id,
                                          pin_verified=pin_verified, card_authenticated=card_authenticated,
                                          biometric_passed=biometric_passed)

    def certify(self, *, serial: str, person_id: str, method: str, **evidence: Any) -> Certification:
        return self.client.certify(serial=serial, person_id=person_id, method=method, **evidence)

    def certification_status(self, person_id: str, *, card_no: str | None = None) -> CertificationStatus:
        return self.client.certification_status(person_id, card_no=card_no)

    def pensioner(self, person_id: str, *, card_no: str | None = None) -> Pensioner:
        return self.client.pensioner(person_id, card_no=card_no)

    def collect_pension(self, *, serial: str, person_id: str, amount: int, institution: str,
                        card_no: str | None = None, card_id: str | None = None) -> Collection:
        return self.client.collect_pension(serial=serial, person_id=person_id, amount=amount, institution=institution,
                                           card_no=card_no, card_id=card_id)

    def void_collection(self, *, serial: str, collection_key: str) -> CollectionVoid:
        return self.client.void_collection(serial=serial, collection_key=collection_key)

    def collection_outcome(self, key: str) -> Outcome:
        posting = self.client.posting(key)
        if posting.status != "posted":
            return Outcome(False, why="found reversed at the centre by recovery")
        return Outcome(True, posting.payload["result"])

    def card_blacklist(self, since: int = 0) -> BlacklistDelta:
        return self.client.card_blacklist(since)

    def report_card_application(self, card_no: str, card_id: str | None, application: str | None) -> Card:
        return self.client.report_card_application(card_no, card_id, application)

    def self_service(self, person_id: str, *, card_no: str, card_id: str | None = None) -> SelfService:
        return self.client.self_service(person_id, card_no=card_no, card_id=card_id)

    def health(self) -> dict[str, str]:
        return self.client.health()

    def close(self) -> None:
        self.client.close()


def serials_for(cfg: TerminalConfig, now: Callable[[], dt.datetime] = utc_now) -> Callable[[int], int]:
    """How the journal numbers requests for this upstream: the national platform's are msgid tails
    (yyyyMMddHHmmss + sequence, by the terminal's clock `now`), so the centre's idempotency key is the
    journal's key."""
    if cfg.centre.dialect == "national":
        from terminal.national import msgid_serial

        return lambda last: msgid_serial(last, now())
    return counting


def open_centre(cfg: TerminalConfig, key: str | None = None, now: Callable[[], dt.datetime] = utc_now) -> Centre:
    """The upstream `[centre] dialect` names, at `[settlement] url` with the terminal's API key; `now` is the
    terminal's clock (the national envelope's times)."""
    s = cfg.settlement
    client = SettlementClient(s.url, key if key is not None else s.api_key(), timeout=s.timeout)
    if cfg.centre.dialect == "native":
        return NativeCentre(client)
    from terminal.national import NationalCentre

    return NationalCentre.from_config(cfg, client, now)
