"""Persons, enrolments and designated institutions: who is insured where, as what.

A person has one region and category of record (the insured region whose policy applies), an optional
medical-assistance eligibility class, and, once reported, a date of death. Enrolments list every region
that reports the person as actively insured (the region of record included): more than one active region
is a fraud flag (settlement/schemes/fraud.py). Institutions carry their region and level.

PIN references: at issuance the card's PIN is turned, inside the HSM, into a one-way PIN reference (the
HSM's `pin_reference`: an HMAC under the PIN verification key, never the PIN and useless without that
key), recorded here per person together with the card it belongs to (`reg_pin_references`). The centre's
online PIN check for certification (settlement/schemes/identity.py) verifies a PIN block against it. The
reference is never returned by the API, audited or logged.
"""

from __future__ import annotations

import datetime as dt

from settlement.errors import (
    IdempotencyConflict,
    InvalidRequest,
)
from settlement.ledger import Clock, Ledger, Posting, Store, Transfer, Tx, fen
from settlement.schemes import audit, chart
from settlement.schemes.hooks import CardCheck, FraudChecks, PensionHooks
from settlement.schemes.policy import CATEGORIES, LEVELS, PolicyBook
from settlement.schemes.records import (
    PERSON_COLS,
    PIN_REFERENCE_SIZE,
    Institution,
    PinReference,
    load_institution,
    load_person,
    load_pin_reference,
)
from settlement.wire import AuditEntry, Person


def _text(value: object, what: str) -> str:
    if type(value) is not str or not value.strip() or len(value) > 64:
        raise InvalidRequest(f"{what} must be a non-empty string of at most 64 characters", field=what)
    return value


