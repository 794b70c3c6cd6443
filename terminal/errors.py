"""Every failure a front end can see: a stable code, a message a counter clerk can read, HTTP status, details.

Card errors, reader refusals and the settlement service's typed errors all arrive here and leave as one
body shape, `{code, message, details}` (the settlement service uses the same shape). The message a client
gets is the one `messages.toml` holds for the code, in the language it asked for (`render`); the message
given where the error is raised stays the text for logs and the fallback for codes without an entry.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from cardlib import errors as ce
from settlement.errors import ServiceUnreachable, SettlementError
from terminal.i18n import Lang, language, message
from terminal.session import SessionError


class TerminalError(Exception):
    def __init__(self, code: str, message: str, status: int = 400, /, **details: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.details = code, message, status, details

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}

    def render(self, lang: Lang) -> dict[str, Any]:
        """The error body in `lang`."""
        return {"code": self.code, "message": message(self.code, lang, self.details, self.message),
                "details": self.details}


def error_response(err: TerminalError, accept_language: str | None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error shape, in the language the client asked for."""
    lang = language(accept_language)
    return JSONResponse(err.render(lang), status_code=err.status,
                        headers={**(headers or {}), "Content-Language": lang})


#: cardlib error class -> (code, HTTP status); the clerk's message is in messages.toml, by code
CARD_ERRORS: list[tuple[type[Exception], str, int]] = [
    (ce.PinBlocked, "PIN_BLOCKED", 403),
    (ce.PinWrong, "PIN_WRONG", 403),
    (ce.CardRemoved, "CARD_REMOVED", 409),
    (ce.NoCard, "NO_CARD", 409),
    (ce.CardTimeout, "CARD_TIMEOUT", 504),
    (ce.ReaderUnavailable, "READER_UNAVAILABLE", 503),
    (ce.ReaderNotFound, "UNKNOWN_READER", 404),
    (ce.CounterfeitCard, "COUNTERFEIT_CARD", 403),
    (ce.CardBlocked, "CARD_BLOCKED", 403),
    (ce.ExternalAuthFailed, "TERMINAL_REJECTED", 502),
    (ce.SecurityModuleError, "SECURITY_MODULE_ERROR", 502),
    (ce.AuthenticationRequired, "CARD_NEEDS_AUTHENTICATION", 502),
    (ce.MalformedResponse, "CARD_ERROR", 502),
    (ce.StatusError, "CARD_ERROR", 502),
    (ce.TransportError, "READER_ERROR", 502),
    (ce.CardError, "CARD_ERROR", 502),
]


def from_card_error(e: ce.CardError) -> TerminalError:
    for cls, code, status in CARD_ERRORS:
        if isinstance(e, cls):
            details: dict[str, Any] = {"reason": str(e)}
            tries = getattr(e, "tries_left", None)
            if tries is not None:
                details["tries_left"] = tries
            return TerminalError(code, str(e), status, **details)
    return TerminalError("CARD_ERROR", str(e), 502)  # pragma: no cover - CardError is the last row


def from_settlement_error(e: SettlementError) -> TerminalError:
    if isinstance(e, ServiceUnreachable):
        return TerminalError("SETTLEMENT_UNAVAILABLE", "The settlement centre does not answer.", 503, **e.details)
    if e.code == "UNAUTHORIZED":
        # the centre refused the terminal's own key: not the front end's fault, nor something it can fix
        return TerminalError("TERMINAL_NOT_AUTHORIZED", e.message, 502, **e.details)
    return TerminalError(e.code, e.message, e.http_status if 400 <= e.http_status < 600 else 502, **e.details)


def from_session_error(e: SessionError) -> TerminalError:
    status = {"READER_BUSY": 409, "UNKNOWN_READER": 404}.get(e.code, 400)
    return TerminalError(e.code, e.message, status, reason=e.message)
