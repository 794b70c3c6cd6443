"""The settlement engine: one store, one ledger, the policy book, a clock, and the flows wired over them.

    engine = Engine(store)                # creates the tables, opens every region's fund accounts
    engine.registry.add_person(...)       # persons, enrolments, institutions (settlement/schemes/registry.py)
    engine.cards.issue(...)               # cards, their status and the blacklist (settlement/schemes/cards.py)
    engine.medical.settle(...)            # visits (settlement/schemes/medical.py)
    engine.uploads.add_fees(...)          # fee details and visit notes a HIS uploads (settlement/schemes/uploads.py)
    engine.pensions.collect(...)          # pensions (settlement/schemes/pension.py)
    engine.identity.certify(...)          # certification (settlement/schemes/identity.py)
    engine.fraud.scan()                   # fraud flags (settlement/schemes/fraud.py)

Each flow receives what it uses (store, ledger, policies, clock, settings) and the other schemes only as the
protocols of settlement/schemes/hooks.py; they are wired here once and never replaced. Times are stored as
UTC ISO strings; calendar dates (visit day, accumulator year, pension month) are China Standard Time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from settlement.ledger import Clock, Ledger, Store, utc_now
from settlement.schemes import audit, cards, chart, fraud, identity, medical, pension, records, registry, uploads
from settlement.schemes.identity import PinVerifier
from settlement.schemes.policy import PolicyBook


@dataclass(frozen=True)
class Settings:
    """Tunable rules: biometric match threshold, certification validity, fraud window."""

    biometric_threshold: float = 0.80
    certification_months: int = 12
    fraud_window: dt.timedelta = dt.timedelta(minutes=30)


class Engine:
    """Wires the flows to one store. Thread-safe as the store and ledger are."""

    def __init__(
        self,
        store: Store,
        *,
        policies: PolicyBook | None = None,
        settings: Settings | None = None,
        clock: Callable[[], dt.datetime] = utc_now,
        pin_verifier: PinVerifier | None = None,
    ) -> None:
        """`clock` gives aware datetimes (a `Clock` will do); `pin_verifier` is the centre's online PIN check
        of card_pin certifications (its HSM), None to take the card's word."""
        self.store = store
        self.clock = Clock(clock)
        self.ledger = Ledger(store, clock=self.clock)  # postings fall on the business day the engine reasons in
        self.policies = policies if policies is not None else PolicyBook.load()
        self.settings = s = settings or Settings()
        store.ensure_schema(
            audit.schema(store.dialect) + records.schema(store.dialect) + cards.schema(store.dialect)
            + medical.schema(store.dialect)
            + pension.schema(store.dialect) + identity.schema(store.dialect) + fraud.schema(store.dialect)
            + uploads.schema(store.dialect)
        )
        for region in self.policies.regions():
            chart.open_region(self.ledger, region)
        common = (store, self.ledger, self.policies, self.clock)
        self.fraud = fraud.Fraud(store, self.clock, window=s.fraud_window)
        self.cards = cards.Cards(store, self.clock)
        certifications = identity.CertificationRecords(self.clock, s.certification_months)
        self.pensions = pension.Pensions(*common, certified=certifications, fraud=self.fraud, cards=self.cards)
        self.identity = identity.Identity(store, self.clock, certifications, pensions=self.pensions,
                                          cards=self.cards, biometric_threshold=s.biometric_threshold,
                                          pin_verifier=pin_verifier)
        self.registry = registry.Registry(*common, pensions=self.pensions, fraud=self.fraud, cards=self.cards)
        self.medical = medical.Medical(*common, fraud=self.fraud, cards=self.cards)
        self.uploads = uploads.Uploads(store, self.clock)

    def now(self) -> dt.datetime:
        """The clock, as an aware UTC datetime."""
        return self.clock.now()

    def stamp(self, t: dt.datetime | None = None) -> str:
        """A UTC timestamp string for the store."""
        return self.clock.stamp(t)

    def today(self, t: dt.datetime | None = None) -> dt.date:
        """The calendar date in China of `t` (default: now)."""
        return self.clock.today(t)
