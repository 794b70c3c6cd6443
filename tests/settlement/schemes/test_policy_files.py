"""Policy files: validation errors name the file and field; lookups by region and date; bad bill input."""

from __future__ import annotations

import datetime as dt
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from settlement import errors
from settlement.schemes.breakdown import allocate, split_bill
from settlement.schemes.policy import POLICY_DIR, PolicyBook, load_policy
from settlement.wire import Accumulators, CareTotals, FeeLine

MINIMAL = """
region = "120000"
name = "t"
source = "test"
effective_from = 2024-01-01
[catalogue.A]
[[scheme]]
category = "employee"
care = "inpatient"
deductible = { first = "100.00" }
[[scheme.segment]]
ratio = "80%"
"""


def write(tmp_path, text, name="t.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_shipped_policies_load():
    book = PolicyBook.load()
    assert book.regions() == ["110000", "990100"]
    assert {p.name for p in POLICY_DIR.glob("*.toml")} == {"beijing.toml", "example_city.toml"}


def test_minimal_policy_loads(tmp_path):
    p = load_policy(write(tmp_path, MINIMAL))
    assert p.scheme("employee", "inpatient").deductible.first["3"] == 10_000


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (('ratio = "80%"', "ratio = 0.8"), "scheme[0].segment[0].ratio", "strings"),
        (('ratio = "80%"', 'ratio = "120%"'), "scheme[0].segment[0].ratio", "[0, 1]"),
        (('ratio = "80%"', 'ratio = { "1" = "80%" }'), "scheme[0].segment[0].ratio", "community"),
        (('first = "100.00"', 'first = "100.005"'), "scheme[0].deductible.first", "two decimals"),
        (('first = "100.00"', 'first = 100.5'), "scheme[0].deductible.first", "yuan strings"),
        (('category = "employee"', 'category = "farmer"'), "scheme[0].category", "employee"),
        (('region = "120000"', 'region = "12"'), "region", "pattern"),
        (("[catalogue.A]", "[catalogue.A]\nratio = 1"), "catalogue.A.ratio", "not permitted"),
        (('care = "inpatient"', 'care = "inpatient"\ncopay = "5%"'), "scheme[0].copay", "not permitted"),
    ],
)
def test_mistakes_name_file_and_field(tmp_path, change, field, words):
    old, new = change
    assert old in MINIMAL
    with pytest.raises(errors.InvalidPolicy) as e:
        load_policy(write(tmp_path, MINIMAL.replace(old, new), "bad.toml"))
    assert e.value.code == "INVALID_POLICY"
    assert e.value.message.startswith(f"bad.toml: {field}:"), e.value.message
    assert words in e.value.message
    assert e.value.details["field"] == field


def test_per_admission_deductible_only_for_inpatient(tmp_path):
    text = MINIMAL.replace('care = "inpatient"', 'care = "outpatient"').replace(
        'deductible = { first = "100.00" }', 'deductible = { per = "admission", first = "100.00" }')
    with pytest.raises(errors.InvalidPolicy, match="bad.toml: scheme\\[0\\]: a per-admission"):
        load_policy(write(tmp_path, text, "bad.toml"))


def test_segments_must_ascend(tmp_path):
    two = '[[scheme.segment]]\nup_to = "500"\nratio = "80%"\n[[scheme.segment]]\nup_to = "400"\nratio = "90%"'
    text = MINIMAL.replace('[[scheme.segment]]\nratio = "80%"', two)
    with pytest.raises(errors.InvalidPolicy, match="must increase"):
        load_policy(write(tmp_path, text, "bad.toml"))


def test_toml_syntax_error_names_file(tmp_path):
    with pytest.raises(errors.InvalidPolicy, match="^broken.toml: .*line"):
        load_policy(write(tmp_path, "region = \n", "broken.toml"))


def test_lookup_by_region_and_date(tmp_path):
    write(tmp_path, MINIMAL, "a.toml")
    write(tmp_path, MINIMAL.replace("2024-01-01", "2025-01-01").replace('"80%"', '"90%"'), "b.toml")
    book = PolicyBook.load(tmp_path)
    assert book.get("120000", dt.date(2024, 6, 1)).effective_from.year == 2024
    assert book.get("120000", dt.date(2025, 6, 1)).effective_from.year == 2025
    with pytest.raises(errors.UnknownPolicy):
        book.get("120000", dt.date(2023, 12, 31))
    with pytest.raises(errors.UnknownRegion):
        book.get("999999")
    with pytest.raises(errors.UnknownPolicy, match="no outpatient policy for employee"):
        book.get("120000").scheme("employee", "outpatient")