class Registry:
    """Enrolment data: persons, their enrolments, institutions; personal-account deposits."""

    def __init__(self, store: Store, ledger: Ledger, policies: PolicyBook, clock: Clock, *,
                 pensions: PensionHooks, fraud: FraudChecks, cards: CardCheck) -> None:
        self.store, self.ledger, self.policies, self.clock = store, ledger, policies, clock
        self.pensions, self.fraud, self.cards = pensions, fraud, cards

    def add_person(
        self,
        person_id: str,
        name: str,
        region: str,
        category: str,
        *,
        card_no: str | None = None,
        assistance_class: str | None = None,
    ) -> Person:
        """Register a person (idempotent; a different record under the same id is IdempotencyConflict). A
        `card_no` becomes the person's card at the centre (identification code unknown: settlement/schemes/
        cards.py), unless the number is another person's card."""
        _text(person_id, "person_id")
        _text(name, "name")
        if category not in CATEGORIES:
            raise InvalidRequest(f"unknown insured category {category!r}; use {', '.join(CATEGORIES)}")
        self.policies.get(region)  # UnknownRegion
        wanted = Person(person_id=person_id, name=name, card_no=card_no, region=region, category=category,
                        assistance_class=assistance_class)

        def unit(tx: Tx) -> Person:
            tx.execute(
                f"INSERT INTO reg_persons ({PERSON_COLS}, created_at) VALUES (?, ?, ?, ?, ?, ?, NULL, ?)"
                " ON CONFLICT (person_id) DO NOTHING",
                (person_id, name, card_no, region, category, assistance_class, self.clock.stamp()),
            )
            got = load_person(tx, person_id)
            if got.model_copy(update={"death_date": None}) != wanted:
                raise IdempotencyConflict(f"person {person_id!r} exists with different details", person_id=person_id)
            tx.execute(
                "INSERT INTO reg_enrolments (person_id, region, category, active, since) VALUES (?, ?, ?, 1, ?)"
                " ON CONFLICT (person_id, region) DO NOTHING",
                (person_id, region, category, self.clock.today().isoformat()),
            )
            if card_no is not None:
                self.cards.adopt(tx, person_id, card_no)
            chart.open_person(self.ledger, person_id, region)
            return got

        return self.store.run(unit)

    def person(self, person_id: str) -> Person:
        return self.store.read(lambda tx: load_person(tx, person_id))

    def enrolled_since(self, person_id: str, region: str) -> str | None:
        """The date (YYYY-MM-DD) the person's enrolment in `region` was recorded, None if never."""
        return self.store.read(lambda tx: tx.value(
            "SELECT since FROM reg_enrolments WHERE person_id = ? AND region = ?", (person_id, region)))

    def set_pin_reference(self, person_id: str, card_no: str, reference: bytes, *, actor: str,
                          source: str = "issuance") -> None:
        """Record the PIN reference of the person's card (at issuance, or after a PIN change or a new card),
        replacing any earlier one. Audited without the reference; recording the same one again is a no-op."""
        _text(card_no, "card_no")
        if not isinstance(reference, bytes) or len(reference) != PIN_REFERENCE_SIZE:
            raise InvalidRequest(f"a PIN reference is {PIN_REFERENCE_SIZE} bytes", field="reference")

        def unit(tx: Tx) -> None:
            load_person(tx, person_id, lock=True)
            old = load_pin_reference(tx, person_id)
            if old is not None and (old.card_no, old.reference) == (card_no, reference):
                return
            at = self.clock.stamp()
            tx.execute(
                "INSERT INTO reg_pin_references (person_id, card_no, reference, set_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (person_id) DO UPDATE SET card_no = excluded.card_no,"
                " reference = excluded.reference, set_at = excluded.set_at",
                (person_id, card_no, reference.hex(), at),
            )
            audit.record(tx, at=at, person_id=person_id, event="pin_reference_set", actor=actor, card_no=card_no,
                         source=source, replaced=old is not None)

        self.store.run(unit)

    def pin_reference(self, person_id: str) -> PinReference | None:
        """The PIN reference on record for the person (None if none was enrolled)."""
        def q(tx: Tx) -> PinReference | None:
            load_person(tx, person_id)
            return load_pin_reference(tx, person_id)

        return self.store.read(q)

    def set_assistance_class(self, person_id: str, assistance_class: str | None, *, actor: str) -> Person:
        """Grant or withdraw medical-assistance eligibility (audited)."""

        def unit(tx: Tx) -> Person:
            load_person(tx, person_id, lock=True)
            tx.execute("UPDATE reg_persons SET assistance_class = ? WHERE person_id = ?",
                       (assistance_class, person_id))
            audit.record(tx, at=self.clock.stamp(), person_id=person_id, event="assistance_class", actor=actor,
                         assistance_class=assistance_class)
            return load_person(tx, person_id)

        return self.store.run(unit)

    def enrol(self, person_id: str, region: str, category: str, *, active: bool = True) -> None:
        """Record an enrolment reported by a region (e.g. from the national enrolment exchange)."""
        if category not in CATEGORIES:
            raise InvalidRequest(f"unknown insured category {category!r}")

        def unit(tx: Tx) -> None:
            load_person(tx, person_id)
            tx.execute(
                "INSERT INTO reg_enrolments (person_id, region, category, active, since) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (person_id, region) DO UPDATE SET category = excluded.category,"
                " active = excluded.active",
                (person_id, region, category, int(active), self.clock.today().isoformat()),
            )
            self.fraud.check_enrolments(tx, person_id)

        self.store.run(unit)

    def report_death(self, person_id: str, death_date: dt.date, *, actor: str, source: str = "") -> Person:
        """Record a death report: benefits stop from the day after `death_date`, a pension is suspended,
        and benefits already dated after it are flagged (settlement/schemes/fraud.py)."""
        if not isinstance(death_date, dt.date) or death_date > self.clock.today():
            raise InvalidRequest(f"death date must be a date not in the future: {death_date!r}", field="death_date")

        def unit(tx: Tx) -> Person:
            load_person(tx, person_id, lock=True)
            tx.execute("UPDATE reg_persons SET death_date = ?, death_reported_at = ? WHERE person_id = ?",
                       (death_date.isoformat(), self.clock.stamp(), person_id))
            audit.record(tx, at=self.clock.stamp(), person_id=person_id, event="death_reported", actor=actor,
                         death_date=death_date.isoformat(), source=source)
            self.pensions.on_death(tx, person_id, actor=actor)
            return load_person(tx, person_id)

        person = self.store.run(unit)
        self.fraud.scan(person_id)
        return person

    def audit_trail(self, person_id: str) -> list[AuditEntry]:
        def q(tx: Tx) -> list[AuditEntry]:
            load_person(tx, person_id)
            return audit.entries(tx, person_id)

        return self.store.read(q)

    def active_regions(self, person_id: str) -> list[str]:
        return [r for (r,) in self.store.read(lambda tx: tx.rows(
            "SELECT region FROM reg_enrolments WHERE person_id = ? AND active = 1 ORDER BY region", (person_id,)))]

    def add_institution(self, code: str, name: str, region: str, level: str) -> Institution:
        """Register a designated institution and open its accounts (idempotent)."""
        _text(code, "code")
        if level not in LEVELS:
            raise InvalidRequest(f"unknown institution level {level!r}; use {', '.join(LEVELS)}")
        self.policies.get(region)  # UnknownRegion
        wanted = Institution(code=code, name=name, region=region, level=level)

        def unit(tx: Tx) -> Institution:
            tx.execute("INSERT INTO reg_institutions (code, name, region, level) VALUES (?, ?, ?, ?)"
                       " ON CONFLICT (code) DO NOTHING", (code, name, region, level))
            got = load_institution(tx, code)
            if got != wanted:
                raise IdempotencyConflict(f"institution {code!r} exists with different details", institution=code)
            chart.open_institution(self.ledger, code, region)
            return got

        return self.store.run(unit)

    def institution(self, code: str) -> Institution:
        return self.store.read(lambda tx: load_institution(tx, code))

    def deposit(self, key: str, person_id: str, amount: int) -> Posting:
        """Credit a personal medical account from the region's contributions (idempotent on `key`)."""
        fen(amount, allow_zero=False, field="amount")
        person = self.person(person_id)
        return self.ledger.post(
            key, "account.deposit",
            [Transfer(chart.external(person.region), chart.personal_account(person_id), amount, "deposit")],
            payload={"person_id": person_id},
        )
