"""The terminal daemon's HTTP API: what a hospital HIS, a kiosk or a counter app calls.

OpenAPI (at /openapi.json, browsable at /docs) is the contract. Every call but /health and /metrics needs
`Authorization: Bearer <token>` (tokens are configured as SHA-256 hashes). Errors are
`{code, message, details}` with a stable code; amounts are integer fen with the national platform's field
names. The daemon binds 127.0.0.1 unless configured otherwise.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from cardlib.errors import CardError
from settlement.errors import SettlementError
from settlement.wire import ErrorBody, FeeLineIn, yuan
from terminal import metrics
from terminal.errors import TerminalError, from_card_error, from_session_error, from_settlement_error
from terminal.flows import Terminal
from terminal.journal import JournalError, business_day_today
from terminal.session import SessionError

Ident = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$",
                             description="an id the centre gave (mdtrt_id, setl_id) or a transaction key")]
ReaderName = Annotated[str | None, Field(None, description="reader name; default: the counter's user-card reader")]
Pin = Annotated[SecretStr, Field(description="the holder's PIN (6 digits), typed at the counter's PIN pad")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IdentityCheckIn(_In):
    reader: ReaderName = None
    pin: Pin
    biometric_score: float | None = Field(None, ge=0, le=1, description="match score from a face/fingerprint device")


class VisitIn(_In):
    reader: ReaderName = None
    care: Literal["outpatient", "inpatient"] = "outpatient"


class PreSettleIn(_In):
    lines: list[FeeLineIn] = Field(min_length=1, max_length=500)
    use_account: bool = True


class SettleIn(PreSettleIn):
    reader: ReaderName = None
    pin: Pin


class RefundIn(_In):
    amount: int | None = Field(None, ge=1, le=10**12, description="fen to refund; omitted: all that is left")


class CertifyIn(_In):
    reader: ReaderName = None
    pin: SecretStr | None = None
    biometric_score: float | None = Field(None, ge=0, le=1)
    modality: Literal["face", "fingerprint"] | None = None
    device_id: str | None = Field(None, max_length=64)


class CollectIn(_In):
    reader: ReaderName = None
    pin: Pin
    amount: int = Field(ge=1, le=10**10, description="fen to pay out")


class Receipt(BaseModel):
    key: str
    kind: str
    state: str
    terminal_id: str
    terminal_number: str
    institution: str
    business_day: str
    at: str
    person_id: str | None
    card_no: str | None
    amount: int
    breakdown: dict[str, Any]
    response: dict[str, Any]
    card_record: str | None
    reason: str | None


ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": ErrorBody} for s in (401, 403, 404, 409, 422, 502, 503)}


def receipt_text(r: dict[str, Any]) -> str:
    """A receipt for the counter's printer (fixed width, amounts in yuan)."""
    lines = [
        "社会保障卡结算凭证 / settlement receipt",
        f"{'terminal':<16}{r['terminal_id']} ({r['terminal_number'] or '-'})",
        f"{'institution':<16}{r['institution']}",
        f"{'transaction':<16}{r['kind']} {r['key']}",
        f"{'state':<16}{r['state']}",
        f"{'time':<16}{r['at']}",
        f"{'card':<16}{r['card_no'] or '-'}",
        f"{'amount':<16}{yuan(r['amount'])}",
    ]
    for k, v in r["breakdown"].items():
        if isinstance(v, int) and not isinstance(v, bool):
            lines.append(f"  {k:<22}{yuan(v):>14}")
    lines.append(f"{'card record':<16}{r['card_record'] or '-'}")
    if r.get("reason"):
        lines.append(f"{'note':<16}{r['reason']}")
    return "\n".join(lines) + "\n"


_bearer = HTTPBearer(auto_error=False, description="a front end's bearer token (configured as its SHA-256)")


