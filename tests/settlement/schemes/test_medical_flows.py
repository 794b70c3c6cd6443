"""Medical flows on a real store (SQLite and PostgreSQL): register, pre-settle, settle, refund, void,
cross-region, bad input, atomicity."""

from __future__ import annotations

import threading

import pytest

from settlement import errors
from settlement.schemes import chart
from settlement.wire import FeeLine
from tests.settlement.flows_helpers import Y, make_engine, posting_count

BILL = [FeeLine("A", 45_000 * Y), FeeLine("B", 3_000 * Y), FeeLine("C", 2_000 * Y)]


@pytest.fixture
def eng(store):
    return make_engine(store)


def admit(eng, serial, person="EMP", inst="BJ3", care="inpatient"):
    return eng.medical.register(f"T1:{serial}", person, inst, care)


def test_settle_posts_the_split_and_updates_accumulators(eng):
    visit = admit(eng, "r1")
    before = posting_count(eng)
    pre = eng.medical.presettle(visit.mdtrt_id, BILL)
    assert posting_count(eng) == before  # pre-settle posts nothing
    s = eng.medical.settle("T1:s1", visit.mdtrt_id, BILL)
    # As in test_policy_beijing: hifp 40,710; patient 9,290 of which the account (5,000 held) pays 5,000.
    b = s.breakdown
    assert b == pre.breakdown
    assert (b.hifp_pay, b.acct_pay, b.psn_cash_pay, b.balc) == (40_710 * Y, 5_000 * Y, 4_290 * Y, 0)
    assert s.setl_id == "T1:s1" and not s.cross_region
    bal = eng.ledger.balances([chart.fund("110000", "hifp"), chart.institution_payable("BJ3"),
                               chart.institution_cash("BJ3"), chart.personal_account("EMP")])
    assert bal == {chart.fund("110000", "hifp"): -40_710 * Y, chart.institution_payable("BJ3"): 45_710 * Y,
                   chart.institution_cash("BJ3"): 4_290 * Y, chart.personal_account("EMP"): 0}
    acc = eng.medical.accumulators("EMP")
    assert (acc.year, acc.admissions, acc.inpatient.inscp_cum, acc.inpatient.hifp_paid) == (2024, 1, 47_700 * Y,
                                                                                          40_710 * Y)
    assert eng.medical.visit(visit.mdtrt_id).status == "settled"
    eng.ledger.check_invariants()


def test_repeat_returns_the_first_result_and_posts_nothing(eng):
    visit = admit(eng, "r1")
    first = eng.medical.settle("T1:s1", visit.mdtrt_id, BILL)
    n = posting_count(eng)
    again = eng.medical.settle("T1:s1", visit.mdtrt_id, BILL)
    assert again.replayed and again.model_copy(update={"replayed": False}) == first
    assert posting_count(eng) == n
    assert eng.medical.accumulators("EMP").admissions == 1
    with pytest.raises(errors.IdempotencyConflict):
        eng.medical.settle("T1:s1", visit.mdtrt_id, BILL[:2])
    assert eng.medical.register("T1:r1", "EMP", "BJ3", "inpatient").mdtrt_id == visit.mdtrt_id
    with pytest.raises(errors.IdempotencyConflict):
        eng.medical.register("T1:r1", "EMP", "BJ1", "inpatient")


def test_second_admission_uses_the_accumulators(eng):
    eng.medical.settle("T1:s1", admit(eng, "r1").mdtrt_id, BILL)
    # Second admission at level 1: cumulative 47,700 -> 57,700; deductible 650 (later admission)
    #   47,700..48,350 deductible; 48,350..57,700 x 97% = 9,350 x 0.97 = 9,069.50
    s = eng.medical.settle("T1:s2", admit(eng, "r2", inst="BJ1").mdtrt_id, [FeeLine("A", 10_000 * Y)])
    assert (s.breakdown.act_pay_dedc, s.breakdown.hifp_pay) == (650 * Y, 906_950)
    assert eng.medical.accumulators("EMP").admissions == 2


