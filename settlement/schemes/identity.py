"""Eligibility certification (待遇领取资格认证) by method, with an audit trail.

Methods:
  card_pin   the card at a counter and its PIN. The terminal verifies the PIN at the card first (so a
             wrong PIN costs a try on the card and the holder sees the tries left), then sends the card
             number it read and the PIN as an ISO 9564 format-0 PIN block, encrypted by its PSAM (or the
             HSM) under the terminal PIN key, as `pin_block` (hex; 8 bytes under a 3DES key, 16 under
             SM4). The centre checks the block online against the PIN reference recorded at issuance
             (settlement/schemes/registry.py) through an injected `PinVerifier` (the centre's HSM: see
             `sscard.hsm_pin.HsmPinVerifier`). Passes when the card is the person's card of record, the
             card did not refuse the PIN (`pin_verified`, optional) and the block matches the reference.
             The PAN of the block is `pin_pan(person_id)`: the social security number.
             Without a verifier (an engine with no HSM, e.g. load generators) the terminal's word is taken
             instead: `pin_verified` alone. With one, a card_pin attempt without `pin_block` is refused
             (INVALID_REQUEST, nothing recorded), except a repeat of a recorded key: a terminal resending a
             certification after a restart has no PIN block (it never keeps one) and gets the first
             outcome back. The block is never stored, hashed into the idempotency record, audited or logged.
  biometric  a face or fingerprint match score in [0, 1] from an external device; passes when the score
             reaches `Settings.biometric_threshold`.
  assisted   certification by staff of the region where the pensioner lives (an agent id and region);
             passes. It is also the only method that withdraws a death report (the person was seen alive).

Every attempt, passed or failed, is kept (id_certifications) and written to the audit trail; a failed one
carries a typed `failure` (FAILURES) and changes nothing else. A pass
resumes a pension suspended for a lapsed certification (settlement/schemes/pension.py). A certification is
valid for `Settings.certification_months` (12) months: through the same calendar day a year later.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from enum import StrEnum
from typing import Protocol

from settlement.errors import (
    IdempotencyConflict,
    InvalidRequest,
    PinCheckUnavailable,
    SettlementError,
    UnknownPerson,
    UnknownTransaction,
)
from settlement.ledger import Clock, Store, Tx, marks, request_hash
from settlement.schemes import audit
from settlement.schemes.hooks import CardCheck, PensionHooks
from settlement.schemes.records import PinReference, load_person, load_pin_reference
from settlement.wire import METHODS, Certification, CertificationStatus, Failure, IdentityCheck, Person, pin_pan

PIN_BLOCK_SIZES = (8, 16)


class PinCheck(StrEnum):
    """The outcome of an online PIN check; the non-matching values are `Failure` codes."""

    MATCH = "match"
    WRONG = "pin_wrong"  # the block opens, but its PIN is not the one on record
    UNREADABLE = "pin_block_unreadable"  # the block does not open as format 0 for this PAN (wrong key or garbage)
    NO_REFERENCE = "no_pin_reference"  # no reference on record for this card


class PinVerifier(Protocol):
    """Checks a PIN block against a recorded PIN reference, without the PIN ever being clear outside it.

    `pin_block` is 8 (3DES PIN key) or 16 (SM4) bytes, `pan` the block's PAN (`pin_pan`), `reference` the
    16-byte reference recorded at issuance. Returns MATCH, WRONG or UNREADABLE; raises PinCheckUnavailable
    when it cannot tell (HSM down, key missing), so that nothing is recorded."""

    def verify(self, pin_block: bytes, pan: str, reference: bytes) -> PinCheck: ...


def pin_block_bytes(value: bytes | str) -> bytes:
    """A PIN block given as bytes or hex; InvalidRequest (never quoting it) unless 8 or 16 bytes."""
    try:
        block = value if isinstance(value, bytes) else bytes.fromhex(value)
    except (TypeError, ValueError):
        raise InvalidRequest("pin_block must be hexadecimal", field="pin_block") from None
    if len(block) not in PIN_BLOCK_SIZES:
        raise InvalidRequest("pin_block must be 8 or 16 bytes (16 or 32 hex digits)", field="pin_block")
    return block


#: the card's status in an identity check, by the code of the card check's refusal
CARD_STATUS_OF = {"CARD_REPORTED_LOST": "reported_lost", "CARD_CANCELLED": "cancelled", "CARD_REPLACED": "replaced",
                  "CARD_EXPIRED": "expired", "CARD_NOT_PERSONS": "another_persons", "UNKNOWN_CARD": "unknown"}


class _StaleReference(Exception):
    """The PIN reference changed between the online check and the unit that records its outcome."""


def _ref_key(ref: PinReference | None) -> tuple[str, bytes] | None:
    return None if ref is None else (ref.card_no, ref.reference)


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
        """CREATE TABLE IF NOT EXISTS id_checks (
            key TEXT PRIMARY KEY,
            person_id TEXT NOT NULL,
            card_no TEXT NOT NULL,
            verified INTEGER NOT NULL CHECK (verified IN (0, 1)),
            at TEXT NOT NULL,
            request_hash TEXT NOT NULL,
            result TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS id_checks_person ON id_checks (person_id, at)",
    ]


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