def require_token(request: Request, cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    t: Terminal = request.app.state.terminal
    if cred is None or not t.config.token_ok(cred.credentials):
        raise TerminalError("UNAUTHORIZED", "A valid bearer token is required.", 401)


def create_app(t: Terminal) -> FastAPI:
    app = FastAPI(
        title="sscard terminal daemon",
        version="1.0",
        summary="Card reading, identity checks, hospital-visit settlement and pension collection at a counter.",
        description=__doc__,
    )
    app.state.terminal = t
    Auth = Depends(require_token)

    def handler(convert):
        def respond(request: Request, e: Exception) -> JSONResponse:
            err = convert(e)
            return JSONResponse(err.to_dict(), status_code=err.status)

        return respond

    for exc, convert in ((TerminalError, lambda e: e), (SessionError, from_session_error),
                         (CardError, from_card_error), (SettlementError, from_settlement_error)):
        app.add_exception_handler(exc, handler(convert))

    @app.exception_handler(JournalError)
    def _journal_error(request: Request, e: JournalError) -> JSONResponse:
        return JSONResponse({"code": "UNKNOWN_TRANSACTION", "message": str(e), "details": {}}, status_code=404)

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(x.get("loc", ())), "msg": x.get("msg", "")} for x in e.errors()]
        first = errors[0] if errors else {"loc": [], "msg": "invalid"}
        where = ".".join(str(p) for p in first["loc"])
        return JSONResponse({"code": "INVALID_REQUEST", "message": f"{where}: {first['msg']}",
                             "details": {"errors": errors}}, status_code=422)

    @app.middleware("http")
    async def _count(request: Request, call_next):
        t0 = time.perf_counter()
        response = await call_next(request)
        path = getattr(request.scope.get("route"), "path", "unmatched")
        metrics.requests.labels(path, str(response.status_code)).inc()
        if path != "/v1/readers/events":
            metrics.latency.labels(path).observe(time.perf_counter() - t0)
        return response

    # ---- service --------------------------------------------------------------------------------------
    @app.get("/health", tags=["service"])
    def health() -> dict[str, Any]:
        """Liveness and what the journal holds."""
        return {"status": "ok", "terminal_id": t.config.terminal.id, "journal": t.journal.counts()}

    @app.get("/metrics", tags=["service"], response_class=PlainTextResponse)
    def prometheus() -> Response:
        """Prometheus metrics: transactions by outcome, flow latency, HTTP requests, reader errors."""
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    # ---- readers and cards ------------------------------------------------------------------------------
    @app.get("/v1/readers", tags=["card"], dependencies=[Auth], responses=ERRORS)
    def readers() -> list[dict[str, Any]]:
        """The counter's readers, whether each is busy, and the card in it."""
        return [s.status() for s in t.sessions.values()]

    @app.get("/v1/readers/events", tags=["card"], dependencies=[Auth], responses=ERRORS,
             response_class=StreamingResponse)
    def reader_events(
        reader: Annotated[str | None, Query(max_length=128)] = None,
        timeout: Annotated[float, Query(ge=0, le=3600)] = 300,
    ) -> StreamingResponse:
        """Server-sent events: `card` events with `{"kind": "inserted"|"removed", "reader", "at"}`."""
        s = t.session(reader)

        def stream() -> Iterator[str]:
            deadline = time.monotonic() + timeout
            last = s.events[-1][0] if s.events else 0
            yield ": connected\n\n"
            while time.monotonic() < deadline:
                for n, ev in s.wait_events(last, min(5.0, max(0.0, deadline - time.monotonic()))):
                    last = n
                    yield f"id: {n}\nevent: card\ndata: {json.dumps(ev.__dict__)}\n\n"
                yield ": keep-alive\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    @app.get("/v1/card", tags=["card"], dependencies=[Auth], responses=ERRORS)
    def read_card(reader: Annotated[str | None, Query(max_length=128)] = None,
                  national: bool = False) -> dict[str, Any]:
        """The card's basic data (no PIN needed); `national=true` adds the national interface string."""
        s = t.session(reader)
        with s.claim("read"):
            info = s.read()
        out = info.to_dict()
        if national:
            out["national"] = info.national(t.terminal_number, t.config.terminal.id)
        return out

    # ---- identity ------------------------------------------------------------------------------------
    @app.post("/v1/identity/check", tags=["identity"], dependencies=[Auth], responses=ERRORS)
    def identity_check(body: IdentityCheckIn) -> dict[str, Any]:
        """Card + PIN (checked by the card), the card authenticated by PSAM/HSM, optional biometric score."""
        return t.identity_check(body.reader, body.pin.get_secret_value(), body.biometric_score)

    # ---- hospital visits ------------------------------------------------------------------------------
    @app.post("/v1/visits", tags=["visit"], dependencies=[Auth], responses=ERRORS)
    def register_visit(body: VisitIn) -> dict[str, Any]:
        """Register a visit (2201/2303) for the card in the reader."""
        return t.register_visit(body.reader, body.care)

    @app.post("/v1/visits/{mdtrt_id}/presettle", tags=["visit"], dependencies=[Auth], responses=ERRORS)
    def presettle(mdtrt_id: Ident, body: PreSettleIn) -> dict[str, Any]:
        """Pre-settle (2206): the split the patient would pay; nothing is posted."""
        return t.presettle(mdtrt_id, body.lines, body.use_account)

    @app.post("/v1/visits/{mdtrt_id}/settle", tags=["visit"], dependencies=[Auth], responses=ERRORS,
              response_model=Receipt)
    def settle(mdtrt_id: Ident, body: SettleIn) -> dict[str, Any]:
        """Settle (2207) with the holder's PIN; the transaction record is then written to the card."""
        return t.settle(body.reader, mdtrt_id, body.lines, body.pin.get_secret_value(), body.use_account)

    @app.post("/v1/settlements/{setl_id}/refund", tags=["visit"], dependencies=[Auth], responses=ERRORS,
              response_model=Receipt)
    def refund(setl_id: Ident, body: RefundIn) -> dict[str, Any]:
        """Refund all or part of a settlement (linked to it, never more than was paid)."""
        return t.refund(None, setl_id, body.amount)

    # ---- pensions ------------------------------------------------------------------------------------
    @app.post("/v1/pension/certify", tags=["pension"], dependencies=[Auth], responses=ERRORS)
    def certify(body: CertifyIn) -> dict[str, Any]:
        """Eligibility certification: card + PIN, or a biometric match score.

        With the PIN: the card verifies it first (PIN_WRONG with tries_left), then the PSAM (or the HSM)
        enciphers it into a PIN block that the centre checks online against the PIN reference recorded at
        issuance. A PIN the card accepts but the centre does not know gives `passed: false`,
        `failure: "pin_wrong"`; nothing else changes. Neither the PIN nor the block is journaled or logged."""
        pin = body.pin.get_secret_value() if body.pin is not None else None
        return t.certify(body.reader, pin, body.biometric_score, body.modality, body.device_id)

    @app.post("/v1/pension/collect", tags=["pension"], dependencies=[Auth], responses=ERRORS,
              response_model=Receipt)
    def collect(body: CollectIn) -> dict[str, Any]:
        """Pay out pension at the counter (needs a certification no older than 12 months). Pay the cash only on
        a 200: no answer from the centre (503) or the card pulled in flight (409) reverses the collection."""
        return t.collect_pension(body.reader, body.pin.get_secret_value(), body.amount)

    @app.get("/v1/pension/status", tags=["pension"], dependencies=[Auth], responses=ERRORS)
    def pension_status(reader: Annotated[str | None, Query(max_length=128)] = None) -> dict[str, Any]:
        """Benefit status and certification of the card's holder."""
        return t.pension_status(reader)

    # ---- receipts and history ---------------------------------------------------------------------------
    @app.get("/v1/receipts/{key}", tags=["history"], dependencies=[Auth], responses=ERRORS,
             response_model=Receipt)
    def receipt(key: Ident,
                format: Literal["json", "text"] = "json") -> Any:  # noqa: A002 - the query parameter's name
        """A transaction's receipt, as JSON or as printable text (`format=text`)."""
        r = t.receipt(t.journal.get(key))
        if format == "text":
            return PlainTextResponse(receipt_text(r))
        return r

    @app.get("/v1/transactions", tags=["history"], dependencies=[Auth], responses=ERRORS)
    def transactions(card_no: Annotated[str | None, Query(max_length=32)] = None,
                     day: dt.date | None = None) -> list[Receipt]:
        """Transaction history by card number or by business day (today when neither is given)."""
        entries = t.journal.by_card(card_no) if card_no else t.journal.by_day(day or business_day_today())
        return [Receipt(**t.receipt(e)) for e in entries]

    return app