def test_a_settled_visit_cannot_be_settled_again(eng):
    visit = admit(eng, "r1")
    eng.medical.settle("T1:s1", visit.mdtrt_id, BILL)
    n = posting_count(eng)
    with pytest.raises(errors.InvalidState, match="already settled under T1:s1"):
        eng.medical.settle("T1:s2", visit.mdtrt_id, BILL)
    assert posting_count(eng) == n


def test_partial_and_full_refunds_roll_back_accumulators(eng):
    eng.medical.settle("T1:s1", admit(eng, "r1").mdtrt_id, BILL)
    # Refund 10,000 of 50,000 (20%): hifp 40,710 x 0.2 = 8,142; acct 5,000 x 0.2 = 1,000; cash 4,290 x 0.2 = 858
    r = eng.medical.refund("T1:f1", "T1:s1", 10_000 * Y)
    assert (r.refund.hifp_pay, r.refund.acct_pay, r.refund.psn_cash_pay) == (8_142 * Y, 1_000 * Y, 858 * Y)
    assert r.refundable_after == 40_000 * Y
    acc = eng.medical.accumulators("EMP")
    # fund paid back exactly; in-policy amount and deductible proportionally: 47,700 x 0.8, 1,300 x 0.8
    assert (acc.inpatient.hifp_paid, acc.inpatient.inscp_cum, acc.inpatient.deductible_used) == (
        32_568 * Y, 38_160 * Y, 1_040 * Y)
    assert acc.admissions == 1
    assert eng.ledger.balance(chart.personal_account("EMP")) == 1_000 * Y
    assert eng.medical.refund("T1:f1", "T1:s1", 10_000 * Y).replayed
    n = posting_count(eng)
    with pytest.raises(errors.RefundTooLarge) as e:
        eng.medical.refund("T1:f2", "T1:s1", 40_000 * Y + 1)
    assert e.value.details["refundable"] == 40_000 * Y
    assert posting_count(eng) == n
    rest = eng.medical.refund("T1:f3", "T1:s1")  # everything left
    assert rest.refund.medfee_sumamt == 40_000 * Y and rest.refundable_after == 0
    acc = eng.medical.accumulators("EMP")
    assert acc.counters() == dict.fromkeys(acc.counters(), 0)
    assert eng.ledger.balance(chart.fund("110000", "hifp")) == 0
    with pytest.raises(errors.RefundTooLarge):
        eng.medical.refund("T1:f4", "T1:s1", 1)
    with pytest.raises(errors.AlreadyReversed):
        eng.medical.void("T1:v1", "T1:s1")
    eng.ledger.check_invariants()


def test_void_after_a_partial_refund_and_settle_again(eng):
    visit = admit(eng, "r1")
    eng.medical.settle("T1:s1", visit.mdtrt_id, BILL)
    eng.medical.refund("T1:f1", "T1:s1", 10_000 * Y)
    v = eng.medical.void("T1:v1", "T1:s1")
    assert v.status == "voided" and v.reversed.medfee_sumamt == 40_000 * Y
    assert eng.medical.void("T1:v1", "T1:s1").replayed
    with pytest.raises(errors.AlreadyReversed):
        eng.medical.void("T1:v2", "T1:s1")
    with pytest.raises(errors.AlreadyReversed):
        eng.medical.refund("T1:f2", "T1:s1", 100)
    acc = eng.medical.accumulators("EMP")
    assert acc.counters() == dict.fromkeys(acc.counters(), 0)
    assert eng.ledger.balance(chart.personal_account("EMP")) == 5_000 * Y
    assert eng.medical.visit(visit.mdtrt_id).status == "registered"
    again = eng.medical.settle("T1:s2", visit.mdtrt_id, BILL)
    assert again.breakdown.act_pay_dedc == 1_300 * Y  # still the first admission of the year
    assert eng.medical.settlement("T1:s1").status == "voided"
    eng.ledger.check_invariants()


