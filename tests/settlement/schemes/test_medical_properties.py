"""Random sequences of settlements, partial refunds and voids keep the books, the accumulators and each
institution's day book (`Medical.book`, what 3201/3202 reconcile) in step; a bill's lines share its catalogue
stage exactly (`line_shares`, what 2204/2301 answer per line)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from settlement.schemes import chart
from settlement.schemes.breakdown import line_shares, split_bill
from settlement.schemes.policy import PolicyBook
from settlement.wire import COUNTERS, PARTS, Accumulators, FeeLine
from tests.settlement.flows_helpers import Y, make_engine

bills = st.lists(st.builds(FeeLine, st.sampled_from(["A", "B", "C"]), st.integers(1, 80_000 * Y)),
                 min_size=1, max_size=3)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("settle"), st.sampled_from(["EMP", "RET", "RES"]), st.sampled_from(["BJ3", "EX1"]),
                  st.sampled_from(["inpatient", "outpatient"]), bills),
        st.tuples(st.just("refund"), st.integers(0, 20), st.floats(0.01, 1.0)),
        st.tuples(st.just("void"), st.integers(0, 20)),
    ),
    min_size=1, max_size=12,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps)
def test_books_and_accumulators_agree(make_store, steps):
    eng = make_engine(make_store("sqlite"))
    settled: list[str] = []
    for n, step in enumerate(steps):
        if step[0] == "settle":
            _, person, inst, care, lines = step
            visit = eng.medical.register(f"T:r{n}", person, inst, care)
            settled.append(eng.medical.settle(f"T:s{n}", visit.mdtrt_id, lines).setl_id)
        elif settled and step[0] == "refund":
            setl_id = settled[step[1] % len(settled)]
            rec = eng.medical.settlement(setl_id)
            if rec.status == "settled" and rec.refundable:
                eng.medical.refund(f"T:f{n}", setl_id, max(1, int(rec.refundable * step[2])))
        elif settled and step[0] == "void":
            setl_id = settled[step[1] % len(settled)]
            rec = eng.medical.settlement(setl_id)
            if rec.status == "settled" and rec.refundable:
                eng.medical.void(f"T:v{n}", setl_id)
    eng.ledger.check_invariants()
    rows = eng.store.read(lambda tx: tx.rows("SELECT person_id, remaining FROM med_settlements"))
    left: dict[str, dict[str, int]] = {}
    parts = dict.fromkeys(PARTS, 0)
    for person, remaining in rows:
        rem = json.loads(remaining)
        for c, v in rem["counters"].items():
            left.setdefault(person, dict.fromkeys(COUNTERS, 0))[c] += v
        for p in PARTS:
            parts[p] += rem["parts"][p]
    for person in ("EMP", "RET", "RES"):
        assert eng.medical.accumulators(person).counters() == left.get(person, dict.fromkeys(COUNTERS, 0))
    funds = sum(eng.ledger.balance(chart.fund(r, f)) for r in ("110000", "990100")
                for f in ("hifp", "hifob", "hifmi", "maf"))
    assert -funds == parts["hifp_pay"] + parts["hifob_pay"] + parts["hifmi_pay"] + parts["maf_pay"]
    assert eng.ledger.balance(chart.personal_account("EMP")) + parts["acct_pay"] == 5_000 * Y
    net: dict[str, int] = {}
    for inst in ("BJ3", "EX1"):
        for e in eng.medical.book(inst, "0", "9"):
            assert (e.kind == "settle") == (e.medfee_sumamt > 0)
            assert e.medfee_sumamt == e.fund_pay_sumamt + e.acct_pay + e.psn_cash_pay
            net[e.setl_id] = net.get(e.setl_id, 0) + e.medfee_sumamt
    in_force = eng.store.read(lambda tx: tx.rows("SELECT key, remaining FROM med_settlements WHERE status <> ?",
                                                 ("void_before_arrival",)))
    assert net == {key: json.loads(rem)["bill"] for key, rem in in_force}


@st.composite
def priced_lines(draw: st.DrawFn) -> list[FeeLine]:
    out = []
    for _ in range(draw(st.integers(1, 12))):
        amount = draw(st.integers(0, 30_000 * Y))
        out.append(FeeLine(draw(st.sampled_from(["01", "02", "03", "A", "B", "C"])), amount,
                           draw(st.integers(0, amount))))
    return out


@settings(max_examples=200, deadline=None)
@given(lines=priced_lines(), region=st.sampled_from(["110000", "990100"]))
def test_line_shares_add_up_to_the_bill(lines, region):
    policy = PolicyBook.load().get(region)
    shares = line_shares(lines, policy)
    for line, share in zip(lines, shares, strict=True):
        parts = (share.fulamt_ownpay_amt, share.overlmt_amt, share.preselfpay_amt, share.inscp_scp_amt)
        assert sum(parts) == line.amount and min(parts) >= 0
    if sum(ln.amount for ln in lines) == 0:
        return
    b = split_bill(policy, category="employee", care="outpatient", level="3", lines=lines,
                   acc=Accumulators(year=2024)).breakdown
    assert b.fulamt_ownpay_amt == sum(x.fulamt_ownpay_amt for x in shares)
    assert b.overlmt_selfpay == sum(x.overlmt_amt for x in shares)
    assert b.preselfpay_amt == sum(x.preselfpay_amt for x in shares)
    assert b.inscp_scp_amt == sum(x.inscp_scp_amt for x in shares)
