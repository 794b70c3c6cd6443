"""The settlement engine: one store, one ledger, the policy book, a clock, and the flows over them.

    engine = Engine(store)                # creates the tables, opens every region's fund accounts
    engine.registry.add_person(...)       # persons, enrolments, institutions (settlement/schemes/registry.py)
    engine.medical.settle(...)            # visits (settlement/schemes/medical.py)
    engine.pensions.collect(...)          # pensions (settlement/schemes/pension.py)
    engine.identity.certify(...)          # certification (settlement/schemes/identity.py)
    engine.fraud.scan()                   # fraud flags (settlement/schemes/fraud.py)

Times are stored as UTC ISO strings; calendar dates (visit day, accumulator year, pension month) are
China Standard Time (UTC+8, no daylight saving).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from settlement.ledger import Ledger, Store
from settlement.schemes import audit, chart, fraud, identity, medical, pension, registry
from settlement.schemes.policy import PolicyBook

CST = dt.timezone(dt.timedelta(hours=8), "CST")


@dataclass(frozen=True)
class Settings:
    """Tunable rules: biometric match threshold, certification validity, fraud window."""

    biometric_threshold: float = 0.80
    certification_months: int = 12
    fraud_window: dt.timedelta = dt.timedelta(minutes=30)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Engine:
    """Wires the flows to one store. Thread-safe as the store and ledger are."""

    def __init__(
        self,
        store: Store,
        *,
        policies: PolicyBook | None = None,
        settings: Settings | None = None,
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self.store = store
        self.clock = clock
        # the ledger stamps postings with the engine's clock (its own cheaper wall clock when that is the default)
        self.ledger = Ledger(store, stamp=None if clock is utc_now else self.stamp)
        self.policies = policies if policies is not None else PolicyBook.load()
        self.settings = settings or Settings()
        store.ensure_schema(
            audit.schema(store.dialect) + registry.schema(store.dialect) + medical.schema(store.dialect)
            + pension.schema(store.dialect) + identity.schema(store.dialect) + fraud.schema(store.dialect)
        )
        for region in self.policies.regions():
            chart.open_region(self.ledger, region)
        self.registry = registry.Registry(self)
        self.medical = medical.Medical(self)
        self.pensions = pension.Pensions(self)
        self.identity = identity.Identity(self)
        self.fraud = fraud.Fraud(self)

    def now(self) -> dt.datetime:
        """The clock, as an aware UTC datetime."""
        t = self.clock()
        if t.tzinfo is None:
            raise ValueError("the engine clock must return aware datetimes")
        return t.astimezone(dt.UTC)

    def stamp(self, t: dt.datetime | None = None) -> str:
        """A UTC timestamp string for the store."""
        return (t or self.now()).isoformat(timespec="microseconds")

    def today(self, t: dt.datetime | None = None) -> dt.date:
        """The calendar date in China of `t` (default: now)."""
        return (t or self.now()).astimezone(CST).date()
