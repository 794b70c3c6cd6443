"""Helpers for the flow and service tests: a settable clock, an engine on a store, a small population."""

from __future__ import annotations

import datetime as dt

from settlement.ledger import Store
from settlement.schemes.engine import Engine, Settings

Y = 100  # fen per yuan
START = dt.datetime(2024, 3, 1, 2, 0, tzinfo=dt.UTC)  # 10:00 in Beijing


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: dt.datetime = START) -> None:
        self.t = start

    def __call__(self) -> dt.datetime:
        return self.t

    def advance(self, **kw: float) -> None:
        self.t += dt.timedelta(**kw)


def make_engine(store: Store, clock: Clock | None = None, *, pin_verifier: object = None, **settings: object) -> Engine:
    """An engine with the shipped policies and a population:

    institutions BJ3 (Beijing level 3), BJ1 (Beijing level 1), BJHALL (Beijing service hall, community),
    EX1 (Example City level 1), EXHALL (Example City service hall);
    persons EMP (Beijing employee, card C0000001, 5,000 yuan in the personal account),
    RET (Beijing retiree, card C0000002), RES (Example City resident, dibao assistance)."""
    eng = Engine(store, clock=clock or Clock(), settings=Settings(**settings),  # type: ignore[arg-type]
                 pin_verifier=pin_verifier)  # type: ignore[arg-type]
    reg = eng.registry
    reg.add_institution("BJ3", "Beijing level-3 hospital", "110000", "3")
    reg.add_institution("BJ1", "Beijing level-1 hospital", "110000", "1")
    reg.add_institution("BJHALL", "Beijing service hall", "110000", "community")
    reg.add_institution("EX1", "Example City level-1 hospital", "990100", "1")
    reg.add_institution("EXHALL", "Example City service hall", "990100", "community")
    reg.add_person("EMP", "Zhang Wei", "110000", "employee", card_no="C0000001")
    reg.add_person("RET", "Li Na", "110000", "retiree", card_no="C0000002")
    reg.add_person("RES", "Wang Fang", "990100", "resident", assistance_class="dibao")
    reg.deposit("seed:EMP", "EMP", 5_000 * Y)
    return eng


def posting_count(eng: Engine) -> int:
    return len(eng.ledger.postings(limit=100_000))