@pytest.fixture(scope="module")
def beijing():
    return PolicyBook.load().get("110000")


def _split(policy, lines, **kw):
    args = {"category": "employee", "care": "inpatient", "level": "3", "acc": Accumulators(year=2024)} | kw
    return split_bill(policy, lines=lines, **args)


@pytest.mark.parametrize(
    ("lines", "kw", "code"),
    [
        ([FeeLine("A", -1)], {}, "INVALID_AMOUNT"),
        ([FeeLine("A", 10.5)], {}, "INVALID_AMOUNT"),
        ([FeeLine("A", True)], {}, "INVALID_AMOUNT"),
        ([FeeLine("A", 100, over_limit=101)], {}, "INVALID_AMOUNT"),
        ([FeeLine("A", 0)], {}, "INVALID_AMOUNT"),
        ([], {}, "INVALID_REQUEST"),
        ([FeeLine("Z", 100)], {}, "UNKNOWN_POLICY"),
        ([FeeLine("A", 100)], {"level": "4"}, "INVALID_REQUEST"),
        ([FeeLine("A", 100)], {"care": "dental"}, "INVALID_REQUEST"),
        ([FeeLine("A", 100)], {"category": "farmer"}, "INVALID_REQUEST"),
        ([FeeLine("A", 100)], {"account_balance": -5}, "INVALID_AMOUNT"),
    ],
)
def test_bad_bill_input_is_a_typed_error(beijing, lines, kw, code):
    with pytest.raises(errors.SettlementError) as e:
        _split(beijing, lines, **kw)
    assert e.value.code == code
    assert e.value.message


_BOOK = {p: PolicyBook.load().get(p) for p in ("110000", "990100")}
line = st.builds(FeeLine, st.sampled_from(["A", "B", "C", "01", "02"]), st.integers(1, 30_000_000))
totals = st.builds(CareTotals, deductible_used=st.integers(0, 200_000), inscp_cum=st.integers(0, 60_000_000),
                   hifp_paid=st.integers(0, 30_000_000), hifob_paid=st.integers(0, 30_000_000))
accs = st.builds(Accumulators, year=st.just(2024), inpatient=totals, outpatient=totals,
                 admissions=st.integers(0, 5), hifmi_base_cum=st.integers(0, 50_000_000),
                 hifmi_paid=st.integers(0, 45_000_000), maf_paid=st.integers(0, 6_000_000))


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(line, min_size=1, max_size=6), acc=accs, region=st.sampled_from(["110000", "990100"]),
       category=st.sampled_from(["employee", "retiree", "resident"]), care=st.sampled_from(["inpatient",
                                                                                             "outpatient"]),
       level=st.sampled_from(["community", "1", "2", "3"]), balance=st.integers(0, 1_000_000),
       assistance=st.sampled_from([None, "dibao", "tekun", "low_income"]))
def test_every_split_adds_up_exactly(lines, acc, region, category, care, level, balance, assistance):
    policy = _BOOK[region]
    if sum(x.amount for x in lines) > policy.limits.max_bill:  # beyond the region's ceiling: refused, whole
        with pytest.raises(errors.BillTooLarge):
            split_bill(policy, category=category, care=care, level=level, lines=lines, acc=acc,
                       assistance_class=assistance, account_balance=balance)
        return
    s = split_bill(policy, category=category, care=care, level=level, lines=lines, acc=acc,
                   assistance_class=assistance, account_balance=balance)
    b = s.breakdown
    b.check()  # the identities in settlement/schemes/breakdown.py
    assert b.medfee_sumamt == sum(x.amount for x in lines)
    assert b.fund_pay_sumamt <= b.inscp_scp_amt
    assert b.balc == balance - b.acct_pay
    assert s.deltas[f"{care}.inscp_cum"] == b.inscp_scp_amt


@settings(max_examples=300, deadline=None)
@given(parts=st.dictionaries(st.sampled_from("abcdef"), st.integers(0, 10**7), min_size=1), data=st.data())
def test_allocate_shares_exactly_within_bounds(parts, data):
    total = sum(parts.values())
    amount = data.draw(st.integers(0, total))
    shares = allocate(amount, parts)
    assert sum(shares.values()) == amount
    assert all(0 <= shares[k] <= parts[k] for k in parts)
    if amount == total:
        assert shares == parts


def test_allocate_refuses_more_than_the_parts():
    with pytest.raises(errors.InvalidAmount):
        allocate(11, {"a": 5, "b": 5})
