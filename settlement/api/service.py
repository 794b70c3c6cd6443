"""The central settlement service: FastAPI over the engine, for many terminals.

    app = create_app(store, terminals=[TerminalKey(...)])     # or `sscard settlement serve`

Every request but /v1/health (and the docs) needs the header `X-Terminal-Key` (a per-terminal key, configured
as its SHA-256; see settlement/api/auth.py), checked before the body is read, and a body is at most MAX_BODY
bytes (413 REQUEST_TOO_LARGE, unread: settlement/api/guard.py). A terminal acts only for its own institution
and its own keys, and reaches a person only with the person's card (`card_no`, or the `X-Card-No` header on
reads): the rules are in settlement/api/scope.py. Money-moving requests carry `terminal_serial`; the
idempotency key is `{terminal_id}:{terminal_serial}`, so a terminal repeating a request after a timeout gets
the first result back (`replayed: true`). Errors are `{code, message, details}` with the HTTP status of their
code (settlement/errors.py); malformed bodies are 422 INVALID_REQUEST, or INVALID_AMOUNT when only amounts are
wrong. The OpenAPI schema is at /openapi.json.

Money-moving requests (visit registrations, settlements, refunds, pension collections) are async endpoints
that hand their job straight to the store's writer (`Store.submit`: no thread-pool hop), which decides
concurrent requests together (settlement/schemes/medical.py); a lean ASGI path (settlement/api/lean.py)
answers them without FastAPI's per-request machinery, through the same endpoint functions; when more than
`max_backlog` requests are
already waiting for the writer, a request is refused at once with 503 OVERLOADED and a Retry-After header
instead of queueing without bound (any 503 carries Retry-After).

Online PIN check: `create_app(..., pin_verifier=sscard.hsm_pin.HsmPinVerifier(hsm))` lets card_pin certifications be
verified against the PIN references recorded at issuance (settlement/schemes/identity.py); `hsm` is any
hsm_mock `HsmApi` (the TCP `HsmClient` in production: `sscard settlement serve --hsm HOST:PORT`); the adapter
lives with the composition (sscard/) so that settlement imports no other layer. PIN
blocks are never logged: validation errors name the field, never its value.

The same app serves the national medical security platform's transaction interface at
/fsi/api/rsfComIfsService/callService (settlement/api/national.py), with the same keys, engine and ledger.
"""


import datetime as dt
import logging
from collections.abc import Callable, Iterable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi import Path as InPath
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware
from starlette.types import Scope

from settlement.api import enrolment, scope
from settlement.api.auth import KeyRing, TerminalKey
from settlement.api.guard import BodyGuard, Refusal, header
from settlement.api.lean import LeanPath
from settlement.api.national import MAX_BODY as NATIONAL_MAX_BODY
from settlement.api.national import PATHS as NATIONAL_PATHS
from settlement.api.national import National
from settlement.api.national_data import Item
from settlement.errors import Forbidden, InvalidState, Overloaded, SettlementError, Unauthorized, UnknownTransaction
from settlement.ledger import Store, issued_by, make_key, utc_now
from settlement.schemes import cards, chart
from settlement.schemes.engine import Engine, Settings
from settlement.schemes.identity import PinVerifier
from settlement.schemes.policy import PolicyBook
from settlement.wire import (
    AMOUNT_FIELDS,
    KEY_FORM,
    Accumulators,
    ApplicationReport,
    AuditEntry,
    Balances,
    BlacklistDelta,
    Card,
    CardIn,
    CardStatusIn,
    Certification,
    CertificationStatus,
    CertifyRequest,
    Collection,
    CollectionVoid,
    CollectionVoidRequest,
    CollectRequest,
    DeathReportRequest,
    ErrorBody,
    Flag,
    IdentityCheck,
    IdentityCheckRequest,
    IssueBatch,
    IssueRequest,
    Pensioner,
    Person,
    PersonBalances,
    PostingOut,
    PreSettlement,
    PreSettleRequest,
    Refund,
    RefundRequest,
    RegisterRequest,
    SelfService,
    Settlement,
    SettlementRecord,
    SettleRequest,
    TransferOut,
    Visit,
    Void,
    VoidRequest,
)

