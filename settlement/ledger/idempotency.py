"""Idempotency keys (terminal id + terminal serial number) and request fingerprints.

A key names one request forever: a repeat with the same key and the same request returns the first
result; the same key with a different request is IdempotencyConflict.
"""

from __future__ import annotations

import hashlib
import json
import re

from settlement.errors import InvalidRequest

_PART = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def make_key(terminal_id: str, serial: str) -> str:
    """`terminal_id:serial`; both parts 1-64 characters of letters, digits, '_', '.', '-'."""
    for name, value in (("terminal_id", terminal_id), ("terminal_serial", serial)):
        if type(value) is not str or not _PART.fullmatch(value):
            raise InvalidRequest(f"{name} must be 1-64 letters, digits, '_', '.' or '-': {value!r:.80}", field=name)
    return f"{terminal_id}:{serial}"


def check_key(key: object, field: str = "key") -> str:
    """`key` if it is an idempotency key as `make_key` makes them (InvalidRequest naming `field` otherwise:
    empty, too long, control characters...); the message never quotes it."""
    terminal_id, sep, serial = key.partition(":") if type(key) is str else ("", "", "")
    if not (sep and _PART.fullmatch(terminal_id) and _PART.fullmatch(serial)):
        raise InvalidRequest(f"{field} must be a key terminal_id:serial, each part 1-64 letters, digits, '_', '.' "
                             "or '-'", field=field)
    return key  # type: ignore[return-value]


def issued_by(key: str, terminal_id: str) -> bool:
    """Whether terminal `terminal_id` issued `key` (`terminal_id:serial`)."""
    return key.startswith(terminal_id) and key[len(terminal_id):len(terminal_id) + 1] == ":"


def request_hash(kind: str, data: object) -> str:
    """A stable fingerprint of a request (kind + JSON of its fields)."""
    body = json.dumps([kind, data], sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.blake2b(body.encode(), digest_size=16).hexdigest()
