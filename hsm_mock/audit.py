"""The audit trail: one entry per command with its client, name, key labels, result code, time and duration.

Entries never hold key, PIN, PIN-block, card-id or message material: `AuditEntry` has no field for it.
The client is the authenticated client id the server sets for the commands it runs (`CLIENT`), "local"
for calls in the HSM's own process. Besides commands: "auth" (a refused opening or frame tag), "connect"
(a connection refused at a limit), "drop" (one closed at a timeout) and "alarm" (a client over a rate
limit; labels "rate:<command>").
They are kept in memory (the newest `maxlen`) and, with a path, in a SQLite table `audit`; the file is
written in batches (every `batch` entries, on `entries()` and on `close()`), so a crash loses at most
one batch.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import deque
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from hsm_client.errors import OK, HsmError

CLIENT: ContextVar[str] = ContextVar("hsm_audit_client", default="local")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    ts: float  # Unix time at the start of the command
    command: str  # e.g. "verify_mac", or "frame" for a frame the server could not parse
    labels: tuple[str, ...]  # key references the command named
    result: str  # two-character error code, "00" on success
    duration_us: int
    client: str = "local"  # the authenticated client id, "" before authentication


class AuditLog:
    """Append-only audit entries, queryable in tests and, with `path`, kept in SQLite."""

    def __init__(self, path: str | Path | None = None, *, maxlen: int = 100_000, batch: int = 512) -> None:
        self._mem: deque[AuditEntry] = deque(maxlen=maxlen)
        self._pending: list[AuditEntry] = []
        self._batch = batch
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if path is not None:
            self._db = sqlite3.connect(str(path), check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS audit (ts REAL NOT NULL, command TEXT NOT NULL,"
                " labels TEXT NOT NULL, result TEXT NOT NULL, duration_us INTEGER NOT NULL,"
                " client TEXT NOT NULL DEFAULT 'local')"
            )
            if "client" not in {row[1] for row in self._db.execute("PRAGMA table_info(audit)")}:
                self._db.execute("ALTER TABLE audit ADD COLUMN client TEXT NOT NULL DEFAULT 'local'")
            self._db.commit()

    def record(
        self, command: str, labels: tuple[str, ...], result: str, start: float, duration_s: float,
        client: str | None = None,
    ) -> None:
        """One entry; `client` defaults to the current `CLIENT`."""
        entry = AuditEntry(start, command, labels, result, int(duration_s * 1e6),
                           CLIENT.get() if client is None else client)
        self._mem.append(entry)
        if self._db is not None:
            with self._lock:
                self._pending.append(entry)
                if len(self._pending) >= self._batch:
                    self._flush()

    def _flush(self) -> None:
        if self._db is None or not self._pending:
            return
        rows = [(e.ts, e.command, ",".join(e.labels), e.result, e.duration_us, e.client) for e in self._pending]
        self._db.executemany(
            "INSERT INTO audit (ts, command, labels, result, duration_us, client) VALUES (?, ?, ?, ?, ?, ?)", rows)
        self._db.commit()
        self._pending.clear()

    def flush(self) -> None:
        with self._lock:
            self._flush()

    def entries(
        self, command: str | None = None, label: str | None = None, client: str | None = None
    ) -> list[AuditEntry]:
        """The in-memory entries, oldest first, optionally only one command, key label or client."""
        self.flush()
        return [
            e
            for e in list(self._mem)
            if (command is None or e.command == command) and (label is None or label in e.labels)
            and (client is None or e.client == client)
        ]

    def close(self) -> None:
        with self._lock:
            self._flush()
            if self._db is not None:
                self._db.close()
                self._db = None


class Audited:
    """Context manager that records one command: `with Audited(log, "verify_mac", key): ...`.

    The result code is "00", the HsmError's code, or "99" for anything else (which is re-raised as is).
    """

    __slots__ = ("_log", "_command", "_labels", "_t0", "_ts")

    def __init__(self, log: AuditLog, command: str, *labels: str) -> None:
        self._log, self._command = log, command
        self._labels = tuple(lb[:80] for lb in labels)  # refs as given; cut so a caller cannot bloat the log

    def __enter__(self) -> None:
        self._ts = time.time()
        self._t0 = time.perf_counter()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        code = OK if exc is None else exc.code if isinstance(exc, HsmError) else "99"
        self._log.record(self._command, self._labels, code, self._ts, time.perf_counter() - self._t0)
