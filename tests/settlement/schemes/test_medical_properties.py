"""Random sequences of settlements, partial refunds and voids keep the books and the accumulators in step."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from settlement.schemes import chart
from settlement.wire import COUNTERS, PARTS, FeeLine
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
