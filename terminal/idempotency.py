"""`Idempotency-Key` on every write: a retried request gets the first answer, not a second transaction.

Follows the IETF draft "The Idempotency-Key HTTP Header Field" (draft-ietf-httpapi-idempotency-key-header):
- a POST with `Idempotency-Key: K` is run once per client (bearer token) and key; its answer is kept and a
  retry with the same key and the same request gets that answer again, with `Idempotent-Replayed: true`;
- the same key with another request (method, path or body) is refused with 422 `IDEMPOTENCY_KEY_REUSED`
  naming the key; a retry while the first is still running gets 409 `IDEMPOTENCY_KEY_IN_FLIGHT`;
- answers that did nothing are not kept, so a retry runs for real: a malformed request (422
  INVALID_REQUEST), a missing token (401), a busy reader (409 READER_BUSY), an internal error (500).
A refusal that did something is kept (PIN_WRONG: a retry must not cost the holder another try).

The PIN is not part of a request's fingerprint (it is never written anywhere, hashed or not: a 6-digit PIN
under a plain hash is found by trying a million); a retry is a retry whatever PIN it carries. Keys live in
the journal's database for `RETENTION` and a request interrupted by a restart answers
409 `IDEMPOTENCY_KEY_INTERRUPTED` (its outcome is in the journal, resolved by recovery).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from terminal.clock import utc_now
from terminal.errors import TerminalError, error_response

HEADER = "Idempotency-Key"
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"  # printable ASCII, no spaces
RETENTION = dt.timedelta(days=7)
MAX_BODY = 1 << 20
NOT_KEPT = frozenset({"INVALID_REQUEST", "UNAUTHORIZED", "READER_BUSY", "INTERNAL_ERROR", "CORS_ORIGIN_NOT_ALLOWED"})
SECRET_FIELDS = frozenset({"pin"})
EXEMPT = (
    "/v1/bridge",  # the reader bridge: function calls that carry PINs in their own names, never kept
    "/v1/kiosk",  # a holder's own view: never kept, never replayed (the PIN is not in a fingerprint, so a replay
                  # would show it to whoever repeats the key at the same kiosk)
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency (
    client      TEXT NOT NULL,
    key         TEXT NOT NULL,
    method      TEXT NOT NULL,
    path        TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state       TEXT NOT NULL,          -- in_flight | done | interrupted
    status      INTEGER,
    headers     TEXT,
    body        BLOB,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (client, key)
);
CREATE INDEX IF NOT EXISTS idempotency_created ON idempotency (created_at);
"""


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items() if k not in SECRET_FIELDS}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def fingerprint(method: str, path: str, body: bytes) -> str:
    """What identifies a request: method, path and body (canonical JSON without secrets, else the bytes)."""
    try:
        canon = json.dumps(_scrub(json.loads(body)), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        data = canon.encode()
    except (ValueError, UnicodeDecodeError):
        data = b"raw:" + body
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + data).hexdigest()