def test_void_before_the_settlement_arrives_refuses_it_later(eng):
    visit = admit(eng, "r1")
    v = eng.medical.void("T1:v1", "T1:s1")
    assert v.status == "voided_before_arrival" and v.reversed is None
    assert eng.medical.void("T1:v1", "T1:s1").replayed
    n = posting_count(eng)
    with pytest.raises(errors.AlreadyReversed, match="voided by its terminal before it arrived"):
        eng.medical.settle("T1:s1", visit.mdtrt_id, BILL)
    assert posting_count(eng) == n
    assert eng.medical.visit(visit.mdtrt_id).status == "registered"
    assert eng.medical.settle("T1:s2", visit.mdtrt_id, BILL).setl_id == "T1:s2"


def test_cross_region_visit_uses_the_insured_policy_and_creates_an_obligation(eng):
    # A Beijing employee admitted at Example City's level-1 hospital: Beijing's policy at level 1.
    #   20,000 A: deductible 1,300; 18,700 x 90% = 16,830 hifp; patient 3,170 from the account (5,000)
    visit = admit(eng, "r1", inst="EX1")
    assert (visit.insured_region, visit.treatment_region) == ("110000", "990100")
    s = eng.medical.settle("T1:s1", visit.mdtrt_id, [FeeLine("A", 20_000 * Y)])
    assert s.cross_region and (s.breakdown.hifp_pay, s.breakdown.acct_pay) == (16_830 * Y, 3_170 * Y)
    bal = eng.ledger.balances([chart.payable("110000", "990100"), chart.receivable("990100", "110000"),
                               chart.institution_payable("EX1"), chart.fund("110000", "hifp"),
                               chart.fund("990100", "hifp")])
    # Example City pays its hospital 20,000; Beijing owes Example City 20,000 (fund 16,830 + account 3,170)
    assert bal == {chart.payable("110000", "990100"): 20_000 * Y, chart.receivable("990100", "110000"): -20_000 * Y,
                   chart.institution_payable("EX1"): 20_000 * Y, chart.fund("110000", "hifp"): -16_830 * Y,
                   chart.fund("990100", "hifp"): 0}
    eng.medical.refund("T1:f1", "T1:s1", 5_000 * Y)
    assert eng.ledger.balance(chart.payable("110000", "990100")) == 15_000 * Y
    eng.ledger.check_invariants()


def test_cross_region_visit_uses_the_treatment_region_catalogue(eng):
    # Beijing employee at EX1 (level 1), 10,000 of class B: Example City's catalogue makes B 20% self-paid
    # first (Beijing's would say 10%): preselfpay 2,000; in policy 8,000; Beijing deductible 1,300;
    # Beijing level-1 ratio: (8,000 - 1,300) x 90% = 6,030
    s = eng.medical.settle("T1:s1", admit(eng, "r1", inst="EX1").mdtrt_id, [FeeLine("B", 10_000 * Y)])
    assert (s.breakdown.preselfpay_amt, s.breakdown.inscp_scp_amt, s.breakdown.hifp_pay) == (
        2_000 * Y, 8_000 * Y, 6_030 * Y)


def test_only_settlements_are_voided(eng):
    eng.medical.settle("T1:s1", admit(eng, "r1").mdtrt_id, BILL)
    eng.medical.refund("T1:f1", "T1:s1", 100)
    with pytest.raises(errors.InvalidState, match="not a settlement"):
        eng.medical.void("T1:v1", "T1:f1")
    with pytest.raises(errors.InvalidRequest):
        eng.medical.void("T1:s1", "T1:s1")


