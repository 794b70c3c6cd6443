"""Worked examples for settlement/policies/example_city.toml (illustrative resident scheme with critical
illness and medical assistance), computed by hand in the comments (yuan)."""

from __future__ import annotations

import pytest

from settlement.schemes.breakdown import split_bill
from settlement.schemes.policy import PolicyBook
from settlement.wire import Accumulators, CareTotals, FeeLine

Y = 100


@pytest.fixture(scope="module")
def city():
    return PolicyBook.load().get("990100")


def split(policy, acc=None, *, category="resident", care="inpatient", level="3", **kw):
    acc = acc or Accumulators(year=2024)
    return split_bill(policy, category=category, care=care, level=level, acc=acc, **kw)


FIRST = [FeeLine("A", 85_000 * Y), FeeLine("B", 10_000 * Y), FeeLine("C", 5_000 * Y)]


def test_resident_level3_all_three_layers(city):
    # Bill 100,000: 85,000 A, 10,000 B (20% self-paid first), 5,000 C; a dibao (低保) household.
    #   fulamt 5,000; preselfpay 10,000 x 20% = 2,000; in policy 85,000 + 8,000 = 93,000
    #   deductible, level 3 first admission: 1,000
    #   hifp (93,000 - 1,000) x 60% = 55,200
    #   critical-illness base = 93,000 - 55,200 = 37,800; threshold 15,000
    #     15,000..37,800 x 60% = 22,800 x 0.6 = 13,680 = hifmi
    #   assistance: left in policy 93,000 - 55,200 - 13,680 = 24,120; x 70% = 16,884 (cap 30,000)
    #   fund = 55,200 + 13,680 + 16,884 = 85,764; patient = 14,236 = 5,000 + 2,000 + 7,236, all cash
    b = split(city, lines=FIRST, assistance_class="dibao").breakdown
    assert (b.fulamt_ownpay_amt, b.preselfpay_amt, b.inscp_scp_amt) == (5_000 * Y, 2_000 * Y, 93_000 * Y)
    assert b.act_pay_dedc == 1_000 * Y
    assert (b.hifp_pay, b.hifmi_pay, b.maf_pay) == (55_200 * Y, 13_680 * Y, 16_884 * Y)
    assert b.fund_pay_sumamt == 85_764 * Y
    assert (b.psn_part_amt, b.acct_pay, b.psn_cash_pay) == (14_236 * Y, 0, 14_236 * Y)


def test_not_eligible_for_assistance_pays_more(city):
    # Same bill without an assistance class: patient = 100,000 - 55,200 - 13,680 = 31,120
    b = split(city, lines=FIRST).breakdown
    assert b.maf_pay == 0
    assert b.psn_part_amt == 31_120 * Y


def test_critical_illness_segments_straddle_and_assistance_cap(city):
    # After the first example (1 admission; 93,000 in policy; hifp 55,200; ci base 37,800; hifmi 13,680;
    # maf 16,884). Second admission, level 3, 150,000 class A:
    #   deductible, later admission = 500;  hifp (150,000 - 500) x 60% = 89,700 (cap 200,000 not reached)
    #   ci base 150,000 - 89,700 = 60,300 -> cumulative 37,800..98,100
    #     37,800..65,000 x 60% = 27,200 x 0.60 = 16,320
    #     65,000..98,100 x 65% = 33,100 x 0.65 = 21,515         hifmi = 37,835
    #   assistance: left 60,300 - 37,835 = 22,465 x 70% = 15,725.50, but only 30,000 - 16,884 = 13,116
    #   left under the cap -> maf = 13,116
    #   fund = 89,700 + 37,835 + 13,116 = 140,651; patient = 9,349
    acc = Accumulators(year=2024, admissions=1,
                       inpatient=CareTotals(deductible_used=1_000 * Y, inscp_cum=93_000 * Y,
                                            hifp_paid=55_200 * Y),
                       hifmi_base_cum=37_800 * Y, hifmi_paid=13_680 * Y, maf_paid=16_884 * Y)
    b = split(city, acc, lines=[FeeLine("A", 150_000 * Y)], assistance_class="dibao").breakdown
    assert b.act_pay_dedc == 500 * Y
    assert b.hifp_pay == 89_700 * Y
    ci = [p for p in b.pieces if p.fund == "hifmi"]
    assert [(p.lower, p.upper, p.ratio, p.pay) for p in ci] == [
        (37_800 * Y, 65_000 * Y, "60%", 16_320 * Y), (65_000 * Y, 98_100 * Y, "65%", 21_515 * Y)]
    assert b.hifmi_pay == 37_835 * Y
    assert b.maf_pay == 13_116 * Y
    assert b.psn_part_amt == 9_349 * Y