log = logging.getLogger("sscard.settlement.service")
KEY_HEADER = "X-Terminal-Key"
MAX_BODY = 2 * 1024 * 1024
"""Bytes in a request body (the national interface: its own 12 MB); a 5,000-line bill is about 1.4 MB."""
ENROLMENT_MAX_BODY = 8 * 1024 * 1024
"""Bytes in an enrolment import (operators; 10,000 rows of persons are about 3 MB)."""
PUBLIC = frozenset({"/v1/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
_key_scheme = APIKeyHeader(name=KEY_HEADER, auto_error=False, description="the terminal's API key")
PathId = Annotated[str, InPath(pattern=r"^[A-Za-z0-9_.\-]{1,64}$", max_length=64)]
PathKey = Annotated[str, InPath(pattern=f"^{KEY_FORM}$", max_length=129)]
PathCardNo = Annotated[str, InPath(pattern=r"^[A-Za-z0-9]{1,20}$", max_length=20)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorBody, "description": d}
    for s, d in [(401, "missing or unknown terminal key"), (403, "not allowed, not certified, suspended"),
                 (404, "unknown person, visit, region, policy or key"), (409, "conflict with the current state"),
                 (422, "invalid request or amount"),
                 (503, "store unavailable or overloaded: retry with the same key after Retry-After seconds")]
}


def refusal(e: SettlementError) -> JSONResponse:
    """A typed refusal as the service answers it: its status, `{code, message, details}`, and Retry-After
    on a 503 (the store could not commit, or the service is overloaded)."""
    headers = {"Retry-After": str(e.details.get("retry_after", 1))} if e.http_status == 503 else None
    return JSONResponse(jsonable_encoder(e.to_dict()), status_code=e.http_status, headers=headers)


def _lean_refusal(e: SettlementError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    r = refusal(e)
    return r.status_code, r.body, [(k, v) for k, v in r.raw_headers if k not in (b"content-type", b"content-length")]


def card_fields(req: CardIn) -> dict[str, Any]:
    return req.model_dump(include={"card_no", "card_id", "spec_version", "region", "issued_on", "expires_on"})


def create_app(
    store: Store | Engine,
    *,
    terminals: Iterable[TerminalKey],
    policies: PolicyBook | None = None,
    settings: Settings | None = None,
    clock: Callable[[], dt.datetime] = utc_now,
    pin_verifier: PinVerifier | None = None,
    national_catalogue: dict[str, Item] | None = None,
    max_backlog: int = 2000,
) -> FastAPI:
    """The service app over `store` (or an existing Engine, wired with its own PIN verifier), accepting the
    given terminals' keys; `pin_verifier` turns on the online PIN check of card_pin certifications;
    `national_catalogue` is the medical list of the national interface (`load_catalogue`; default: the
    illustrative one); `max_backlog`: write requests waiting for the store beyond which new ones are shed
    (503 OVERLOADED)."""
    if isinstance(store, Engine):
        if pin_verifier is not None:
            raise ValueError("an existing Engine brings its own PIN verifier: pass it to Engine(...)")
        engine = store
    else:
        engine = Engine(store, policies=policies, settings=settings, clock=clock, pin_verifier=pin_verifier)
    keys = KeyRing(terminals)
    app = FastAPI(
        telemetry={"tracing": False, "metrics": False, "logs": False},  # none exported: no per-request lookups
        title="sscard settlement service",
        version="1.0",
        summary="Medical settlement, pensions and certification for social security card terminals.",
        description=__doc__,
    )
    app.state.engine = engine

    async def terminal(key: Annotated[str | None, Depends(_key_scheme)]) -> TerminalKey:
        found = keys.find(key)
        if found is None:
            raise Unauthorized(f"missing or unknown {KEY_HEADER} header")
        return found

    async def operator(t: Annotated[TerminalKey, Depends(terminal)]) -> TerminalKey:
        if not t.operator:
            raise Forbidden(f"terminal {t.terminal_id} is not an operator terminal", terminal_id=t.terminal_id)
        return t

    Term = Annotated[TerminalKey, Depends(terminal)]
    Oper = Annotated[TerminalKey, Depends(operator)]
    CardHeader = Annotated[str | None, Header(alias=scope.CARD_HEADER, max_length=20, pattern=r"^[A-Za-z0-9]{1,20}$",
                                              description="the card number read from the person's card in this "
                                                          "flow (proof of the card; operators need none)")]

    def acting_for(t: TerminalKey) -> str | None:
        """The institution a terminal's request acts for (None: an operator, or a terminal of no institution)."""
        return None if t.operator else t.institution

    async def write(job: tuple[Callable[..., Any], Any]) -> Any:
        """Hand a money-moving job to the store's writer, unless too many are waiting already."""
        waiting = engine.store.backlog()
        if waiting >= max_backlog:
            raise Overloaded(f"{waiting} requests are waiting for the store; retry with the same key shortly",
                             retry_after=1)
        return await engine.store.submit(*job)

    async def with_card(t: TerminalKey, person_id: str, card_no: str | None, card_id: str | None,
                        job: tuple[Callable[..., Any], Any]) -> Any:
        """`write(job)` for an act on a person whose flow checks the card in its own batch (register, collect):
        a terminal must show the card, and one that is not the person's is answered CARD_PROOF_MISMATCH."""
        scope.card_shown(t, person_id, card_no, card_id)
        try:
            return await write(job)
        except scope.NOT_THE_CARD as e:
            raise scope.not_the_card(t, person_id, card_no or card_id, e) from None

    @app.exception_handler(SettlementError)
    async def _settlement_error(_: Request, e: SettlementError) -> JSONResponse:
        return refusal(e)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        errors = [{"field": ".".join(str(p) for p in err["loc"] if p != "body"), "problem": err["msg"]}
                  for err in e.errors()]
        amounts = all(any(str(p) in AMOUNT_FIELDS for p in err["loc"]) for err in e.errors())
        body = ErrorBody(
            code="INVALID_AMOUNT" if amounts else "INVALID_REQUEST",
            message="; ".join(f"{x['field']}: {x['problem']}" for x in errors) or "invalid request",
            details={"errors": errors},
        )
        return JSONResponse(jsonable_encoder(body), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        """Routing and body-parsing refusals in the one error shape (a body that is not JSON at all is 422
        INVALID_REQUEST, as a malformed one is)."""
        status, code = {400: (422, "INVALID_REQUEST"), 404: (404, "NOT_FOUND"),
                        405: (405, "METHOD_NOT_ALLOWED")}.get(e.status_code, (e.status_code, f"HTTP_{e.status_code}"))
        body = ErrorBody(code=code, message=str(e.detail))
        return JSONResponse(jsonable_encoder(body), status_code=status, headers=e.headers)

    @app.exception_handler(Exception)
    async def _internal(_: Request, e: Exception) -> JSONResponse:
        log.exception("internal error")
        body = ErrorBody(code="INTERNAL_ERROR", message="internal error in the settlement service; nothing "
                         "was posted unless a repeat of the request says so")
        return JSONResponse(jsonable_encoder(body), status_code=500)

    @app.get("/v1/health", tags=["service"])
    def health() -> dict[str, str]:
        """Liveness, without authentication."""
        return {"status": "ok"}

    v1 = APIRouter(prefix="/v1", responses=_ERRORS)

    # -- medical -----------------------------------------------------------------------------------------
    @v1.post("/medical/visits", tags=["medical"], operation_id="register_visit")
    async def register_visit(req: RegisterRequest, t: Term, card: CardHeader = None) -> Visit:
        """Register a visit or admission (2201 / 2303) at the terminal's institution, with the patient's card.
        Idempotent on terminal_serial."""
        scope.own_institution(t, req.institution)
        card_no = card or req.card_no
        return await with_card(t, req.person_id, card_no, req.card_id, engine.medical.register_job(
            make_key(t.terminal_id, req.terminal_serial), req.person_id, req.institution, req.care,
            begntime=req.begntime, card_no=card_no, card_id=req.card_id))

    @v1.get("/medical/visits/{mdtrt_id}", tags=["medical"], operation_id="get_visit")
    def get_visit(mdtrt_id: PathId, t: Term) -> Visit:
        """A visit the terminal's institution holds."""
        visit = engine.medical.visit(mdtrt_id)
        scope.own_institution(t, visit.institution)
        return visit

    @v1.post("/medical/presettle", tags=["medical"], operation_id="presettle")
    def presettle(req: PreSettleRequest, t: Term) -> PreSettlement:
        """Pre-settle (2206): the split as a settlement now would make it. Posts nothing."""
        scope.own_institution(t, engine.medical.visit(req.mdtrt_id).institution)
        return engine.medical.presettle(req.mdtrt_id, [ln.line() for ln in req.lines], use_account=req.use_account)

    @v1.post("/medical/settle", tags=["medical"], operation_id="settle")
    async def settle(req: SettleRequest, t: Term) -> Settlement:
        """Settle (2207): post the split. A repeat of the serial returns the first result."""
        return await write(engine.medical.settle_job(
            make_key(t.terminal_id, req.terminal_serial), req.mdtrt_id, [ln.line() for ln in req.lines],
            use_account=req.use_account, at_institution=acting_for(t), card_id=req.card_id, card_no=req.card_no))

    @v1.post("/medical/refund", tags=["medical"], operation_id="refund")
    async def refund(req: RefundRequest, t: Term, card: CardHeader = None) -> Refund:
        """Refund all or part of a settlement; bounded by what is not yet refunded. Another terminal of the
        settlement's institution needs the holder's card and a reason; an operator a reason."""
        if t.operator or not issued_by(req.setl_id, t.terminal_id):  # reads the settlement: off the event loop
            await run_in_threadpool(scope.refund, engine, t, req.setl_id, card or req.card_no, req.card_id,
                                    req.reason)
        return await write(engine.medical.refund_job(
            make_key(t.terminal_id, req.terminal_serial), req.setl_id, req.amount, at_institution=acting_for(t),
            card_id=req.card_id, card_no=req.card_no, actor=t.terminal_id, reason=req.reason,
            operator=req.operator))

    @v1.post("/medical/void", tags=["medical"], operation_id="void")
    def void(req: VoidRequest, t: Term) -> Void:
        """Void (冲正 / 2208) one of the terminal's own settlements, also one that has not arrived yet (it will
        then be refused); an operator voids any, with a reason."""
        scope.void(t, req.setl_id, req.reason)
        return engine.medical.void(make_key(t.terminal_id, req.terminal_serial), req.setl_id, actor=t.terminal_id,
                                   reason=req.reason)

    @v1.get("/medical/settlements/{setl_id}", tags=["medical"], operation_id="get_settlement")
    def get_settlement(setl_id: PathKey, t: Term) -> SettlementRecord:
        scope.own_key(t, setl_id)
        return engine.medical.settlement(setl_id)

    # -- identity and persons ------------------------------------------------------------------------------
    @v1.post("/identity/certify", tags=["identity"], operation_id="certify")
    def certify(req: CertifyRequest, t: Term, card: CardHeader = None) -> Certification:
        """Record a certification attempt (card and PIN, biometric score, or assisted), with the person's card."""
        scope.card_proof(engine, t, req.person_id, card or req.card_no, req.card_id)
        ev = req.model_dump(exclude={"terminal_serial", "person_id", "method"})
        return engine.identity.certify(make_key(t.terminal_id, req.terminal_serial), req.person_id, req.method,
                                       actor=t.terminal_id, **ev)

    @v1.post("/identity/check", tags=["identity"], operation_id="check_identity")
    def check_identity(req: IdentityCheckRequest, t: Term) -> IdentityCheck:
        """An identity check at a counter, recorded: the person enrolled and alive, the card their active card,
        the PIN verified at the card (and a biometric match). Its `check_id` can be quoted later."""
        return engine.identity.check(make_key(t.terminal_id, req.terminal_serial), req.person_id, req.card_no,
                                     actor=t.terminal_id, pin_verified=req.pin_verified,
                                     card_authenticated=req.card_authenticated, card_id=req.card_id,
                                     biometric_passed=req.biometric_passed)

    @v1.get("/identity/checks/{check_id}", tags=["identity"], operation_id="get_identity_check")
    def get_identity_check(check_id: PathKey, t: Term) -> IdentityCheck:
        """A recorded identity check (the terminal's own, or any for an operator)."""
        scope.own_key(t, check_id)
        return engine.identity.check_record(check_id)

    @v1.get("/persons/{person_id}", tags=["persons"], operation_id="get_person")
    def get_person(person_id: PathId, t: Term, card: CardHeader = None) -> Person:
        """Person lookup (1101), with the person's card."""
        scope.card_proof(engine, t, person_id, card)
        return engine.registry.person(person_id)

    @v1.get("/persons/{person_id}/certification", tags=["identity"], operation_id="certification_status")
    def certification_status(person_id: PathId, t: Term, card: CardHeader = None) -> CertificationStatus:
        scope.card_proof(engine, t, person_id, card)
        return engine.identity.status(person_id)

    @v1.get("/persons/{person_id}/accumulators", tags=["persons"], operation_id="get_accumulators")
    def get_accumulators(person_id: PathId, t: Term, card: CardHeader = None,
                         year: Annotated[int | None, Query(ge=1900, le=9999)] = None) -> Accumulators:
        """The person's yearly accumulators (deductible used, cumulative amounts, what each fund paid)."""
        scope.card_proof(engine, t, person_id, card)
        return engine.medical.accumulators(person_id, year)

    @v1.get("/persons/{person_id}/balances", tags=["persons"], operation_id="person_balances")
    def person_balances(person_id: PathId, t: Term, card: CardHeader = None) -> PersonBalances:
        scope.card_proof(engine, t, person_id, card)
        engine.registry.person(person_id)
        b = engine.ledger.balances([chart.personal_account(person_id), chart.pensioner_account(person_id)])
        return PersonBalances(person_id=person_id, personal_account=b[chart.personal_account(person_id)],
                              pensioner_account=b[chart.pensioner_account(person_id)])

    @v1.get("/persons/{person_id}/self-service", tags=["persons"], operation_id="self_service")
    def self_service(person_id: PathId, t: Term, card_no: Annotated[str | None, Query(max_length=20)] = None,
                     card_id: Annotated[str | None, Query(max_length=32)] = None,
                     limit: Annotated[int, Query(ge=1, le=50)] = 10) -> SelfService:
        """A holder's own view (a kiosk's, with card and PIN at the terminal): card status, balances, this
        year's accumulators, recent settlements and pension payments. Only with the person's active card
        (`card_no` and/or `card_id`, as read from it): any other card is refused with its typed error."""
        card = engine.cards.proof(person_id, card_id=card_id, card_no=card_no)
        person = engine.registry.person(person_id)
        b = engine.ledger.balances([chart.personal_account(person_id), chart.pensioner_account(person_id)])
        try:
            pensioner = engine.pensions.pensioner(person_id)
        except InvalidState:
            pensioner = None
        return SelfService(person_id=person_id, name=person.name, card=card,
                           personal_account=b[chart.personal_account(person_id)],
                           pensioner_account=b[chart.pensioner_account(person_id)],
                           accumulators=engine.medical.accumulators(person_id),
                           settlements=engine.medical.recent(person_id, limit),
                           pension_payments=engine.pensions.payments(person_id, limit), pensioner=pensioner,
                           certification=engine.identity.status(person_id) if pensioner else None)

    @v1.get("/persons/{person_id}/audit", tags=["identity"], operation_id="audit_trail")
    def audit_trail(person_id: PathId, t: Oper) -> list[AuditEntry]:
        return engine.registry.audit_trail(person_id)

    @v1.post("/persons/{person_id}/death-report", tags=["persons"], operation_id="report_death")
    def report_death(person_id: PathId, req: DeathReportRequest, t: Oper) -> Person:
        """Record a death report: suspends the pension and flags benefits dated after it."""
        return engine.registry.report_death(person_id, req.death_date, actor=t.terminal_id, source=req.source)

    # -- cards ---------------------------------------------------------------------------------------------
    def actor(t: TerminalKey, operator: str) -> str:
        return f"{t.terminal_id}/{operator}"

    @v1.get("/cards/blacklist", tags=["cards"], operation_id="card_blacklist", response_model=BlacklistDelta)
    def card_blacklist(t: Term, since: Annotated[int, Query(ge=0)] = 0,
                       limit: Annotated[int, Query(ge=1, le=cards.MAX_DELTA)] = cards.MAX_DELTA) -> Response:
        """The card blacklist's changes after version `since` (entries `[card_no, card_id, status, application]`;
        see the schema). Terminals fetch it on start and on an interval, and keep it for offline use."""
        return Response(engine.cards.blacklist_json(since, limit), media_type="application/json")

    @v1.get("/cards/{card_no}", tags=["cards"], operation_id="get_card")
    def get_card(card_no: PathCardNo, t: Term) -> Card:
        """A card's status (a kiosk shows its holder their card's)."""
        return engine.cards.card(card_no)

    @v1.get("/cards/{card_no}/history", tags=["cards"], operation_id="card_history")
    def card_history(card_no: PathCardNo, t: Oper) -> list[AuditEntry]:
        """What happened to the card, who did it and why (operator)."""
        return engine.cards.history(card_no)

    @v1.post("/cards/{card_no}/report-lost", tags=["cards"], operation_id="report_card_lost")
    def report_card_lost(card_no: PathCardNo, req: CardStatusIn, t: Oper) -> Card:
        """挂失: the card goes on the blacklist and every transaction with it is refused (operator)."""
        return engine.cards.report_lost(card_no, actor=actor(t, req.operator), reason=req.reason)

    @v1.post("/cards/{card_no}/unlock", tags=["cards"], operation_id="unlock_card")
    def unlock_card(card_no: PathCardNo, req: CardStatusIn, t: Oper) -> Card:
        """解挂: a card reported lost is active again and leaves the blacklist (operator)."""
        return engine.cards.unlock(card_no, actor=actor(t, req.operator), reason=req.reason)

    @v1.post("/cards/{card_no}/cancel", tags=["cards"], operation_id="cancel_card")
    def cancel_card(card_no: PathCardNo, req: CardStatusIn, t: Oper) -> Card:
        """注销: the card is refused for good (operator)."""
        return engine.cards.cancel(card_no, actor=actor(t, req.operator), reason=req.reason)

    @v1.post("/cards/{card_no}/application", tags=["cards"], operation_id="report_card_application")
    def report_card_application(card_no: PathCardNo, req: ApplicationReport, t: Term) -> Card:
        """A terminal blocked (or unblocked) an application on the card at its counter."""
        return engine.cards.application_blocked(card_no, req.card_id, req.application, actor=t.terminal_id)

    @v1.get("/persons/{person_id}/cards", tags=["cards"], operation_id="person_cards")
    def person_cards(person_id: PathId, t: Oper) -> list[Card]:
        """The person's cards, the active one first, then newest first (operator)."""
        return engine.cards.cards_of(person_id)

    @v1.post("/persons/{person_id}/cards", tags=["cards"], operation_id="issue_card")
    def issue_card(person_id: PathId, req: CardIn, t: Oper) -> Card:
        """Enrol a personalised card as the person's active card (operator; refused while the person has an
        active or reported-lost card: replace it)."""
        return engine.cards.issue(person_id, **card_fields(req), actor=actor(t, req.operator), reason=req.reason)

    @v1.post("/persons/{person_id}/cards/replacement", tags=["cards"], operation_id="replace_card")
    def replace_card(person_id: PathId, req: CardIn, t: Oper) -> Card:
        """补换卡: the new card becomes active, the old one is replaced and blacklisted (operator)."""
        return engine.cards.replace(person_id, **card_fields(req), actor=actor(t, req.operator), reason=req.reason)

    # -- pensions ------------------------------------------------------------------------------------------
    @v1.post("/pension/collect", tags=["pension"], operation_id="collect_pension")
    async def collect_pension(req: CollectRequest, t: Term, card: CardHeader = None) -> Collection:
        """Pay pension out at the terminal's counter (also in another region), with the pensioner's card; needs
        a valid certification."""
        scope.own_institution(t, req.institution)
        card_no = card or req.card_no
        return await with_card(t, req.person_id, card_no, req.card_id, engine.pensions.collect_job(
            make_key(t.terminal_id, req.terminal_serial), req.person_id, req.amount, req.institution,
            actor=t.terminal_id, card_id=req.card_id, card_no=card_no))

    @v1.post("/pension/void", tags=["pension"], operation_id="void_collection")
    def void_collection(req: CollectionVoidRequest, t: Term) -> CollectionVoid:
        """Void (冲正) one of the terminal's own pension collections: the money goes back to the pensioner
        account. A void that arrives first leaves a tombstone, and the collection is refused with
        ALREADY_REVERSED when it lands. An operator voids any, with a reason."""
        scope.void(t, req.collection_key, req.reason)
        return engine.pensions.void(make_key(t.terminal_id, req.terminal_serial), req.collection_key,
                                    actor=t.terminal_id, reason=req.reason)

    @v1.post("/pension/issue", tags=["pension"], operation_id="issue_pensions")
    def issue_pensions(req: IssueRequest, t: Oper) -> IssueBatch:
        """Issue a month's entitlements for a region; idempotent per person and month."""
        return engine.pensions.issue_month(req.region, req.month, actor=t.terminal_id)

    @v1.get("/pension/pensioners/{person_id}", tags=["pension"], operation_id="get_pensioner")
    def get_pensioner(person_id: PathId, t: Term, card: CardHeader = None) -> Pensioner:
        scope.card_proof(engine, t, person_id, card)
        return engine.pensions.pensioner(person_id)

    # -- ledger and supervision ----------------------------------------------------------------------------
    @v1.get("/postings/{key}", tags=["ledger"], operation_id="get_posting")
    def get_posting(key: PathKey, t: Term) -> PostingOut:
        """A posting by its key (own keys only, unless operator)."""
        scope.own_key(t, key)
        p = engine.ledger.get(key)
        if p is None:
            raise UnknownTransaction(f"no posting {key!r}", key=key)
        return PostingOut(key=p.key, kind=p.kind, links_to=p.links_to, status=p.status, created_at=p.created_at,
                          transfers=[TransferOut(debit=x.debit, credit=x.credit, amount=x.amount, memo=x.memo)
                                     for x in p.transfers], payload=p.payload)

    @v1.get("/balances", tags=["ledger"], operation_id="get_balances")
    def get_balances(t: Oper, code: Annotated[list[str], Query(min_length=1)]) -> Balances:
        """Balances of ledger accounts (operator)."""
        return Balances(balances=engine.ledger.balances(code))

    @v1.get("/fraud/flags", tags=["supervision"], operation_id="fraud_flags")
    def fraud_flags(t: Oper, person_id: str | None = None, kind: str | None = None) -> list[Flag]:
        return engine.fraud.flags(person_id, kind)

    @v1.post("/fraud/scan", tags=["supervision"], operation_id="fraud_scan")
    def fraud_scan(t: Oper) -> list[Flag]:
        """Run all fraud detectors; returns the new flags."""
        return engine.fraud.scan()

    national = National(engine, keys, catalogue=national_catalogue)
    app.state.national = national
    app.include_router(national.router())  # before v1: a route is found by walking the list, and a HIS
    app.include_router(v1)                 # sends each message here (not on the lean path below)
    app.include_router(enrolment.router(engine, operator))
    lean = {"/v1/medical/visits": (RegisterRequest, register_visit), "/v1/medical/settle": (SettleRequest, settle),
            "/v1/medical/refund": (RefundRequest, refund), "/v1/pension/collect": (CollectRequest, collect_pension)}
    app.user_middleware.append(Middleware(LeanPath, routes=lean, keys=keys, key_header=KEY_HEADER,  # innermost
                                          error=_lean_refusal, route_headers=[scope.CARD_HEADER]))

    def known_key(asgi: Scope) -> bool | None:
        if asgi["path"] in PUBLIC:
            return None
        key = header(asgi, KEY_HEADER.lower().encode())
        return key is not None and keys.find(key.decode("latin-1")) is not None

    def refuse(asgi: Scope, refusal: Refusal) -> Response:
        if asgi["path"] in NATIONAL_PATHS:
            return national.refused(refusal)
        details = {} if refusal.limit is None else {"limit": refusal.limit}
        return JSONResponse({"code": refusal.code, "message": refusal.message, "details": details},
                            status_code=refusal.status)

    app.add_middleware(BodyGuard, authenticated=known_key, refuse=refuse,
                       limit=lambda asgi: NATIONAL_MAX_BODY if asgi["path"] in NATIONAL_PATHS
                       else ENROLMENT_MAX_BODY if asgi["path"].startswith("/v1/enrolment/") else MAX_BODY)
    return app
