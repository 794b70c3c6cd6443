"""Cross-region clearing on both stores: obligations net to zero, the inter-regional accounts are settled,
a cleared period never changes, and what posts after it lands in the next period."""

from __future__ import annotations

import datetime as dt

import pytest

from settlement import errors
from settlement.ledger import AccountKind, Store
from settlement.reconcile.clearing import HOUSE, Clearing, Period, clearing_account
from settlement.schemes import chart
from settlement.schemes.engine import Engine
from settlement.wire import FeeLine
from testing import load
from tests.settlement.reconcile.test_reconcile import drive, make_world


@pytest.fixture
def world(store: Store):
    return make_world(store)


def clearing_balances(eng: Engine) -> dict[str, int]:
    kinds = {AccountKind.INTERREGIONAL_PAYABLE, AccountKind.INTERREGIONAL_RECEIVABLE}
    codes = [a.code for a in eng.ledger.accounts()
             if a.kind in kinds or a.code == HOUSE or a.code.endswith("/clearing")]
    return {c: b for c, b in eng.ledger.balances(codes).items() if b}


def cross_region_settle(eng: Engine, pop: load.Population, serial: str) -> int:
    """Settle one visit of a Beijing insured person at an Example City hospital; returns the fund's share."""
    person = next(h for h in pop.persons if h.region == "110000" and h.category == "employee")
    inst = next(i for i in pop.institutions if i.region == "990100" and i.level != "community")
    visit = eng.medical.register(f"LATE:r{serial}", person.person_id, inst.code, "outpatient",
                                 card_no=person.card_no)
    s = eng.medical.settle(f"LATE:s{serial}", visit.mdtrt_id, [FeeLine("A", 80_000)])
    return s.breakdown.fund_pay_sumamt + s.breakdown.acct_pay


def test_clearing_nets_to_zero_and_settles_the_interregional_accounts(world):
    eng, _, pop = world
    day = drive(eng, pop, visits=40, collections=14)
    assert day.stats["cross_region"] > 0
    assert clearing_balances(eng)  # the day left obligations between regions
    result = Clearing(eng).clear(day.day, actor="ops")
    assert result.net_sum() == 0 and result.postings_consumed > 0 and not result.replayed
    by_region = {s.region: s for s in result.statements}
    for s in result.statements:
        for other, amount in s.owes.items():
            assert by_region[other].owed_by[s.region] == amount
            assert sum(s.owes_by_fund[other].values()) == amount
        assert s.net_position == s.total_owed - s.total_owes
        assert s.posting_key == f"clearing:{day.day}:{s.region}"
        assert eng.ledger.get(s.posting_key) is not None
    assert clearing_balances(eng) == {}  # every obligation settled, the clearing house back to zero
    eng.ledger.check_invariants()


def test_a_cleared_period_never_changes_and_late_postings_land_in_the_next(world):
    eng, _, pop = world
    drive(eng, pop, visits=30, collections=10)
    clearing = Clearing(eng)
    today = eng.today()
    first = clearing.clear(today.isoformat(), actor="ops")
    n = len(eng.ledger.postings(limit=100_000))
    owed = cross_region_settle(eng, pop, "1")  # arrives after its day was cleared
    n += 1
    again = clearing.clear(today.isoformat(), actor="ops")
    assert again.replayed and again.statements == first.statements
    assert len(eng.ledger.postings(limit=100_000)) == n
    assert clearing_balances(eng)[chart.payable("110000", "990100")] == owed
    nxt = clearing.clear((today + dt.timedelta(days=1)).isoformat(), actor="ops")
    assert nxt.postings_consumed == 1 and nxt.late_postings == 1
    assert {s.region: s.net_position for s in nxt.statements} == {"110000": -owed, "990100": owed}
    assert clearing_balances(eng) == {}
    assert clearing.result(today.isoformat()).statements == first.statements
    eng.ledger.check_invariants()


def test_periods_do_not_overlap_and_are_cleared_in_order(world):
    eng, _, pop = world
    clearing = Clearing(eng)
    today = eng.today()
    week = f"{today.isoformat()}..{(today + dt.timedelta(days=6)).isoformat()}"
    clearing.clear(week, actor="ops")
    with pytest.raises(errors.PeriodOverlap, match="overlaps period"):
        clearing.clear((today + dt.timedelta(days=3)).isoformat(), actor="ops")
    with pytest.raises(errors.InvalidState, match="cleared in order"):
        clearing.clear((today - dt.timedelta(days=40)).strftime("%Y-%m"), actor="ops")
    for bad in ("2024-13", "2024-03-09..2024-03-01", "march"):
        with pytest.raises(errors.InvalidRequest):
            clearing.clear(bad, actor="ops")
    assert [p for p, _, _ in clearing.periods()] == [week]


def test_period_parsing():
    assert Period.parse("2024-02") == Period("2024-02", dt.date(2024, 2, 1), dt.date(2024, 2, 29))
    assert Period.parse("2024-03-05").cutoff() == "2024-03-05T16:00:00"  # midnight in China, in UTC
    assert clearing_account("110000") == "110000/clearing"


def test_clearing_statements_are_written(world, tmp_path):
    eng, _, pop = world
    day = drive(eng, pop, visits=30, collections=10)
    result = Clearing(eng).clear(day.day, actor="ops")
    paths = result.write(tmp_path)
    assert [p.suffix for p in paths] == [".json", ".csv"]
    text = paths[1].read_text()
    assert text.startswith("period,region,counterpart,owes,owed_by,bilateral_net")
    assert len(text.splitlines()) == 1 + sum(len(s.bilateral()) for s in result.statements)
