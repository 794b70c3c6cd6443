"""Pension flows: issuance batches, collection with certification, suspension, resumption, death
reports, collection in another region."""

from __future__ import annotations

import datetime as dt

import pytest

from settlement import errors
from settlement.schemes import chart
from tests.settlement.flows_helpers import Y, make_engine, posting_count

MONTHLY = 4_321 * Y + 50  # 4,321.50 yuan


@pytest.fixture
def eng(store, clock):
    e = make_engine(store, clock)
    e.pensions.enrol("RET", MONTHLY, "2024-01")
    return e


def certify(eng, serial, person="RET", **kw):
    args = {"method": "card_pin", "card_no": "C0000002", "pin_verified": True} | kw
    return eng.identity.certify(f"T1:{serial}", person, actor="T1", **args)


def test_issue_is_idempotent_per_person_and_month(eng):
    certify(eng, "c1")
    b = eng.pensions.issue_month("110000", "2024-03")
    assert (b.issued, b.amount_issued) == (["RET"], MONTHLY)
    again = eng.pensions.issue_month("110000", "2024-03")
    assert (again.issued, again.already_issued, again.amount_issued) == ([], ["RET"], 0)
    eng.pensions.issue_month("110000", "2024-02")  # a missed past month is issued on its own key
    assert eng.ledger.balance(chart.pensioner_account("RET")) == 2 * MONTHLY
    assert eng.ledger.balance(chart.pension_fund("110000")) == -2 * MONTHLY
    assert eng.pensions.issue_month("110000", "2023-12").skipped == ["RET"]  # before entitlement
    with pytest.raises(errors.InvalidRequest):
        eng.pensions.issue_month("110000", "2024-13")
    with pytest.raises(errors.UnknownRegion):
        eng.pensions.issue_month("120000", "2024-03")


def test_collect_with_a_valid_certification(eng):
    certify(eng, "c1")
    eng.pensions.issue_month("110000", "2024-03")
    c = eng.pensions.collect("T1:p1", "RET", 1_000 * Y, "BJHALL")
    assert (c.balance_after, c.cross_region) == (MONTHLY - 1_000 * Y, False)
    n = posting_count(eng)
    assert eng.pensions.collect("T1:p1", "RET", 1_000 * Y, "BJHALL").replayed
    assert posting_count(eng) == n
    with pytest.raises(errors.IdempotencyConflict):
        eng.pensions.collect("T1:p1", "RET", 2_000 * Y, "BJHALL")
    with pytest.raises(errors.InsufficientFunds, match="holds 3321.50 yuan"):
        eng.pensions.collect("T1:p2", "RET", MONTHLY, "BJHALL")
    assert eng.ledger.balance(chart.institution_cash("BJHALL")) == 1_000 * Y
    eng.ledger.check_invariants()


def test_collection_without_certification_suspends_until_certified(eng):
    with pytest.raises(errors.NotCertified) as e:
        eng.pensions.collect("T1:p1", "RET", 100 * Y, "BJHALL")
    assert e.value.http_status == 403
    p = eng.pensions.pensioner("RET")
    assert (p.status, p.status_text, p.reason) == (2, "suspended", "certification_lapsed")
    with pytest.raises(errors.BenefitSuspended):
        eng.pensions.collect("T1:p2", "RET", 100 * Y, "BJHALL")
    cert = certify(eng, "c1")
    assert cert.passed and cert.benefit_status == 1
    eng.pensions.issue_month("110000", "2024-03")
    assert eng.pensions.collect("T1:p3", "RET", 100 * Y, "BJHALL").amount == 100 * Y


def test_lapse_after_12_months_suspends_issuance_and_recertification_back_pays(eng, clock):
    certify(eng, "c1")  # 2024-03-01
    clock.t = dt.datetime(2025, 3, 1, 2, 0, tzinfo=dt.UTC)  # exactly 12 months later: still valid
    assert eng.pensions.issue_month("110000", "2025-03").issued == ["RET"]
    clock.advance(days=1)  # 2025-03-02: older than 12 months
    b = eng.pensions.issue_month("110000", "2025-04")
    assert (b.issued, b.suspended) == ([], ["RET"])
    assert eng.pensions.pensioner("RET").status == 2
    certify(eng, "c2", method="biometric", score=0.93, modality="face", device_id="FACE-7")
    assert eng.pensions.pensioner("RET").status == 1
    assert eng.pensions.issue_month("110000", "2025-04").issued == ["RET"]  # the missed month, re-run


def test_death_report_suspends_and_only_assisted_certification_resumes(eng, clock):
    certify(eng, "c1")
    eng.pensions.issue_month("110000", "2024-03")
    clock.advance(days=10)
    eng.registry.report_death("RET", dt.date(2024, 3, 5), actor="civil-affairs", source="death registry")
    assert (eng.pensions.pensioner("RET").status, eng.pensions.pensioner("RET").reason) == (2, "death_reported")
    with pytest.raises(errors.DeathReported):
        eng.pensions.collect("T1:p1", "RET", 100 * Y, "BJHALL")
    assert eng.fraud.flags("RET", "benefit_after_death")  # the refused attempt is flagged
    assert eng.pensions.issue_month("110000", "2024-04").skipped == ["RET"]
    face = certify(eng, "c2", method="biometric", score=0.99, modality="face", device_id="FACE-7")
    assert face.passed and face.benefit_status == 2 and "assisted" in face.reason
    assisted = certify(eng, "c3", method="assisted", agent_id="A-17", agent_region="110000", note="seen at home")
    assert assisted.benefit_status == 1
    assert eng.registry.person("RET").death_date is None
    events = [a.event for a in eng.registry.audit_trail("RET")]
    assert events == ["certified", "death_reported", "pension_suspended", "certified", "certified",
                      "death_report_withdrawn", "pension_normal"]


