"""Fee lines waiting for a visit's pre-settlement: uploaded by the HIS (2204), loaded by the counter page.

Kept in the journal's SQLite file (own connection), one row per visit, replaced by each upload; nothing
here moves money: the lines are sent to the centre only with a pre-settlement or a settlement.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from terminal.clock import utc_now

SCHEMA = """
CREATE TABLE IF NOT EXISTS visit_fees (
    mdtrt_id    TEXT PRIMARY KEY,
    lines       TEXT NOT NULL,
    source      TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
"""


class FeeStore:
    def __init__(self, path: str | Path, now: Callable[[], dt.datetime] = utc_now) -> None:
        self._now = now
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def put(self, mdtrt_id: str, lines: list[dict[str, Any]], source: str) -> dict[str, Any]:
        now = self._now().isoformat(timespec="seconds")
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO visit_fees VALUES (?,?,?,?)",
                             (mdtrt_id, json.dumps(lines, ensure_ascii=False), source, now))
        return {"mdtrt_id": mdtrt_id, "lines": lines, "source": source, "updated_at": now}

    def get(self, mdtrt_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM visit_fees WHERE mdtrt_id = ?", (mdtrt_id,)).fetchone()
        if row is None:
            return None
        return {"mdtrt_id": row[0], "lines": json.loads(row[1]), "source": row[2], "updated_at": row[3]}
