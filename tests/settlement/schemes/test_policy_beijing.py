"""Worked examples for settlement/policies/beijing.toml, computed by hand in the comments (yuan)."""

from __future__ import annotations

import pytest

from settlement.schemes.breakdown import split_bill
from settlement.schemes.policy import PolicyBook
from settlement.wire import Accumulators, CareTotals, FeeLine

Y = 100  # fen per yuan


@pytest.fixture(scope="module")
def beijing():
    return PolicyBook.load().get("110000")


def split(policy, acc=None, *, category="employee", care="inpatient", level="3", balance=0, **kw):
    return split_bill(policy, category=category, care=care, level=level, acc=acc or Accumulators(year=2024),
                      account_balance=balance, **kw)


def test_the_file_names_its_source_and_marks_chosen_numbers(beijing):
    assert "68" in beijing.source
    assert beijing.scheme("employee", "inpatient").illustrative is False
    for category, care in [("retiree", "inpatient"), ("employee", "outpatient"), ("resident", "inpatient")]:
        assert beijing.scheme(category, care).illustrative is True


def test_employee_level3_first_admission_with_class_b_and_c(beijing):
    # Bill 50,000.00: 45,000 class A, 3,000 class B (10% self-paid first), 2,000 class C.
    #   fulamt_ownpay (C)        = 2,000
    #   preselfpay (B 10%)       = 3,000 - 3,000 x 90% = 300
    #   in policy                = 45,000 + 2,700 = 47,700
    #   deductible, 1st admission= 1,300                         cumulative 0 -> 1,300
    #   hifp  1,300..30,000 x 85% = 28,700 x 0.85 = 24,395
    #         30,000..40,000 x 90% = 10,000 x 0.90 =  9,000
    #         40,000..47,700 x 95% =  7,700 x 0.95 =  7,315      hifp = 40,710
    #   patient part = 50,000 - 40,710 = 9,290; account may pay all but class C: 7,290, has 3,000
    #   acct 3,000, cash 6,290, balance after 0
    s = split(beijing, lines=[FeeLine("A", 45_000 * Y), FeeLine("B", 3_000 * Y), FeeLine("C", 2_000 * Y)],
              balance=3_000 * Y)
    b = s.breakdown
    assert b.medfee_sumamt == 50_000 * Y
    assert b.fulamt_ownpay_amt == 2_000 * Y
    assert b.preselfpay_amt == 300 * Y
    assert b.inscp_scp_amt == 47_700 * Y
    assert b.act_pay_dedc == 1_300 * Y
    assert [p.pay for p in b.pieces] == [24_395 * Y, 9_000 * Y, 7_315 * Y]
    assert b.hifp_pay == 40_710 * Y
    assert b.hifob_pay == b.hifmi_pay == b.maf_pay == 0
    assert b.fund_pay_sumamt == 40_710 * Y
    assert b.psn_part_amt == 9_290 * Y
    assert (b.acct_pay, b.psn_cash_pay, b.balc) == (3_000 * Y, 6_290 * Y, 0)
    assert s.deltas == {
        "inpatient.deductible_used": 1_300 * Y, "inpatient.inscp_cum": 47_700 * Y,
        "inpatient.hifp_paid": 40_710 * Y, "inpatient.hifob_paid": 0, "admissions": 1,
        "hifmi_base_cum": 6_990 * Y, "hifmi_paid": 0, "maf_paid": 0,
    }


def test_level1_bill_straddling_30000_is_split_at_the_bound(beijing):
    # 35,000 class A at level 1, first admission:
    #   1,300..30,000 x 90% = 28,700 x 0.90 = 25,830;  30,000..35,000 x 95% = 5,000 x 0.95 = 4,750
    #   hifp = 30,580; patient = 35,000 - 30,580 = 4,420 (no account balance: all cash)
    b = split(beijing, level="1", lines=[FeeLine("A", 35_000 * Y)]).breakdown
    assert [(p.lower, p.upper, p.ratio) for p in b.pieces] == [
        (1_300 * Y, 30_000 * Y, "90%"), (30_000 * Y, 35_000 * Y, "95%")]
    assert b.hifp_pay == 30_580 * Y
    assert b.psn_cash_pay == 4_420 * Y


def test_second_admission_650_deductible_and_large_amount_fund_above_100000(beijing):
    # After the first example: 1 admission, 47,700 in policy this year. Second admission, level 2,
    # 60,000 class A -> cumulative 47,700 .. 107,700.
    #   deductible, later admission = 650: 47,700..48,350
    #   hifp  48,350..100,000 x 97% = 51,650 x 0.97 = 50,100.50
    #   hifob 100,000..107,700 x 85% = 7,700 x 0.85 = 6,545
    #   fund = 56,645.50; patient = 60,000 - 56,645.50 = 3,354.50
    acc = Accumulators(year=2024, admissions=1, inpatient=CareTotals(
        deductible_used=130_000, inscp_cum=4_770_000, hifp_paid=4_071_000))
    b = split(beijing, acc, level="2", lines=[FeeLine("A", 60_000 * Y)]).breakdown
    assert b.act_pay_dedc == 650 * Y
    assert b.hifp_pay == 5_010_050
    assert b.hifob_pay == 6_545 * Y
    assert b.fund_pay_sumamt == 5_664_550
    assert b.psn_part_amt == 335_450


