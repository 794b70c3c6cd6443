"""What the national platform interface keeps beside the engine, in the same store: sign-ins (9001/9002,
the `sign_no` every later message carries) and files (9101 uploads, 3202 result files for 9102).

Both are keyed by values derived from the message's idempotency key, so a HIS repeating a sign-in or an
upload after a timeout gets the same sign_no or file_qury_no back.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib

from settlement.api.national_data import NationalError
from settlement.ledger import Clock, Store, Tx


def schema(dialect: str) -> list[str]:
    return [
        """CREATE TABLE IF NOT EXISTS nat_sign_ins (
            sign_no TEXT PRIMARY KEY,
            sign_key TEXT NOT NULL UNIQUE,
            terminal_id TEXT NOT NULL,
            opter_no TEXT NOT NULL,
            signed_in_at TEXT NOT NULL,
            signed_out_at TEXT
        )""",
        """CREATE TABLE IF NOT EXISTS nat_files (
            file_qury_no TEXT PRIMARY KEY,
            institution TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('upload', 'result')),
            filename TEXT NOT NULL,
            content TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL
        )""",
    ]


def derived_id(prefix: str, key: str) -> str:
    """A short id (prefix + 20 hex digits) derived from an idempotency key."""
    return prefix + hashlib.blake2b(key.encode(), digest_size=10).hexdigest().upper()


class NationalState:
    """Sign-ins and files."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store, self.clock = store, clock
        store.ensure_schema(schema(store.dialect))

    def sign_in(self, key: str, terminal_id: str, opter_no: str) -> tuple[str, dt.datetime]:
        """A sign_no for the terminal (the same one again for the same key) and when it was issued."""
        sign_no = derived_id("SN", key)

        def unit(tx: Tx) -> str:
            tx.execute("INSERT INTO nat_sign_ins (sign_no, sign_key, terminal_id, opter_no, signed_in_at)"
                       " VALUES (?, ?, ?, ?, ?) ON CONFLICT (sign_no) DO NOTHING",
                       (sign_no, key, terminal_id, opter_no, self.clock.stamp()))
            row = tx.one("SELECT sign_key, signed_in_at FROM nat_sign_ins WHERE sign_no = ?", (sign_no,))
            assert row is not None and row["sign_key"] == key
            return str(row["signed_in_at"])

        return sign_no, dt.datetime.fromisoformat(self.store.run(unit))

    def check(self, sign_no: str, terminal_id: str, tx: Tx | None = None) -> None:
        """NationalError unless `sign_no` is one of the terminal's and not signed out (read in `tx`, if given)."""
        sql = "SELECT terminal_id, signed_out_at FROM nat_sign_ins WHERE sign_no = ?"
        row = tx.one(sql, (sign_no,)) if tx is not None else self.store.read(lambda t: t.one(sql, (sign_no,)))
        if row is None or row["terminal_id"] != terminal_id:
            raise NationalError(f"交易签到流水号(sign_no) {sign_no!r} 无效，请先签到(9001)", "sign_no")
        if row["signed_out_at"] is not None:
            raise NationalError(f"交易签到流水号(sign_no) {sign_no!r} 已签退，请重新签到(9001)", "sign_no")

    def sign_out(self, sign_no: str, terminal_id: str) -> dt.datetime:
        self.check(sign_no, terminal_id)
        at = self.clock.now()
        self.store.run(lambda tx: tx.execute(
            "UPDATE nat_sign_ins SET signed_out_at = ? WHERE sign_no = ? AND signed_out_at IS NULL",
            (self.clock.stamp(at), sign_no)))
        return at

    def put_file(self, file_qury_no: str, institution: str, kind: str, filename: str, content: bytes,
                 keep: dt.timedelta) -> dt.datetime:
        """Store (or replace) a file; returns its download deadline."""
        now = self.clock.now()
        until = now + keep
        self.store.run(lambda tx: tx.execute(
            "INSERT INTO nat_files (file_qury_no, institution, kind, filename, content, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (file_qury_no) DO UPDATE SET content = excluded.content,"
            " filename = excluded.filename, created_at = excluded.created_at, expires_at = excluded.expires_at",
            (file_qury_no, institution, kind, filename, base64.b64encode(content).decode(), self.clock.stamp(now),
             self.clock.stamp(until))))
        return until

    def file(self, file_qury_no: str, institution: str) -> tuple[str, str, bytes]:
        """(kind, filename, content) of the institution's file, or NationalError (unknown, another
        institution's, or past its download deadline)."""
        row = self.store.read(lambda tx: tx.one(
            "SELECT institution, kind, filename, content, expires_at FROM nat_files WHERE file_qury_no = ?",
            (file_qury_no,)))
        if row is None or row["institution"] != institution:
            raise NationalError(f"文件查询号(file_qury_no) {file_qury_no!r} 不存在", "file_qury_no")
        if dt.datetime.fromisoformat(row["expires_at"]) <= self.clock.now():
            raise NationalError(f"文件查询号(file_qury_no) {file_qury_no!r} 已过下载截止时间", "file_qury_no")
        return row["kind"], row["filename"], base64.b64decode(row["content"])
