"""Every failure a front end can see: a stable code, a message a counter clerk can read, HTTP status, details.

Card errors, reader refusals and the settlement service's typed errors all arrive here and leave as one
body shape, `{code, message, details}` (the settlement service uses the same shape).
"""

from __future__ import annotations

from typing import Any

from cardlib import errors as ce
from settlement.errors import ServiceUnreachable, SettlementError
from terminal.session import SessionError


class TerminalError(Exception):
    def __init__(self, code: str, message: str, status: int = 400, /, **details: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.details = code, message, status, details

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


#: cardlib error class -> (code, HTTP status, message for the clerk)
CARD_ERRORS: list[tuple[type[Exception], str, int, str]] = [
    (ce.PinBlocked, "PIN_BLOCKED", 403, "The card's PIN is blocked; it must be unblocked at a service hall."),
    (ce.PinWrong, "PIN_WRONG", 403, "Wrong PIN."),
    (ce.CardRemoved, "CARD_REMOVED", 409, "The card was removed."),
    (ce.NoCard, "NO_CARD", 409, "There is no card in the reader."),
    (ce.CardTimeout, "CARD_TIMEOUT", 504, "The card did not answer in time."),
    (ce.ReaderUnavailable, "READER_UNAVAILABLE", 503, "The card reader (or its PC/SC service) is not available."),
    (ce.ReaderNotFound, "UNKNOWN_READER", 404, "No such card reader."),
    (ce.CounterfeitCard, "COUNTERFEIT_CARD", 403, "The card failed authentication: it is not a genuine card."),
    (ce.CardBlocked, "CARD_BLOCKED", 403, "The card is blocked."),
    (ce.ExternalAuthFailed, "TERMINAL_REJECTED", 502, "The card rejected this terminal's security module."),
    (ce.SecurityModuleError, "SECURITY_MODULE_ERROR", 502, "The PSAM or HSM could not serve this card."),
    (ce.MalformedResponse, "CARD_ERROR", 502, "The card gave an answer that makes no sense."),
    (ce.StatusError, "CARD_ERROR", 502, "The card refused a command."),
    (ce.TransportError, "READER_ERROR", 502, "The card reader failed."),
    (ce.CardError, "CARD_ERROR", 502, "Card error."),
]


def from_card_error(e: ce.CardError) -> TerminalError:
    for cls, code, status, message in CARD_ERRORS:
        if isinstance(e, cls):
            details: dict[str, Any] = {"reason": str(e)}
            tries = getattr(e, "tries_left", None)
            if tries is not None:
                details["tries_left"] = tries
                if code == "PIN_WRONG":
                    message = f"Wrong PIN: {tries} tries left."
            return TerminalError(code, message, status, **details)
    return TerminalError("CARD_ERROR", str(e), 502)  # pragma: no cover - CardError is the last row


def from_settlement_error(e: SettlementError) -> TerminalError:
    if isinstance(e, ServiceUnreachable):
        return TerminalError("SETTLEMENT_UNAVAILABLE", "The settlement centre does not answer.", 503, **e.details)
    return TerminalError(e.code, e.message, e.http_status if 400 <= e.http_status < 600 else 502, **e.details)


def from_session_error(e: SessionError) -> TerminalError:
    status = {"READER_BUSY": 409, "UNKNOWN_READER": 404}.get(e.code, 400)
    return TerminalError(e.code, e.message, status)
