"""Eligibility certification (待遇领取资格认证) by method, with an audit trail.

Methods:
  card_pin   the card at a counter and its PIN; the terminal verified the PIN with the card and reports
             the card number it read and whether VERIFY succeeded. Passes when the PIN was verified and
             the card is the person's card of record.
  biometric  a face or fingerprint match score in [0, 1] from an external device; passes when the score
             reaches `Settings.biometric_threshold`.
  assisted   certification by staff of the region where the pensioner lives (an agent id and region);
             passes. It is also the only method that withdraws a death report (the person was seen alive).

Every attempt, passed or failed, is kept (id_certifications) and written to the audit trail. A pass
resumes a pension suspended for a lapsed certification (settlement/pension.py). A certification is
valid for `Settings.certification_months` (12) months: through the same calendar day a year later.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from settlement import audit
from settlement.errors import IdempotencyConflict, InvalidRequest
from settlement.idempotency import request_hash
from settlement.registry import load_person
from settlement.store.base import Tx

if TYPE_CHECKING:
    from settlement.engine import Engine

Method = Literal["card_pin", "biometric", "assisted"]
METHODS = ("card_pin", "biometric", "assisted")


def schema(dialect: str) -> list[str]:
    return [
        """CREATE TABLE IF NOT EXISTS id_certifications (
            key TEXT PRIMARY KEY,
            person_id TEXT NOT NULL,
            method TEXT NOT NULL,
            passed INTEGER NOT NULL CHECK (passed IN (0, 1)),
            at TEXT NOT NULL,
            request_hash TEXT NOT NULL,
            result TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS id_certifications_person ON id_certifications (person_id, passed, at)",
    ]


class Certification(BaseModel):
    """The outcome of one certification attempt. `reason` is for the clerk."""

    model_config = ConfigDict(frozen=True)

    key: str
    person_id: str
    method: Method
    passed: bool
    reason: str
    certified_at: str
    valid_until: dt.date | None = None
    benefit_status: int | None = None
    replayed: bool = False


class CertificationStatus(BaseModel):
    """Whether a person holds a valid certification now."""

    person_id: str
    certified: bool
    last_certified_at: str | None = None
    method: str | None = None
    valid_until: dt.date | None = None


def add_months(day: dt.date, months: int) -> dt.date:
    """The same calendar day `months` later (the last day of the month when it has no such day)."""
    y, m = divmod(day.month - 1 + months, 12)
    year, month = day.year + y, m + 1
    for d in (day.day, 30, 29, 28):
        try:
            return dt.date(year, month, d)
        except ValueError:
            continue
    raise AssertionError("unreachable")  # pragma: no cover