class CertificationRecords:
    """The question "is this person certified now?", over the recorded certifications (the
    `CertificationCheck` pensions ask): a pass is valid for `months` months, through the same calendar day."""

    def __init__(self, clock: Clock, months: int) -> None:
        self.clock, self.months = clock, months

    def valid_until(self, at: str) -> dt.date:
        return add_months(self.clock.today(dt.datetime.fromisoformat(at)), self.months)

    @staticmethod
    def last_pass(tx: Tx, person_id: str) -> tuple[str, str] | None:
        """(timestamp, method) of the person's latest passed certification."""
        row = tx.rows("SELECT at, method FROM id_certifications WHERE person_id = ? AND passed = 1"
                      " ORDER BY at DESC LIMIT 1", (person_id,))
        return (row[0][0], row[0][1]) if row else None

    def is_certified(self, tx: Tx, person_id: str, on: dt.date | None = None) -> bool:
        return person_id in self.certified(tx, [person_id], on)

    def certified(self, tx: Tx, person_ids: Iterable[str], on: dt.date | None = None) -> set[str]:
        """Those of `person_ids` whose latest passed certification is valid on `on` (default: today); one query."""
        ids = sorted(set(person_ids))
        if not ids:
            return set()
        day = on or self.clock.today()
        rows = tx.rows("SELECT person_id, MAX(at) FROM id_certifications WHERE passed = 1"
                       f" AND person_id IN ({marks(len(ids))}) GROUP BY person_id", ids)
        return {pid for pid, at in rows if day <= self.valid_until(at)}