def test_collection_in_another_region(eng):
    certify(eng, "c1")
    eng.pensions.issue_month("110000", "2024-03")
    c = eng.pensions.collect("T9:p1", "RET", 2_000 * Y, "EXHALL")
    assert (c.cross_region, c.insured_region, c.collect_region) == (True, "110000", "990100")
    bal = eng.ledger.balances([chart.payable("110000", "990100"), chart.receivable("990100", "110000"),
                               chart.institution_cash("EXHALL")])
    assert list(bal.values()) == [2_000 * Y, -2_000 * Y, 2_000 * Y]
    eng.ledger.check_invariants()


def test_terminated_pension_is_not_issued(eng):
    certify(eng, "c1")
    assert eng.pensions.terminate("RET", actor="operator", reason="death confirmed").status == 3
    assert eng.pensions.issue_month("110000", "2024-03").skipped == ["RET"]


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda e: e.pensions.collect("T1:x", "RET", -1, "BJHALL"), "INVALID_AMOUNT"),
        (lambda e: e.pensions.collect("T1:x", "RET", 0, "BJHALL"), "INVALID_AMOUNT"),
        (lambda e: e.pensions.collect("T1:x", "NOBODY", 100, "BJHALL"), "UNKNOWN_PERSON"),
        (lambda e: e.pensions.collect("T1:x", "EMP", 100, "BJHALL"), "INVALID_STATE"),
        (lambda e: e.pensions.collect("T1:x", "RET", 100, "NOWHERE"), "UNKNOWN_INSTITUTION"),
        (lambda e: e.pensions.enrol("EMP", 10.5, "2024-01"), "INVALID_AMOUNT"),
        (lambda e: e.pensions.enrol("EMP", 100, "2024-1"), "INVALID_REQUEST"),
    ],
)
def test_bad_pension_input(eng, call, code):
    certify(eng, "c1")
    eng.pensions.issue_month("110000", "2024-03")
    n = posting_count(eng)
    with pytest.raises(errors.SettlementError) as e:
        call(eng)
    assert e.value.code == code
    assert posting_count(eng) == n


# -- voids (冲正) of collections -------------------------------------------------------------------------
def test_void_reverses_a_collection_once(eng):
    certify(eng, "c1")
    eng.pensions.issue_month("110000", "2024-03")
    eng.pensions.collect("T1:p1", "RET", 1_000 * Y, "BJHALL")
    v = eng.pensions.void("T1:v1", "T1:p1")
    assert (v.status, v.amount, v.replayed) == ("voided", 1_000 * Y, False)
    # the money is back where it was: 4,321.50 in the pensioner account, nothing out of the counter's cash
    assert eng.ledger.balance(chart.pensioner_account("RET")) == MONTHLY
    assert eng.ledger.balance(chart.institution_cash("BJHALL")) == 0
    assert eng.ledger.get("T1:p1").status == "reversed"
    n = posting_count(eng)
    again = eng.pensions.void("T1:v1", "T1:p1")
    assert (again.status, again.amount, again.replayed) == ("voided", 1_000 * Y, True)
    with pytest.raises(errors.AlreadyReversed):
        eng.pensions.void("T1:v2", "T1:p1")
    assert eng.pensions.collect("T1:p1", "RET", 1_000 * Y, "BJHALL").replayed  # a resend moves nothing
    assert posting_count(eng) == n
    assert eng.ledger.balance(chart.pensioner_account("RET")) == MONTHLY
    eng.ledger.check_invariants()


def test_void_before_arrival_refuses_the_late_collection(eng):
    certify(eng, "c1")
    eng.pensions.issue_month("110000", "2024-03")
    v = eng.pensions.void("T1:v1", "T1:p1")
    assert (v.status, v.amount) == ("voided_before_arrival", 0)
    n = posting_count(eng)
    with pytest.raises(errors.AlreadyReversed, match="voided by T1:v1 before it arrived"):
        eng.pensions.collect("T1:p1", "RET", 1_000 * Y, "BJHALL")
    assert posting_count(eng) == n
    assert eng.ledger.balance(chart.pensioner_account("RET")) == MONTHLY
    assert eng.pensions.void("T1:v1", "T1:p1").replayed
    assert eng.pensions.collect("T1:p2", "RET", 1_000 * Y, "BJHALL").amount == 1_000 * Y  # a new key pays
    eng.ledger.check_invariants()


def test_void_of_a_cross_region_collection_unwinds_the_interregional_accounts(eng):
    certify(eng, "c1")
    eng.pensions.issue_month("110000", "2024-03")
    eng.pensions.collect("T9:p1", "RET", 2_000 * Y, "EXHALL")
    eng.pensions.void("T9:v1", "T9:p1")
    bal = eng.ledger.balances([chart.payable("110000", "990100"), chart.receivable("990100", "110000"),
                               chart.institution_cash("EXHALL"), chart.pensioner_account("RET")])
    assert list(bal.values()) == [0, 0, 0, MONTHLY]
    eng.ledger.check_invariants()


def test_void_refuses_what_is_not_a_collection(eng):
    certify(eng, "c1")
    eng.pensions.issue_month("110000", "2024-03")
    n = posting_count(eng)
    with pytest.raises(errors.InvalidState, match="not a pension collection"):
        eng.pensions.void("T1:v1", "pension:RET:2024-03")
    with pytest.raises(errors.InvalidRequest):
        eng.pensions.void("T1:v1", "T1:v1")
    eng.pensions.void("T1:v1", "T1:p1")
    with pytest.raises(errors.IdempotencyConflict):
        eng.pensions.void("T1:v1", "T1:p2")  # one void key, one collection
    assert posting_count(eng) == n
