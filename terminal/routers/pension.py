"""Pensions: eligibility certification, collection at the counter, status."""

from __future__ import annotations

from fastapi import APIRouter

from terminal.i18n import Lang, label
from terminal.models import Certification, CertifyIn, CollectIn, PensionStatus, Receipt
from terminal.routers.deps import READ, WRITE, LangDep, TerminalDep, answers, receipt_of
from terminal.routers.readers import ReaderQuery

router = APIRouter(tags=["pension"])


def summary(cert: dict, lang: Lang) -> str:
    """A certification's outcome in a sentence for the clerk."""
    if cert["passed"]:
        until = cert.get("valid_until") or "-"
        return f"认证通过，有效期至 {until}。" if lang == "zh" else f"Certified, valid until {until}."
    why = label(f"failure.{cert.get('failure')}", lang) if cert.get("failure") else cert["reason"]
    return f"认证未通过：{why}。" if lang == "zh" else f"Not certified: {why}."


@router.post("/v1/pension/certify", operation_id="certifyPensioner", dependencies=WRITE,
             response_model=Certification, responses=answers(Certification))
def certify(t: TerminalDep, body: CertifyIn, lang: LangDep) -> Certification:
    """Eligibility certification: card + PIN, or a biometric match score.

    With the PIN: the card verifies it first (PIN_WRONG with tries_left), then the PSAM (or the HSM)
    enciphers it into a PIN block that the centre checks online against the PIN reference recorded at
    issuance. A PIN the card accepts but the centre does not know gives `passed: false`,
    `failure: "pin_wrong"`; nothing else changes. Neither the PIN nor the block is journaled or logged."""
    pin = body.pin.get_secret_value() if body.pin is not None else None
    cert = t.certify(body.reader, pin, body.biometric_score, body.modality, body.device_id)
    return Certification(**cert, summary=summary(cert, lang))


@router.post("/v1/pension/collect", operation_id="collectPension", dependencies=WRITE, response_model=Receipt,
             responses=answers(Receipt))
def collect(t: TerminalDep, body: CollectIn, lang: LangDep) -> Receipt:
    """Pay out pension at the counter (needs a certification no older than 12 months). Pay the cash only on
    a 200: no answer from the centre (503) or the card pulled in flight (409) reverses the collection."""
    entry = t.collect_pension(body.reader, body.pin.get_secret_value(), body.amount)
    return Receipt(**receipt_of(t, entry, lang))


@router.get("/v1/pension/status", operation_id="getPensionStatus", dependencies=READ, response_model=PensionStatus,
            responses=answers(PensionStatus))
def pension_status(t: TerminalDep, lang: LangDep, reader: ReaderQuery = None) -> PensionStatus:
    """Benefit status and certification of the card's holder."""
    status = t.pension_status(reader)
    return PensionStatus(**status, status_label=label(f"benefit.{status['pensioner']['status']}", lang))