def test_pooled_fund_yearly_cap(city):
    # 190,000 already paid by hifp this year (cap 200,000), 2 admissions. Level 1, 30,000 class A:
    #   deductible later at level 1 = 150; 29,850 x 85% = 25,372.50 but only 10,000 left -> hifp 10,000
    #   ci base = 30,000 - 10,000 = 20,000 on top of 200,000 already (far above threshold; 3rd segment)
    #   200,000..220,000 x 70% = 14,000 = hifmi; patient = 30,000 - 24,000 = 6,000
    acc = Accumulators(year=2024, admissions=2,
                       inpatient=CareTotals(inscp_cum=300_000 * Y, hifp_paid=190_000 * Y),
                       hifmi_base_cum=200_000 * Y, hifmi_paid=50_000 * Y)
    b = split(city, acc, level="1", lines=[FeeLine("A", 30_000 * Y)]).breakdown
    assert b.act_pay_dedc == 150 * Y
    assert b.hifp_pay == 10_000 * Y
    assert b.hifmi_pay == 14_000 * Y
    assert b.psn_part_amt == 6_000 * Y
    assert any("hifp yearly cap" in n for n in b.notes)


def test_critical_illness_yearly_cap(city):
    # hifmi already paid 399,000 (cap 400,000): a bill whose ci share would be 7,000 gets 1,000.
    #   level 3 later admission, 25,000 A: deductible 500; hifp 24,500 x 60% = 14,700; base 10,300
    #   x 70% (third segment) = 7,210 -> capped at 1,000; patient = 25,000 - 14,700 - 1,000 = 9,300
    acc = Accumulators(year=2024, admissions=5, hifmi_base_cum=700_000 * Y, hifmi_paid=399_000 * Y)
    b = split(city, acc, lines=[FeeLine("A", 25_000 * Y)]).breakdown
    assert (b.hifp_pay, b.hifmi_pay, b.psn_part_amt) == (14_700 * Y, 1_000 * Y, 9_300 * Y)


def test_tekun_assistance_pays_all_the_in_policy_rest(city):
    # Community level first admission, 2,000 A + 500 C, 特困 (100%, cap 50,000):
    #   deductible 200; hifp 1,800 x 90% = 1,620; ci base 380 (below threshold) -> 0
    #   maf = (2,000 - 1,620) x 100% = 380; patient = the 500 of class C
    b = split(city, level="community", lines=[FeeLine("A", 2_000 * Y), FeeLine("C", 500 * Y)],
              assistance_class="tekun").breakdown
    assert (b.hifp_pay, b.hifmi_pay, b.maf_pay, b.psn_part_amt) == (1_620 * Y, 0, 380 * Y, 500 * Y)


def test_resident_outpatient_no_deductible_with_cap(city):
    # Outpatient, level 2, 300.33: no deductible; 300.33 x 50% = 150.165 -> 150.17 (half up); cash 150.16
    b = split(city, care="outpatient", level="2", lines=[FeeLine("A", 30_033)]).breakdown
    assert (b.act_pay_dedc, b.hifp_pay, b.psn_cash_pay) == (0, 15_017, 15_016)


def test_employee_account_pays_in_policy_share(city):
    # Employee inpatient, level 2, 11,000 A + 1,000 C; yearly deductible 1,000; account 20,000:
    #   hifp (11,000 - 1,000) x 85% = 8,500; patient 3,500; account pays all but class C: 2,500; cash 1,000
    b = split(city, category="employee", level="2", lines=[FeeLine("A", 11_000 * Y), FeeLine("C", 1_000 * Y)],
              account_balance=20_000 * Y).breakdown
    assert (b.hifp_pay, b.acct_pay, b.psn_cash_pay, b.balc) == (8_500 * Y, 2_500 * Y, 1_000 * Y, 17_500 * Y)


def test_unknown_assistance_class_pays_nothing_and_says_so(city):
    b = split(city, lines=FIRST, assistance_class="no_such_class").breakdown
    assert b.maf_pay == 0
    assert any("no medical assistance" in n for n in b.notes)