class IdempotencyStore:
    """Kept answers, in the journal's SQLite file (its own connection)."""

    def __init__(self, path: str | Path, now: Callable[[], dt.datetime] = utc_now) -> None:
        self._now = now
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("UPDATE idempotency SET state = 'interrupted' WHERE state = 'in_flight'")
            self._db.execute("DELETE FROM idempotency WHERE created_at < ?",
                             ((self._now() - RETENTION).isoformat(),))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def claim(self, client: str, key: str, method: str, path: str, fp: str) -> tuple[str, sqlite3.Row | None]:
        """('new', None) when this request may run; else ('replay'|'reused'|'in_flight'|'interrupted', row)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT * FROM idempotency WHERE client = ? AND key = ?",
                                       (client, key)).fetchone()
                if row is None:
                    self._db.execute(
                        "INSERT INTO idempotency (client, key, method, path, fingerprint, state, created_at)"
                        " VALUES (?,?,?,?,?,'in_flight',?)", (client, key, method, path, fp, self._now().isoformat()))
                    outcome: tuple[str, Any] = ("new", None)
                elif row[4] != fp:
                    outcome = ("reused", row)
                else:
                    outcome = ({"done": "replay"}.get(row[5], row[5]), row)
            finally:
                self._db.execute("COMMIT")
        return outcome

    def keep(self, client: str, key: str, status: int, headers: dict[str, str], body: bytes) -> None:
        with self._lock:
            self._db.execute("UPDATE idempotency SET state = 'done', status = ?, headers = ?, body = ?"
                             " WHERE client = ? AND key = ?", (status, json.dumps(headers), body, client, key))

    def release(self, client: str, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM idempotency WHERE client = ? AND key = ? AND state = 'in_flight'",
                             (client, key))


class IdempotencyMiddleware:
    """Runs each keyed write once per client and key (pure ASGI: the answer is captured as sent)."""

    def __init__(self, app: ASGIApp, store: IdempotencyStore) -> None:
        self.app, self.store = app, store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope) if scope["type"] == "http" else None
        key = headers.get(HEADER.lower()) if headers is not None else None
        if (headers is None or key is None or scope["method"] not in ("POST", "PUT", "PATCH", "DELETE")
                or scope["path"].startswith(EXEMPT)):
            await self.app(scope, receive, send)
            return
        lang = headers.get("accept-language")
        if not re.fullmatch(KEY_PATTERN, key):
            err = TerminalError("INVALID_REQUEST", f"{HEADER}: 1-255 printable ASCII characters", 422,
                                where=HEADER, errors=[{"loc": ["header", HEADER], "msg": "invalid key"}])
            await error_response(err, lang)(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_BODY:
                err = TerminalError("INVALID_REQUEST", "request body too large", 413, where="body")
                await error_response(err, lang)(scope, receive, send)
                return
        client = hashlib.sha256(headers.get("authorization", "").encode()).hexdigest()[:32]
        path = scope["path"]
        fp = fingerprint(scope["method"], path, body)
        outcome, row = await anyio.to_thread.run_sync(self.store.claim, client, key, scope["method"], path, fp)
        if outcome != "new":
            await self._answer(outcome, row, key, lang, scope, receive, send)
            return
        await self._run(client, key, body, scope, receive, send)

    async def _answer(self, outcome: str, row: sqlite3.Row, key: str, lang: str | None, scope: Scope,
                      receive: Receive, send: Send) -> None:
        if outcome == "replay":
            headers = json.loads(row[7]) | {"Idempotent-Replayed": "true"}
            await send({"type": "http.response.start", "status": row[6],
                        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]})
            await send({"type": "http.response.body", "body": row[8]})
            return
        if outcome == "reused":
            err = TerminalError("IDEMPOTENCY_KEY_REUSED", f"{HEADER} {key} was used for another request "
                                f"({row[2]} {row[3]})", 422, key=key, first_request=f"{row[2]} {row[3]}")
        elif outcome == "in_flight":
            err = TerminalError("IDEMPOTENCY_KEY_IN_FLIGHT", f"{HEADER} {key} is still being processed", 409,
                                key=key)
        else:
            err = TerminalError("IDEMPOTENCY_KEY_INTERRUPTED", f"{HEADER} {key} was interrupted by a restart", 409,
                                key=key)
        await error_response(err, lang)(scope, receive, send)

    async def _run(self, client: str, key: str, body: bytes, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request, keep its answer, then send it: a retry that follows the answer finds it kept."""
        sent = False
        start: Message = {}
        chunks: list[bytes] = []

        async def replay_body() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the client to go, as the server would

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self.app(scope, replay_body, capture)
        except BaseException:
            await anyio.to_thread.run_sync(self.store.release, client, key)
            raise
        status = start.get("status", 500)
        content = b"".join(chunks)
        response_headers = {k.decode(): v.decode() for k, v in start.get("headers", [])
                            if k.decode().lower() in ("content-type", "content-language")}
        if _keep(status, content):
            await anyio.to_thread.run_sync(self.store.keep, client, key, status, response_headers, content)
        else:
            await anyio.to_thread.run_sync(self.store.release, client, key)
        await send(start)
        await send({"type": "http.response.body", "body": content})


def _keep(status: int, body: bytes) -> bool:
    if status >= 500 and status not in (502, 503, 504):
        return False
    if status < 400:
        return True
    try:
        code = json.loads(body).get("code")
    except (ValueError, AttributeError):
        return False
    return code not in NOT_KEPT and not str(code).startswith(("IDEMPOTENCY_KEY_", "EVENTS_TOKEN"))
