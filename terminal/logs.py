"""The daemon's structured logs: one JSON object per line (python-json-logger), rotated by size.

Events (`event` field), each with the transaction key or the reader it is about:
- `transaction.begin|confirmed|failed|reversed|retry`: every journal transition (settlements, refunds,
  pension collections, registrations, certifications, and voids, i.e. reversals), logged by the journal;
- `recovery`: what a recovery pass resolved; `reader.inserted|removed|...`: card and reader events;
- `http.request`: method, route template, status, milliseconds (never the query string: it may carry an
  events token); `daemon.start|stop`; errors with their traceback.

Never logged: a PIN, a PIN block, a key or a token (bearer, events, the centre's API key), nor the
holder's name or ID number (the journal has them; a log line names the transaction key). `Scrub` drops any
field with a secret's name from a record, a last guard should a caller pass one by mistake.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path
from typing import Any

from pythonjsonlogger.json import JsonFormatter

SECRET_FIELDS = frozenset({"pin", "pin_block", "token", "access_token", "api_key", "authorization", "key_material",
                           "holder_name", "person_id", "social_security_number"})
QUIET = ("httpx", "httpcore", "uvicorn.access")

log = logging.getLogger("sscard.terminal")


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event with its fields (secret-named fields are dropped by `Scrub`)."""
    log.log(level, name, extra={"event": name, **fields})


class Scrub(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for k in SECRET_FIELDS & set(record.__dict__):
            delattr(record, k)
        return True


class StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record comes (a test runner swaps it, and closes the old one,
    while the daemon's threads go on logging)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr


def formatter() -> JsonFormatter:
    return JsonFormatter("{asctime}{levelname}{name}{message}", style="{", timestamp=False,
                         rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                         json_ensure_ascii=False)


def setup(file: str, level: str = "info", max_bytes: int = 10_000_000, backups: int = 5) -> logging.Handler:
    """Send every log record (ours, uvicorn's) as JSON lines to `file` (rotated), or to stderr if `file` is ''."""
    handler: logging.Handler
    if file:
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(file, maxBytes=max_bytes, backupCount=backups,
                                                       encoding="utf-8")
    else:
        handler = StderrHandler()
    handler.setFormatter(formatter())
    handler.addFilter(Scrub())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    return handler
