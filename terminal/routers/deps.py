"""What every router shares: the terminal, the caller's token and language, documented answers."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import Depends, Header, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from terminal.errors import TerminalError
from terminal.flows import Terminal
from terminal.i18n import Lang, language
from terminal.idempotency import HEADER, KEY_PATTERN
from terminal.journal import Entry
from terminal.models import ErrorBody
from terminal.receipts import receipt

Ident = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$",
                            description="an id the centre gave (mdtrt_id, setl_id) or a transaction key")]

bearer = HTTPBearer(auto_error=False, description="a front end's bearer token (configured as its SHA-256)")


def get_terminal(request: Request) -> Terminal:
    return request.app.state.terminal


TerminalDep = Annotated[Terminal, Depends(get_terminal)]


def client_of(credentials: str) -> str:
    """A caller's identity for logs and scopes: a prefix of its token's hash, never the token."""
    return hashlib.sha256(credentials.encode()).hexdigest()[:12]


def require_token(request: Request, cred: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
    t: Terminal = request.app.state.terminal
    if cred is None or not t.config.token_ok(cred.credentials):
        raise TerminalError("UNAUTHORIZED", "A valid bearer token is required.", 401)
    return client_of(cred.credentials)


def get_lang(accept_language: Annotated[str | None, Header(
        max_length=256, description="zh (Chinese) or en (English, the default) for messages and labels")] = None
             ) -> Lang:
    return language(accept_language)


def idempotency_key(key: Annotated[str | None, Header(
        alias=HEADER, pattern=KEY_PATTERN,
        description="any unique string per intended write (a UUID): a retry with the same key and request gets "
                    "the first answer (with `Idempotent-Replayed: true`); the same key with another request is "
                    "refused with 422 IDEMPOTENCY_KEY_REUSED")] = None) -> None:
    """Documents the header; `terminal.idempotency.IdempotencyMiddleware` does the work."""


Auth = Depends(require_token)
LangDep = Annotated[Lang, Depends(get_lang)]
WRITE = [Auth, Depends(idempotency_key)]
READ = [Auth]

_ERROR_EXAMPLES: dict[int, tuple[str, str, dict[str, Any]]] = {
    401: ("UNAUTHORIZED", "A valid bearer token is required.", {}),
    403: ("PIN_WRONG", "Wrong PIN: 2 tries left.", {"tries_left": 2}),
    404: ("UNKNOWN_VISIT", "No registered visit with that id.", {}),
    409: ("READER_BUSY", "The reader is busy with another flow.", {"reason": "reader busy with settle"}),
    422: ("INVALID_REQUEST", "The request is malformed: body.pin.", {"where": "body.pin", "errors": []}),
    429: ("TOO_MANY_STREAMS", "8 event streams are open already for this token.", {"limit": 8}),
    503: ("SETTLEMENT_UNAVAILABLE", "The settlement centre does not answer.", {}),
}


def _error(status: int) -> dict[str, Any]:
    code, message, details = _ERROR_EXAMPLES.get(status, ("CARD_ERROR", "The card refused a command.", {}))
    return {"model": ErrorBody, "description": "an error (one shape for every status)",
            "content": {"application/json": {"example": {"code": code, "message": message, "details": details}}}}


def answers(model: type[BaseModel] | None = None, *, many: bool = False, media: str = "application/json",
            example: Any = None, errors: tuple[int, ...] = (401, 403, 404, 409, 422, 503)
            ) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the success's example (from the model) and the error shape for the rest."""
    if example is None and model is not None:
        example = (model.model_config.get("json_schema_extra") or {}).get("examples", [None])[0]
        example = [example] if many else example
    out: dict[int | str, dict[str, Any]] = {s: _error(s) for s in errors}
    out["default"] = _error(502) | {"description": "any other error, same shape"}
    if media != "application/json":  # errors stay JSON: name their schema, or FastAPI files it under `media`
        for v in out.values():
            del v["model"]
            v["content"]["application/json"]["schema"] = {"$ref": "#/components/schemas/ErrorBody"}
    out[200] = {"content": {media: {"example": example}}}
    return out


def receipt_of(t: Terminal, entry: Entry, lang: Lang) -> dict[str, Any]:
    """The receipt of a journal entry at this terminal."""
    c = t.config.terminal
    return receipt(entry, terminal_id=c.id, terminal_number=t.terminal_number, institution=c.institution,
                   institution_name=c.institution_name, lang=lang)
