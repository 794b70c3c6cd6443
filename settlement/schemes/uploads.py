"""What a hospital's HIS uploads about a visit beside the bill's money: fee details (the national platform's
2204 / 2301), and notes on the visit (its medical type and diagnoses from 2203 / 2401, the discharge from
2402), kept at the centre per visit.

Fee details are the lines a settlement of the visit is made of: each carries the catalogue class the
centre's catalogue gave its item, its amount and the part over the price limit (fen), and what else the HIS
sent (JSON, for the record). A detail serial (`feedetl_sn`) is unique within a visit: uploading it again with
the same content changes nothing (a HIS repeating a request after a timeout), with other content it is an
IdempotencyConflict. Lines keep their upload order (`line_no`), which fixes how a class's rounding is shared
over them (settlement/schemes/breakdown.py `line_shares`).

This module knows no visit states: whoever calls it (the national platform interface) checks that the
visit exists, belongs to the caller and is not settled.

Uploads and notes commit without waiting for the disk (`store.run(..., durable=False)`): they are the HIS's
own records, which it sends again when asked, and never money. A crash of the machine before the next
durable commit (the visit's settlement, which syncs the same log) may lose them; the settlement then
refuses (no fee lines, or a total that does not match the HIS's), and the HIS uploads again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from settlement.errors import IdempotencyConflict, InvalidRequest
from settlement.ledger import Clock, Store, Tx
from settlement.wire import FeeLine

NOTE_KINDS = ("visit", "discharge")


def schema(dialect: str) -> list[str]:
    return [
        """CREATE TABLE IF NOT EXISTS med_fee_details (
            mdtrt_id TEXT NOT NULL,
            feedetl_sn TEXT NOT NULL,
            line_no INTEGER NOT NULL,
            chrg_bchno TEXT NOT NULL,
            med_list_codg TEXT NOT NULL,
            cls TEXT NOT NULL,
            amount BIGINT NOT NULL CHECK (amount >= 0),
            over_limit BIGINT NOT NULL CHECK (over_limit >= 0 AND over_limit <= amount),
            detail TEXT NOT NULL,
            uploaded_at TEXT NOT NULL,
            PRIMARY KEY (mdtrt_id, feedetl_sn)
        )""",
        """CREATE TABLE IF NOT EXISTS med_visit_notes (
            mdtrt_id TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('visit', 'discharge')),
            body TEXT NOT NULL,
            noted_at TEXT NOT NULL,
            PRIMARY KEY (mdtrt_id, kind)
        )""",
    ]


@dataclass(frozen=True)
class FeeDetail:
    """One uploaded fee line: serial, charge batch, item code, catalogue class, amount and over-limit part
    (fen), and the rest of what the HIS sent."""

    feedetl_sn: str
    chrg_bchno: str
    med_list_codg: str
    cls: str
    amount: int
    over_limit: int = 0
    detail: dict[str, Any] = field(default_factory=dict, compare=False)

    def line(self) -> FeeLine:
        return FeeLine(self.cls, self.amount, self.over_limit)

    def _same(self, other: FeeDetail) -> bool:
        return self == other and self.detail == other.detail


_COLS = "feedetl_sn, chrg_bchno, med_list_codg, cls, amount, over_limit, detail"


def _detail(row: dict[str, Any], with_detail: bool = True) -> FeeDetail:
    return FeeDetail(row["feedetl_sn"], row["chrg_bchno"], row["med_list_codg"], row["cls"], row["amount"],
                     row["over_limit"], json.loads(row["detail"]) if with_detail else {})


def load_fees(tx: Tx, mdtrt_id: str, chrg_bchno: str | None = None, *, with_detail: bool = True) -> list[FeeDetail]:
    """The visit's fee details in upload order (of one charge batch, if given), in `tx`; without what else the
    HIS sent (`detail` empty) when a settlement needs only the lines."""
    sql = f"SELECT {_COLS} FROM med_fee_details WHERE mdtrt_id = ?"
    params: tuple[str, ...] = (mdtrt_id,)
    if chrg_bchno is not None:
        sql, params = sql + " AND chrg_bchno = ?", (mdtrt_id, chrg_bchno)
    return [_detail(r, with_detail) for r in tx.query(sql + " ORDER BY line_no, feedetl_sn", params)]


class Uploads:
    """Fee details and visit notes, per visit."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store, self.clock = store, clock

    def add_fees(self, mdtrt_id: str, fees: Sequence[FeeDetail]) -> list[FeeDetail]:
        """Store `fees` for the visit in one unit (all or none); returns all the visit's fee details after it,
        in upload order."""
        sns = [f.feedetl_sn for f in fees]
        if not fees:
            raise InvalidRequest("no fee details to upload", mdtrt_id=mdtrt_id)
        if len(set(sns)) != len(sns):
            dup = next(sn for sn in sns if sns.count(sn) > 1)
            raise InvalidRequest(f"fee detail serial {dup!r} appears twice in one upload", feedetl_sn=dup)

        def unit(tx: Tx) -> list[FeeDetail]:
            have = {r["feedetl_sn"]: _detail(r) for r in tx.query(
                f"SELECT {_COLS} FROM med_fee_details WHERE mdtrt_id = ? ORDER BY line_no, feedetl_sn{tx.for_update}",
                (mdtrt_id,))}
            new = []
            for f in fees:
                old = have.get(f.feedetl_sn)
                if old is None:
                    new.append(f)
                elif not old._same(f):
                    raise IdempotencyConflict(f"fee detail {f.feedetl_sn} of visit {mdtrt_id} was uploaded before "
                                              "with other content; cancel it first", feedetl_sn=f.feedetl_sn)
            first = int(tx.value("SELECT COALESCE(MAX(line_no), 0) FROM med_fee_details WHERE mdtrt_id = ?",
                                 (mdtrt_id,))) + 1
            at = self.clock.stamp()
            if new:
                tx.executemany(
                    f"INSERT INTO med_fee_details (mdtrt_id, line_no, uploaded_at, {_COLS}) VALUES (?, ?, ?, ?, ?, ?,"
                    " ?, ?, ?, ?)",
                    [(mdtrt_id, first + i, at, f.feedetl_sn, f.chrg_bchno, f.med_list_codg, f.cls, f.amount,
                      f.over_limit, json.dumps(f.detail, ensure_ascii=False, sort_keys=True))
                     for i, f in enumerate(new)])
            return [*have.values(), *new]

        return self.store.run(unit, durable=False)

    def fees(self, mdtrt_id: str, chrg_bchno: str | None = None) -> list[FeeDetail]:
        """The visit's fee details in upload order (of one charge batch, if given)."""
        return self.store.read(lambda tx: load_fees(tx, mdtrt_id, chrg_bchno))

    def remove_fees(self, mdtrt_id: str, *, chrg_bchno: str | None = None,
                    feedetl_sns: Sequence[str] | None = None) -> int:
        """Delete the visit's fee details (of one batch, or these serials; all when neither); how many."""
        if chrg_bchno is not None and feedetl_sns is not None:
            raise InvalidRequest("remove fee details by charge batch or by serial, not both")

        def unit(tx: Tx) -> int:
            if feedetl_sns is not None:
                return tx.executemany("DELETE FROM med_fee_details WHERE mdtrt_id = ? AND feedetl_sn = ?",
                                      [(mdtrt_id, sn) for sn in feedetl_sns])
            if chrg_bchno is not None:
                return tx.execute("DELETE FROM med_fee_details WHERE mdtrt_id = ? AND chrg_bchno = ?",
                                  (mdtrt_id, chrg_bchno))
            return tx.execute("DELETE FROM med_fee_details WHERE mdtrt_id = ?", (mdtrt_id,))

        return self.store.run(unit)

    def set_note(self, mdtrt_id: str, kind: str, body: dict[str, Any]) -> None:
        """Record (or replace) the visit's note of `kind` ("visit": type and diagnoses; "discharge")."""
        if kind not in NOTE_KINDS:
            raise InvalidRequest(f"unknown kind of visit note {kind!r}")
        text = json.dumps(body, ensure_ascii=False, sort_keys=True)
        self.store.run(lambda tx: tx.execute(
            "INSERT INTO med_visit_notes (mdtrt_id, kind, body, noted_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (mdtrt_id, kind) DO UPDATE SET body = excluded.body, noted_at = excluded.noted_at",
            (mdtrt_id, kind, text, self.clock.stamp())), durable=False)

    def note(self, mdtrt_id: str, kind: str) -> dict[str, Any] | None:
        row = self.store.read(lambda tx: tx.one(
            "SELECT body FROM med_visit_notes WHERE mdtrt_id = ? AND kind = ?", (mdtrt_id, kind)))
        return None if row is None else json.loads(row["body"])

    def remove_note(self, mdtrt_id: str, kind: str) -> bool:
        return bool(self.store.run(lambda tx: tx.execute(
            "DELETE FROM med_visit_notes WHERE mdtrt_id = ? AND kind = ?", (mdtrt_id, kind))))

    def forget(self, mdtrt_id: str) -> None:
        """Drop everything uploaded for a visit (after the visit was cancelled)."""

        def unit(tx: Tx) -> None:
            tx.execute("DELETE FROM med_fee_details WHERE mdtrt_id = ?", (mdtrt_id,))
            tx.execute("DELETE FROM med_visit_notes WHERE mdtrt_id = ?", (mdtrt_id,))

        self.store.run(unit)