def test_resident_with_assistance_one_stop(eng):
    # Example City resident (dibao) at EX1, first admission, 10,000 A:
    #   deductible 300; hifp 9,700 x 85% = 8,245; ci base 1,755 < 15,000 -> 0
    #   maf 1,755 x 70% = 1,228.50; cash 526.50
    s = eng.medical.settle("T1:s1", admit(eng, "r1", person="RES", inst="EX1").mdtrt_id, [FeeLine("A", 10_000 * Y)])
    assert (s.breakdown.hifp_pay, s.breakdown.maf_pay, s.breakdown.psn_cash_pay) == (8_245 * Y, 122_850, 52_650)
    assert eng.ledger.balance(chart.fund("990100", "maf")) == -122_850


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda e, v: e.medical.register("T1:x", "NOBODY", "BJ3", "inpatient"), "UNKNOWN_PERSON"),
        (lambda e, v: e.medical.register("T1:x", "EMP", "NOWHERE", "inpatient"), "UNKNOWN_INSTITUTION"),
        (lambda e, v: e.medical.register("T1:x", "EMP", "BJ3", "dental"), "INVALID_REQUEST"),
        (lambda e, v: e.medical.settle("T1:x", "MDNONE", BILL), "UNKNOWN_VISIT"),
        (lambda e, v: e.medical.settle("T1:x", v, [FeeLine("A", -100)]), "INVALID_AMOUNT"),
        (lambda e, v: e.medical.settle("T1:x", v, [FeeLine("A", 100.5)]), "INVALID_AMOUNT"),
        (lambda e, v: e.medical.settle("T1:x", v, [FeeLine("Z", 100)]), "UNKNOWN_POLICY"),
        (lambda e, v: e.medical.settle("T1:x", v, []), "INVALID_REQUEST"),
        (lambda e, v: e.medical.refund("T1:x", "T1:none", 100), "UNKNOWN_TRANSACTION"),
        (lambda e, v: e.medical.refund("T1:x", "T1:none", -5), "INVALID_AMOUNT"),
        (lambda e, v: e.medical.presettle(v, [FeeLine("A", 0)]), "INVALID_AMOUNT"),
    ],
)
def test_bad_input_is_typed_and_posts_nothing(eng, call, code):
    visit = admit(eng, "r1")
    n, acc = posting_count(eng), eng.medical.accumulators("EMP")
    with pytest.raises(errors.SettlementError) as e:
        call(eng, visit.mdtrt_id)
    assert e.value.code == code and e.value.message
    assert posting_count(eng) == n
    assert eng.medical.accumulators("EMP") == acc
    assert eng.medical.visit(visit.mdtrt_id).status == "registered"


def test_a_failure_inside_the_unit_leaves_nothing_behind(eng, monkeypatch):
    visit = admit(eng, "r1")
    n = posting_count(eng)

    def crash(*a, **k):
        raise RuntimeError("power cut")

    monkeypatch.setattr(eng.fraud, "check_card_uses", crash)  # runs after the accumulators are written
    with pytest.raises(RuntimeError):
        eng.medical.settle("T1:s1", visit.mdtrt_id, BILL)
    assert posting_count(eng) == n
    assert eng.medical.accumulators("EMP").admissions == 0
    assert eng.medical.visit(visit.mdtrt_id).status == "registered"
    monkeypatch.undo()
    assert not eng.medical.settle("T1:s1", visit.mdtrt_id, BILL).replayed  # the retry settles once
    eng.ledger.check_invariants()


def test_concurrent_settlements_of_one_person_serialise(eng):
    # Eight outpatient visits of 500 each at the same time: the yearly deductible (1,800) must be used once.
    visits = [admit(eng, f"r{i}", care="outpatient").mdtrt_id for i in range(8)]
    out, errs = [], []

    def go(i):
        try:
            out.append(eng.medical.settle(f"T1:s{i}", visits[i], [FeeLine("A", 500 * Y)], use_account=False))
        except Exception as e:  # pragma: no cover - reported below
            errs.append(e)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errs
    assert sum(s.breakdown.act_pay_dedc for s in out) == 1_800 * Y
    # 4,000 in total: 1,800 deductible, 2,200 x 70% = 1,540 from hifob (each piece rounded, exact here)
    assert sum(s.breakdown.hifob_pay for s in out) == 1_540 * Y
    acc = eng.medical.accumulators("EMP")
    assert (acc.outpatient.deductible_used, acc.outpatient.inscp_cum) == (1_800 * Y, 4_000 * Y)
    eng.ledger.check_invariants()