class Identity:
    """Certification attempts, judged by method, recorded and audited; a pass tells the pensions."""

    def __init__(self, store: Store, clock: Clock, records: CertificationRecords, *, pensions: PensionHooks,
                 cards: CardCheck, biometric_threshold: float, pin_verifier: PinVerifier | None = None) -> None:
        """`pin_verifier` is the centre's online PIN check (its HSM); None takes the card's word."""
        self.store, self.clock, self.records, self.cards = store, clock, records, cards
        self.pensions, self.biometric_threshold, self.pin_verifier = pensions, biometric_threshold, pin_verifier

    def status(self, person_id: str) -> CertificationStatus:
        def q(tx: Tx) -> CertificationStatus:
            load_person(tx, person_id)
            last = self.records.last_pass(tx, person_id)
            if last is None:
                return CertificationStatus(person_id=person_id, certified=False)
            until = self.records.valid_until(last[0])
            return CertificationStatus(person_id=person_id, certified=self.clock.today() <= until,
                                       last_certified_at=last[0], method=last[1], valid_until=until)

        return self.store.read(q)

    # -- identity checks (at a counter, before a service) --------------------------------------------------
    def check(self, key: str, person_id: str, card_no: str, *, actor: str, pin_verified: bool,
              card_authenticated: bool, card_id: str | None = None,
              biometric_passed: bool | None = None) -> IdentityCheck:
        """Check a person and the card they showed, and record the outcome under `key` (idempotent): what the
        centre knows (enrolled, alive, the card their active card; a pensioner's certification) and what the
        counter saw (the PIN verified by the card, the card authenticated, a biometric match). Refusals are
        outcomes (`verified` false, `reasons`), recorded like passes; only malformed input raises."""
        for name, flag in (("pin_verified", pin_verified), ("card_authenticated", card_authenticated)):
            if type(flag) is not bool:
                raise InvalidRequest(f"{name} must be true or false", field=name)
        if biometric_passed is not None and type(biometric_passed) is not bool:
            raise InvalidRequest("biometric_passed must be true, false or absent", field="biometric_passed")
        if type(person_id) is not str or not 1 <= len(person_id) <= 64:
            raise InvalidRequest("person_id must be 1 to 64 characters", field="person_id")
        rhash = request_hash("identity.check", [person_id, card_no, card_id, pin_verified, card_authenticated,
                                                biometric_passed])

        def unit(tx: Tx) -> IdentityCheck:
            row = tx.one("SELECT request_hash, result FROM id_checks WHERE key = ?", (key,))
            if row is not None:
                if row["request_hash"] != rhash:
                    raise IdempotencyConflict(f"key {key!r} was used for a different identity check", key=key)
                return IdentityCheck.model_validate({**json.loads(row["result"]), "replayed": True})
            at = self.clock.stamp()
            try:
                person: Person | None = load_person(tx, person_id)
            except UnknownPerson:
                person = None
            reasons: list[str] = []
            regions: list[str] = []
            card_status = certified = until = status = None
            if person is None:
                reasons.append("UNKNOWN_PERSON")
            else:
                if person.death_date is not None and person.death_date <= self.clock.today():
                    reasons.append("DEATH_REPORTED")
                regions = [r for (r,) in tx.rows("SELECT region FROM reg_enrolments WHERE person_id = ? AND"
                                                 " active = 1 ORDER BY region", (person_id,))]
                if not regions:
                    reasons.append("NOT_ENROLLED")
                try:
                    self.cards.check(tx, person_id, card_id=card_id, card_no=card_no)
                    card_status = "active"
                except SettlementError as e:
                    reasons.append(e.code)
                    card_status = CARD_STATUS_OF.get(e.code, "refused")
                status = self.pensions.status_code(tx, person_id)
                if status is not None:
                    last = self.records.last_pass(tx, person_id)
                    until = self.records.valid_until(last[0]) if last else None
                    certified = until is not None and self.clock.today() <= until
            if not pin_verified:
                reasons.append("PIN_NOT_VERIFIED")
            if biometric_passed is False:
                reasons.append("BIOMETRIC_FAILED")
            result = IdentityCheck(check_id=key, person_id=person_id, name=person.name if person else None,
                                   verified=not reasons, reasons=reasons, card_no=card_no, card_status=card_status,
                                   card_authenticated=card_authenticated, enrolled_regions=regions,
                                   certified=certified, certified_until=until, benefit_status=status, checked_at=at)
            tx.execute("INSERT INTO id_checks (key, person_id, card_no, verified, at, request_hash, result)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?)", (key, person_id, card_no, int(result.verified), at, rhash,
                                                         result.model_dump_json()))
            if person is not None:
                audit.record(tx, at=at, person_id=person_id, event="identity_checked", actor=actor, key=key,
                             card_no=card_no, verified=result.verified, reasons=reasons)
            return result

        return self.store.run(unit)

    def check_record(self, key: str) -> IdentityCheck:
        """A recorded identity check (a service hall quotes its id); UnknownTransaction if there is none."""
        row = self.store.read(lambda tx: tx.one("SELECT result FROM id_checks WHERE key = ?", (key,)))
        if row is None:
            raise UnknownTransaction(f"no identity check {key!r}", key=key)
        return IdentityCheck.model_validate_json(row["result"])

    def certify(
        self,
        key: str,
        person_id: str,
        method: str,
        *,
        actor: str,
        card_no: str | None = None,
        card_id: str | None = None,
        pin_block: bytes | str | None = None,
        pin_verified: bool | None = None,
        score: float | None = None,
        modality: str | None = None,
        device_id: str | None = None,
        agent_id: str | None = None,
        agent_region: str | None = None,
        note: str | None = None,
    ) -> Certification:
        """Record a certification attempt (idempotent on `key`) and return its outcome. A card presented (with
        any method: `card_no`, `card_id`) must be the person's active card, or nothing is recorded."""
        shown = {"card_id": card_id, "card_no": card_no}
        evidence = self._evidence(method, card_no=card_no, card_id=card_id, pin_verified=pin_verified, score=score,
                                  modality=modality, device_id=device_id, agent_id=agent_id,
                                  agent_region=agent_region, note=note)
        block = pin_block_bytes(pin_block) if pin_block is not None and method == "card_pin" else None
        if method == "card_pin" and block is None and pin_verified is None:
            raise InvalidRequest("card_pin certification needs pin_block (or, where the centre has no online "
                                 "PIN check, pin_verified)", missing=["pin_block"])
        if block is not None and self.pin_verifier is None:
            raise PinCheckUnavailable("this centre has no PIN verifier (HSM) configured; nothing was recorded")
        # the block is not part of the fingerprint: a resend after a terminal restart carries none
        rhash = request_hash("identity.certify", [person_id, method, evidence])
        for _ in range(3):
            verdict: tuple[PinCheck, PinReference | None] | None = None
            if block is not None:
                verdict = self._check_pin(key, person_id, evidence, block, shown)
            try:
                return self._record(key, person_id, method, evidence, rhash, actor, block is not None, verdict,
                                    shown)
            except _StaleReference:
                continue  # re-enrolled meanwhile: check again against the new reference
        raise PinCheckUnavailable("the PIN reference kept changing during the check; nothing was recorded")

    def _check_pin(self, key: str, person_id: str, evidence: dict[str, object], block: bytes,
                   shown: dict[str, str | None]) -> tuple[PinCheck, PinReference | None] | None:
        """The online check, outside any store unit (it calls the HSM). None when there is nothing to check:
        the key is recorded already (a repeat) or the card is not the person's (fails on that). A card that is
        not the person's active card is refused before the HSM is asked."""
        def q(tx: Tx) -> tuple[bool, str | None, PinReference | None]:
            person = load_person(tx, person_id)
            seen = tx.value("SELECT 1 FROM id_certifications WHERE key = ?", (key,)) is not None
            if not seen:
                self.cards.check(tx, person_id, **shown)
            return seen, person.card_no, load_pin_reference(tx, person_id)

        seen, card_of_record, ref = self.store.read(q)
        if seen or (card_of_record is not None and evidence["card_no"] != card_of_record):
            return None
        if ref is None or ref.card_no != evidence["card_no"]:
            return PinCheck.NO_REFERENCE, ref
        assert self.pin_verifier is not None
        outcome = PinCheck(self.pin_verifier.verify(block, pin_pan(person_id), ref.reference))
        return outcome, ref

    def _record(self, key: str, person_id: str, method: str, evidence: dict[str, object], rhash: str, actor: str,
                online: bool, verdict: tuple[PinCheck, PinReference | None] | None,
                shown: dict[str, str | None]) -> Certification:
        offline_pin = method == "card_pin" and not online and self.pin_verifier is not None

        def unit(tx: Tx) -> Certification:
            person = load_person(tx, person_id, lock=True)
            row = tx.one("SELECT request_hash, result FROM id_certifications WHERE key = ?", (key,))
            if row is not None:
                if row["request_hash"] != rhash:
                    raise IdempotencyConflict(f"key {key!r} was used for a different certification", key=key)
                return Certification.model_validate({**json.loads(row["result"]), "replayed": True})
            self.cards.check(tx, person_id, **shown)
            if offline_pin:
                raise InvalidRequest("this centre checks PINs online: card_pin certification needs pin_block "
                                     "(a resend without it only replays a recorded attempt)", missing=["pin_block"])
            pin_check: PinCheck | None = None
            if online:
                mismatch = person.card_no is not None and evidence["card_no"] != person.card_no
                if verdict is None and not mismatch:
                    raise _StaleReference()  # the card of record changed since the check: check again
                if verdict is not None:
                    pin_check, checked = verdict
                    if _ref_key(load_pin_reference(tx, person_id)) != _ref_key(checked):
                        raise _StaleReference()
            at = self.clock.stamp()
            passed, reason, failure = self._judge(method, evidence, person.card_no, online, pin_check)
            if tx.execute("INSERT INTO id_certifications (key, person_id, method, passed, at, request_hash, result)"
                          " VALUES (?, ?, ?, ?, ?, ?, '{}') ON CONFLICT (key) DO NOTHING",
                          (key, person_id, method, int(passed), at, rhash)) == 0:
                row = tx.one("SELECT request_hash, result FROM id_certifications WHERE key = ?", (key,))
                assert row is not None
                if row["request_hash"] != rhash:
                    raise IdempotencyConflict(f"key {key!r} was used for a different certification", key=key)
                return Certification.model_validate({**json.loads(row["result"]), "replayed": True})
            extra: dict[str, object] = {"failure": failure} if failure else {}
            if method == "card_pin":
                extra["pin_check"] = "online" if online else "card"
            audit.record(tx, at=at, person_id=person_id, event="certified" if passed else "certification_failed",
                         actor=actor, key=key, method=method, reason=reason, **evidence, **extra)
            status = self.pensions.after_certification(tx, person, method, actor=actor, key=key) if passed else (
                self.pensions.status_code(tx, person_id))
            if passed and person.death_date is not None and method != "assisted":
                reason += ("; a death report is on file: the pension stays suspended until an assisted "
                           "certification at a service hall")
            result = Certification(key=key, person_id=person_id, method=method, passed=passed, reason=reason,
                                   failure=failure, certified_at=at,
                                   valid_until=self.records.valid_until(at) if passed else None, benefit_status=status)
            tx.execute("UPDATE id_certifications SET result = ? WHERE key = ?", (result.model_dump_json(), key))
            return result

        return self.store.run(unit)

    @staticmethod
    def _evidence(method: str, **given: object) -> dict[str, object]:
        need = {"card_pin": ("card_no",), "biometric": ("score", "modality", "device_id"),
                "assisted": ("agent_id", "agent_region")}
        if method not in need:
            raise InvalidRequest(f"unknown certification method {method!r}; use {', '.join(METHODS)}")
        missing = [f for f in need[method] if given.get(f) is None]
        if missing:
            raise InvalidRequest(f"{method} certification needs {', '.join(missing)}", missing=missing)
        if method == "card_pin" and given["pin_verified"] is not None and type(given["pin_verified"]) is not bool:
            raise InvalidRequest("pin_verified must be true or false")
        if method == "biometric":
            score = given["score"]
            if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0 <= score <= 1:
                raise InvalidRequest(f"score must be a number from 0 to 1, got {score!r}", field="score")
            if given["modality"] not in ("face", "fingerprint"):
                raise InvalidRequest("modality must be face or fingerprint", field="modality")
        keep = set(need[method]) | {"card_pin": {"pin_verified", "card_id"}, "assisted": {"note"}}.get(method, set())
        return {k: v for k, v in given.items() if k in keep and v is not None}

    def _judge(self, method: str, ev: dict[str, object], card_of_record: str | None, online: bool,
               pin_check: PinCheck | None) -> tuple[bool, str, Failure | None]:
        if method == "card_pin":
            if card_of_record is not None and ev["card_no"] != card_of_record:
                return False, f"card {ev['card_no']} is not this person's card", "card_mismatch"
            if ev.get("pin_verified") is False:
                return False, "the PIN was not verified by the card", "pin_not_verified"
            if not online:
                return True, f"card {ev['card_no']} and PIN verified (by the card, as the terminal reports)", None
            if pin_check is PinCheck.NO_REFERENCE:
                return False, f"no PIN reference is on record for card {ev['card_no']}: enrol it at a service hall", \
                    "no_pin_reference"
            if pin_check is PinCheck.WRONG:
                return False, "the PIN does not match the one on record (checked by the centre)", "pin_wrong"
            if pin_check is PinCheck.UNREADABLE:
                return False, "the PIN block could not be read (wrong PIN key or a corrupted block)", \
                    "pin_block_unreadable"
            if pin_check is not PinCheck.MATCH:  # pragma: no cover - _check_pin always gives a verdict here
                raise AssertionError(f"no PIN verdict for an online check: {pin_check!r}")
            return True, f"card {ev['card_no']} and PIN verified by the centre", None
        if method == "biometric":
            threshold = self.biometric_threshold
            if float(ev["score"]) < threshold:  # type: ignore[arg-type]
                return False, f"{ev['modality']} match score {ev['score']} is below the threshold {threshold}", \
                    "score_below_threshold"
            return True, f"{ev['modality']} match score {ev['score']} reaches the threshold {threshold}", None
        return True, f"assisted certification by agent {ev['agent_id']} of region {ev['agent_region']}", None