def test_large_amount_fund_stops_at_500000(beijing):
    # 3 admissions so far, 480,000 in policy. Level 3, 50,000 class A -> 480,000 .. 530,000.
    #   deductible 650: 480,000..480,650
    #   hifob 480,650..500,000 x 85% = 19,350 x 0.85 = 16,447.50; above 500,000 no fund pays
    #   patient = 50,000 - 16,447.50 = 33,552.50
    acc = Accumulators(year=2024, admissions=3, inpatient=CareTotals(inscp_cum=480_000 * Y))
    b = split(beijing, acc, lines=[FeeLine("A", 50_000 * Y)]).breakdown
    assert b.hifp_pay == 0
    assert b.hifob_pay == 1_644_750
    assert b.psn_part_amt == 3_355_250


def test_rounding_half_up_on_the_fund_share(beijing):
    # Level 2, first admission, 1,300.50 class A: the deductible takes 1,300.00; 0.50 x 87% = 0.435 yuan
    # = 43.5 fen -> 44 fen (half up) to the fund; the patient pays the remainder 1,300.06.
    b = split(beijing, level="2", lines=[FeeLine("A", 130_050)]).breakdown
    assert b.hifp_pay == 44
    assert b.psn_cash_pay == 130_006
    # Class B 0.05 yuan: covered share 5 fen x 90% = 4.5 -> 5 fen; 0 fen self-paid first.
    b = split(beijing, lines=[FeeLine("B", 5)]).breakdown
    assert (b.inscp_scp_amt, b.preselfpay_amt) == (5, 0)


def test_over_price_limit_part_is_paid_by_the_patient(beijing):
    # Level 3, first admission: 10,000 class A of which 400 above the price limit, account 10,000.
    #   overlmt_selfpay 400; in policy 9,600; deductible 1,300; hifp 8,300 x 85% = 7,055
    #   patient 2,945; the in_policy account may pay all but the over-limit part: 2,545; cash 400
    b = split(beijing, lines=[FeeLine("A", 10_000 * Y, over_limit=400 * Y)], balance=10_000 * Y).breakdown
    assert (b.overlmt_selfpay, b.inscp_scp_amt, b.hifp_pay) == (400 * Y, 9_600 * Y, 7_055 * Y)
    assert (b.acct_pay, b.psn_cash_pay, b.balc) == (2_545 * Y, 400 * Y, 7_455 * Y)


def test_retiree_ratios_are_the_illustrative_ones(beijing):
    # Retiree, level 2, first admission, 20,000 class A: 18,700 x 92.2% = 17,241.40; patient 2,758.60
    b = split(beijing, category="retiree", level="2", lines=[FeeLine("A", 20_000 * Y)]).breakdown
    assert b.hifp_pay == 1_724_140
    assert b.psn_part_amt == 275_860


def test_outpatient_yearly_deductible_accumulates_across_visits(beijing):
    # Employee outpatient, yearly deductible 1,800 (illustrative).
    # Visit 1, level 3: 1,000 -> all deductible, nothing from a fund.
    s1 = split(beijing, care="outpatient", lines=[FeeLine("A", 1_000 * Y)])
    assert (s1.breakdown.act_pay_dedc, s1.breakdown.fund_pay_sumamt) == (1_000 * Y, 0)
    acc = Accumulators(year=2024).plus(s1.deltas)
    # Visit 2, community: 2,000 -> 800 deductible left, then 1,200 x 90% = 1,080 from hifob.
    # The outpatient account may pay everything: patient 920 from a balance of 500 -> 500 acct, 420 cash.
    b = split(beijing, acc, care="outpatient", level="community", lines=[FeeLine("A", 2_000 * Y)],
              balance=500 * Y).breakdown
    assert (b.act_pay_dedc, b.hifob_pay) == (800 * Y, 1_080 * Y)
    assert (b.acct_pay, b.psn_cash_pay) == (500 * Y, 420 * Y)


def test_outpatient_yearly_cap(beijing):
    # 19,500 already paid by hifob this year for outpatient care, deductible used up; cap 20,000.
    # Level 3, 3,000: 3,000 x 70% = 2,100, but only 500 left under the cap -> hifob 500, patient 2,500.
    acc = Accumulators(year=2024, outpatient=CareTotals(deductible_used=1_800 * Y, inscp_cum=30_000 * Y,
                                                        hifob_paid=19_500 * Y))
    b = split(beijing, acc, care="outpatient", lines=[FeeLine("A", 3_000 * Y)]).breakdown
    assert b.hifob_pay == 500 * Y
    assert b.psn_part_amt == 2_500 * Y
    assert any("cap" in n for n in b.notes)


def test_declining_the_account_pays_all_in_cash(beijing):
    b = split(beijing, lines=[FeeLine("A", 2_000 * Y)], balance=5_000 * Y, use_account=False).breakdown
    assert (b.acct_pay, b.balc) == (0, 5_000 * Y)


def test_national_class_codes_are_accepted(beijing):
    # 01 甲类 = A, 02 乙类 = B, 03 丙类 = C
    coded = split(beijing, lines=[FeeLine("01", 5_000 * Y), FeeLine("02", 300 * Y), FeeLine("03", 200 * Y)])
    named = split(beijing, lines=[FeeLine("A", 5_000 * Y), FeeLine("B", 300 * Y), FeeLine("C", 200 * Y)])
    assert coded.breakdown == named.breakdown
