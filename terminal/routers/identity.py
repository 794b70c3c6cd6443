"""The holder's identity: card + PIN, the card authenticated by the PSAM or HSM, a biometric score."""

from __future__ import annotations

from fastapi import APIRouter

from terminal.models import IdentityCheckIn, IdentityResult
from terminal.routers.deps import WRITE, TerminalDep, answers

router = APIRouter(tags=["identity"])


@router.post("/v1/identity/check", operation_id="checkIdentity", dependencies=WRITE, response_model=IdentityResult,
             responses=answers(IdentityResult))
def identity_check(t: TerminalDep, body: IdentityCheckIn) -> IdentityResult:
    """Card + PIN (checked by the card), the card authenticated by PSAM/HSM, optional biometric score."""
    return IdentityResult(**t.identity_check(body.reader, body.pin.get_secret_value(), body.biometric_score))