class Identity:
    """Certification events and the question "is this person certified now?"."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _valid_until(self, at: str) -> dt.date:
        eng = self.engine
        return add_months(eng.today(dt.datetime.fromisoformat(at)), eng.settings.certification_months)

    def last_pass(self, tx: Tx, person_id: str) -> tuple[str, str] | None:
        """(timestamp, method) of the person's latest passed certification."""
        row = tx.rows("SELECT at, method FROM id_certifications WHERE person_id = ? AND passed = 1"
                      " ORDER BY at DESC LIMIT 1", (person_id,))
        return (row[0][0], row[0][1]) if row else None

    def is_certified(self, tx: Tx, person_id: str, on: dt.date | None = None) -> bool:
        last = self.last_pass(tx, person_id)
        return last is not None and (on or self.engine.today()) <= self._valid_until(last[0])

    def status(self, person_id: str) -> CertificationStatus:
        def q(tx: Tx) -> CertificationStatus:
            load_person(tx, person_id)
            last = self.last_pass(tx, person_id)
            if last is None:
                return CertificationStatus(person_id=person_id, certified=False)
            until = self._valid_until(last[0])
            return CertificationStatus(person_id=person_id, certified=self.engine.today() <= until,
                                       last_certified_at=last[0], method=last[1], valid_until=until)

        return self.engine.store.read(q)

    def certify(
        self,
        key: str,
        person_id: str,
        method: str,
        *,
        actor: str,
        card_no: str | None = None,
        pin_verified: bool | None = None,
        score: float | None = None,
        modality: str | None = None,
        device_id: str | None = None,
        agent_id: str | None = None,
        agent_region: str | None = None,
        note: str | None = None,
    ) -> Certification:
        """Record a certification attempt (idempotent on `key`) and return its outcome."""
        evidence = self._evidence(method, card_no=card_no, pin_verified=pin_verified, score=score,
                                  modality=modality, device_id=device_id, agent_id=agent_id,
                                  agent_region=agent_region, note=note)
        rhash = request_hash("identity.certify", [person_id, method, evidence])
        eng = self.engine

        def unit(tx: Tx) -> Certification:
            person = load_person(tx, person_id, lock=True)
            at = eng.stamp()
            passed, reason = self._judge(method, evidence, person.card_no)
            if tx.execute("INSERT INTO id_certifications (key, person_id, method, passed, at, request_hash, result)"
                          " VALUES (?, ?, ?, ?, ?, ?, '{}') ON CONFLICT (key) DO NOTHING",
                          (key, person_id, method, int(passed), at, rhash)) == 0:
                row = tx.one("SELECT request_hash, result FROM id_certifications WHERE key = ?", (key,))
                assert row is not None
                if row["request_hash"] != rhash:
                    raise IdempotencyConflict(f"key {key!r} was used for a different certification", key=key)
                return Certification.model_validate({**json.loads(row["result"]), "replayed": True})
            audit.record(tx, at=at, person_id=person_id, event="certified" if passed else "certification_failed",
                         actor=actor, key=key, method=method, reason=reason, **evidence)
            status = eng.pensions.after_certification(tx, person, method, actor=actor, key=key) if passed else (
                eng.pensions.status_code(tx, person_id))
            if passed and person.death_date is not None and method != "assisted":
                reason += ("; a death report is on file: the pension stays suspended until an assisted "
                           "certification at a service hall")
            result = Certification(key=key, person_id=person_id, method=method, passed=passed, reason=reason,
                                   certified_at=at, valid_until=self._valid_until(at) if passed else None,
                                   benefit_status=status)
            tx.execute("UPDATE id_certifications SET result = ? WHERE key = ?", (result.model_dump_json(), key))
            return result

        return eng.store.run(unit)

    @staticmethod
    def _evidence(method: str, **given: object) -> dict[str, object]:
        need = {"card_pin": ("card_no", "pin_verified"), "biometric": ("score", "modality", "device_id"),
                "assisted": ("agent_id", "agent_region")}
        if method not in need:
            raise InvalidRequest(f"unknown certification method {method!r}; use {', '.join(METHODS)}")
        missing = [f for f in need[method] if given.get(f) is None]
        if missing:
            raise InvalidRequest(f"{method} certification needs {', '.join(missing)}", missing=missing)
        if method == "card_pin" and type(given["pin_verified"]) is not bool:
            raise InvalidRequest("pin_verified must be true or false")
        if method == "biometric":
            score = given["score"]
            if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0 <= score <= 1:
                raise InvalidRequest(f"score must be a number from 0 to 1, got {score!r}", field="score")
            if given["modality"] not in ("face", "fingerprint"):
                raise InvalidRequest("modality must be face or fingerprint", field="modality")
        keep = set(need[method]) | ({"note"} if method == "assisted" else set())
        return {k: v for k, v in given.items() if k in keep and v is not None}

    def _judge(self, method: str, ev: dict[str, object], card_of_record: str | None) -> tuple[bool, str]:
        if method == "card_pin":
            if card_of_record is not None and ev["card_no"] != card_of_record:
                return False, f"card {ev['card_no']} is not this person's card"
            if not ev["pin_verified"]:
                return False, "the PIN was not verified by the card"
            return True, f"card {ev['card_no']} and PIN verified"
        if method == "biometric":
            threshold = self.engine.settings.biometric_threshold
            if float(ev["score"]) < threshold:  # type: ignore[arg-type]
                return False, f"{ev['modality']} match score {ev['score']} is below the threshold {threshold}"
            return True, f"{ev['modality']} match score {ev['score']} reaches the threshold {threshold}"
        return True, f"assisted certification by agent {ev['agent_id']} of region {ev['agent_region']}"
