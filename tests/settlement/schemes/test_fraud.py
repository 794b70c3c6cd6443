"""Fraud flags: insured in two regions, benefits after a death report, one card at two institutions."""

from __future__ import annotations

import datetime as dt

import pytest

from settlement import errors
from settlement.wire import FeeLine
from tests.settlement.flows_helpers import Y, make_engine


@pytest.fixture
def eng(store, clock):
    return make_engine(store, clock, fraud_window=dt.timedelta(minutes=30))


def visit_and_settle(eng, serial, inst, person="EMP"):
    v = eng.medical.register(f"T1:r{serial}", person, inst, "outpatient")
    return eng.medical.settle(f"T1:s{serial}", v.mdtrt_id, [FeeLine("A", 100 * Y)])


def test_insured_in_two_regions(eng):
    eng.registry.enrol("EMP", "990100", "resident")
    flags = eng.fraud.flags("EMP", "insured_in_two_regions")
    assert len(flags) == 1 and flags[0].detail["regions"] == ["110000", "990100"]
    assert eng.fraud.scan() == []  # no duplicate
    eng.registry.enrol("EMP", "990100", "resident", active=False)
    eng.registry.enrol("RES", "990100", "resident")  # the same region again: not a second region
    assert len(eng.fraud.flags(kind="insured_in_two_regions")) == 1


def test_one_card_at_two_institutions_within_the_window(eng, clock):
    visit_and_settle(eng, 1, "BJ3")
    clock.advance(minutes=10)
    visit_and_settle(eng, 2, "BJ1")
    flags = eng.fraud.flags("EMP", "two_institutions_in_window")
    assert [f.detail["institutions"] for f in flags] == [["BJ3", "BJ1"]]
    clock.advance(minutes=10)
    visit_and_settle(eng, 3, "BJ1")  # same institution as the last one, but BJ3 is 20 minutes back
    assert len(eng.fraud.flags("EMP", "two_institutions_in_window")) == 2
    clock.advance(hours=2)
    visit_and_settle(eng, 4, "BJ3")  # outside the window
    assert len(eng.fraud.flags("EMP", "two_institutions_in_window")) == 2


def test_benefits_dated_after_a_late_death_report(eng, clock):
    eng.identity.certify("T1:c1", "RET", "card_pin", actor="T1", card_no="C0000002", pin_verified=True)
    eng.pensions.enrol("RET", 3_000 * Y, "2024-01")
    for month in ("2024-03", "2024-04", "2024-05"):
        eng.pensions.issue_month("110000", month)
    visit = eng.medical.register("T1:r1", "RET", "BJ3", "outpatient", begntime=dt.date(2024, 3, 20))
    eng.medical.settle("T1:s1", visit.mdtrt_id, [FeeLine("A", 100 * Y)])
    clock.t = dt.datetime(2024, 5, 20, tzinfo=dt.UTC)
    eng.registry.report_death("RET", dt.date(2024, 3, 10), actor="civil-affairs")  # died in March
    flags = eng.fraud.flags("RET", "benefit_after_death")
    assert sorted(f.detail["benefit"] + " " + f.detail["key"] for f in flags) == [
        "medical settlement T1:s1", "pension month pension:RET:2024-04", "pension month pension:RET:2024-05"]
    assert eng.fraud.scan() == []


def test_settling_for_a_dead_person_is_refused_and_flagged(eng, clock):
    visit = eng.medical.register("T1:r1", "EMP", "BJ3", "outpatient")
    eng.registry.report_death("EMP", dt.date(2024, 2, 20), actor="hospital")
    with pytest.raises(errors.DeathReported):
        eng.medical.settle("T1:s1", visit.mdtrt_id, [FeeLine("A", 100 * Y)])
    assert [f.detail["refused"] for f in eng.fraud.flags("EMP", "benefit_after_death")] == [True]
