"""Fraud flags for fund supervision. A flag records a suspicion for people to review; it blocks nothing
by itself (the flows refuse what the rules forbid, e.g. benefits after a reported death).

Kinds:
  insured_in_two_regions      a person actively enrolled in more than one region (duplicate insurance)
  benefit_after_death         a settlement, pension month or (not voided) collection dated after the reported date
                              of death, or an attempt refused because of the death report
  two_institutions_in_window  one card settled at two institutions within `Settings.fraud_window`

Flags are written in the unit that causes them (settlements, enrolments) or by `scan()` (e.g. after a
death report dated in the past); each has a stable id, so re-raising or re-scanning never duplicates.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from settlement.errors import SettlementError
from settlement.ledger import Clock, Store, Tx, marks, write_rows
from settlement.wire import Flag

FLAG_KINDS = ("insured_in_two_regions", "benefit_after_death", "two_institutions_in_window")


def schema(dialect: str) -> list[str]:
    return [
        """CREATE TABLE IF NOT EXISTS fraud_flags (
            flag_id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            person_id TEXT NOT NULL,
            raised_at TEXT NOT NULL,
            detail TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS fraud_flags_person ON fraud_flags (person_id)",
    ]


def raise_flag(tx: Tx, flag_id: str, kind: str, person_id: str, at: str, **detail: Any) -> bool:
    """Record a flag once; True if it is new."""
    assert kind in FLAG_KINDS, kind
    return tx.execute(
        "INSERT INTO fraud_flags (flag_id, kind, person_id, raised_at, detail) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (flag_id) DO NOTHING",
        (flag_id, kind, person_id, at, _detail(**detail)),
    ) == 1


def _detail(**detail: Any) -> str:
    return json.dumps(detail, sort_keys=True, ensure_ascii=False)


class Fraud:
    """Detectors and the list of flags."""

    def __init__(self, store: Store, clock: Clock, *, window: dt.timedelta) -> None:
        self.store, self.clock, self.window = store, clock, window

    def check_card_uses(self, tx: Tx, uses: list[tuple[str, str, str]], at: dt.datetime) -> None:
        """In a batch of settlements' unit: for each (person, institution, key), in order, flag the person's other
        settlements at another institution in the window (earlier ones of the batch included)."""
        if not uses:
            return
        pids = sorted({p for p, _, _ in uses})
        stamp = self.clock.stamp(at)
        seen: dict[str, list[tuple[str, str, str]]] = {}
        for pid, key, inst, when in tx.rows(
            "SELECT person_id, key, institution, settled_at FROM med_settlements WHERE status = 'settled'"
            f" AND settled_at >= ? AND person_id IN ({marks(len(pids))})", [self.clock.stamp(at - self.window), *pids]
        ):
            seen.setdefault(pid, []).append((key, inst, when))
        flags = []
        for pid, institution, key in uses:
            others = seen.setdefault(pid, [])
            for other_key, other_inst, other_at in others:
                if other_inst != institution and other_key != key:
                    first, second = sorted([other_key, key])
                    flags.append((f"window:{first}:{second}", "two_institutions_in_window", pid, stamp, _detail(
                        settlements=[other_key, key], institutions=[other_inst, institution], times=[other_at, stamp],
                        window_seconds=self.window.total_seconds())))
            others.append((key, institution, stamp))
        write_rows(tx, "INSERT INTO fraud_flags (flag_id, kind, person_id, raised_at, detail) VALUES ",
                   "(?, ?, ?, ?, ?)", list({f[0]: f for f in flags}.values()), " ON CONFLICT (flag_id) DO NOTHING")

    def check_enrolments(self, tx: Tx, person_id: str) -> str | None:
        """In an enrolment's unit: flag a person active in two or more regions; the id if the flag is new."""
        regions = [r for (r,) in tx.rows(
            "SELECT DISTINCT region FROM reg_enrolments WHERE person_id = ? AND active = 1 ORDER BY region",
            (person_id,))]
        fid = f"regions:{person_id}:{','.join(regions)}"
        if len(regions) > 1 and raise_flag(tx, fid, "insured_in_two_regions", person_id, self.clock.stamp(),
                                           regions=regions):
            return fid
        return None

    def record_death_attempt(self, what: str, error: SettlementError) -> None:
        """After a request refused with DEATH_REPORTED: keep a flag of the attempt (its own unit)."""
        person_id = str(error.details.get("person_id", ""))
        self.store.run(lambda tx: raise_flag(
            tx, f"death:{person_id}:{what}", "benefit_after_death", person_id, self.clock.stamp(), attempt=what,
            death_date=error.details.get("death_date"), refused=True))

    def scan(self, person_id: str | None = None) -> list[Flag]:
        """Run every detector over the whole store (or one person); return the flags that are new."""
        only, args = ("", ()) if person_id is None else (" AND p.person_id = ?", (person_id,))

        def unit(tx: Tx) -> list[str]:
            at, new = self.clock.stamp(), []
            for (pid,) in tx.rows("SELECT p.person_id FROM reg_enrolments p WHERE p.active = 1" + only
                                  + " GROUP BY p.person_id HAVING COUNT(DISTINCT p.region) > 1", args):
                fid = self.check_enrolments(tx, pid)
                if fid is not None:
                    new.append(fid)
            after_death = [
                ("medical settlement", "SELECT s.key, s.person_id, v.begntime, p.death_date FROM med_settlements s"
                 " JOIN med_visits v ON v.mdtrt_id = s.mdtrt_id JOIN reg_persons p ON p.person_id = s.person_id"
                 " WHERE s.status = 'settled' AND p.death_date IS NOT NULL AND v.begntime > p.death_date"),
                ("pension month", "SELECT i.key, i.person_id, i.month, p.death_date FROM pen_issues i"
                 " JOIN reg_persons p ON p.person_id = i.person_id"
                 " WHERE p.death_date IS NOT NULL AND i.month > substr(p.death_date, 1, 7)"),
                ("pension collection", "SELECT c.key, c.person_id, c.collected_on, p.death_date FROM pen_collections c"
                 " JOIN reg_persons p ON p.person_id = c.person_id"
                 " WHERE p.death_date IS NOT NULL AND c.collected_on > p.death_date"
                 " AND NOT EXISTS (SELECT 1 FROM pen_voids v WHERE v.collection_key = c.key)"),  # voided: not paid
            ]
            for what, sql in after_death:
                for key, pid, when, death in tx.rows(sql + only, args):
                    fid = f"death:{pid}:{key}"
                    if raise_flag(tx, fid, "benefit_after_death", pid, at, benefit=what, key=key, dated=when,
                                  death_date=death):
                        new.append(fid)
            return new

        ids = self.store.run(unit)
        return [f for f in self.flags() if f.flag_id in set(ids)]

    def flags(self, person_id: str | None = None, kind: str | None = None) -> list[Flag]:
        sql, args = "SELECT flag_id, kind, person_id, raised_at, detail FROM fraud_flags WHERE 1 = 1", []
        if person_id is not None:
            sql, args = sql + " AND person_id = ?", [*args, person_id]
        if kind is not None:
            sql, args = sql + " AND kind = ?", [*args, kind]
        rows = self.store.read(lambda tx: tx.rows(sql + " ORDER BY raised_at, flag_id", args))
        return [Flag(flag_id=f, kind=k, person_id=p, raised_at=r, detail=json.loads(d)) for f, k, p, r, d in rows]
