"""A batch decides as the same requests one at a time would, in arrival order (on SQLite and PostgreSQL).

Two engines on two fresh stores get the same seeded requests: one runs them one by one through the public
flows, the other hands each batch to the flow's batch handler at once (as the store's writer does with
concurrent callers). Every answer (result or typed error), every posting, balance, accumulator, visit status and
fraud flag must come out the same. The requests mix what a batch must get right: two visits of one person
(accumulators and the personal account run on), one visit settled twice, repeats of earlier keys (same and
different bill), a settlement voided before it arrived, unknown visits, a fee class no catalogue has, another
institution's visit, a person reported dead, cards that are another person's or nobody's, cross-region
visits, and refunds (partial, whole, too large, twice of one settlement in one batch, of a voided settlement).
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest

from settlement.errors import SettlementError
from settlement.schemes import chart
from settlement.schemes.engine import Engine
from settlement.wire import FeeLine
from tests.settlement.flows_helpers import Y, make_engine

SEEDS = [1, 2, 3]
PERSONS = ["EMP", "RET", "RES", "OLD"]
INSTITUTIONS = ["BJ3", "BJ1", "EX1"]


def _engine(store: Any) -> Engine:
    eng = make_engine(store)
    eng.registry.add_person("OLD", "Zhao Lei", "110000", "retiree", card_no="C0000009")
    eng.registry.deposit("seed:RET", "RET", 300 * Y)
    return eng


def _lines(rng: random.Random) -> list[FeeLine]:
    lines = [FeeLine(rng.choice("AAB"), rng.randrange(50, 30_000) * Y, 0) for _ in range(rng.randint(1, 4))]
    if rng.random() < 0.08:
        lines.append(FeeLine("Z", 10 * Y))  # no catalogue has it: INVALID_REQUEST
    return lines


def _scenario(seed: int) -> tuple[list[tuple[str, str, str, str]], list[list[tuple[Any, ...]]]]:
    """(registrations, batches): each batch is all settlements or all refunds, keys unique inside a batch."""
    rng = random.Random(f"batched-flows:{seed}")
    regs = [(f"T1:r{i}", rng.choices(PERSONS, (4, 3, 3, 1))[0], rng.choice(INSTITUTIONS),
             rng.choice(["outpatient", "inpatient"])) for i in range(40)]
    batches: list[list[tuple[Any, ...]]] = []
    used: list[tuple[str, str, list[FeeLine]]] = []  # settle requests sent so far
    n = 0
    for b in range(6):
        if b % 2 == 0:
            batch: list[tuple[Any, ...]] = []
            for _ in range(rng.randint(8, 16)):
                r = rng.random()
                if used and r < 0.25:  # a repeat of an earlier batch's key, with its bill or another
                    key, mdtrt, lines = rng.choice(used)
                    if key in {x[1] for x in batch}:
                        continue
                    batch.append(("settle", key, mdtrt, lines if rng.random() < 0.7 else _lines(rng), None, None))
                    continue
                n += 1
                key = f"T1:s{n}" if r > 0.27 else "T1:voided"
                if key in {x[1] for x in batch}:
                    continue
                mdtrt = "MDNOSUCHVISIT" if r > 0.95 else _mdtrt(rng.choice(regs)[0])
                at = rng.choice(["BJ1", None, None, None]) if r > 0.9 else None
                lines = _lines(rng)
                card = rng.choice([None] * 8 + ["C0000001", "C0000002", "C9999999"])  # EMP's, RET's, nobody's
                batch.append(("settle", key, mdtrt, lines, at, card))
                used.append((key, mdtrt, lines))
        else:
            batch = []
            for _ in range(rng.randint(3, 8)):
                if not used:
                    break
                n += 1
                setl = rng.choice(used)[0]
                amount = rng.choice([None, rng.randrange(1, 3_000) * Y, 10**9])
                batch.append(("refund", f"T1:f{n}", setl, amount, rng.choice([None, None, "EX1"])))
        batches.append(batch)
    return regs, batches


def _mdtrt(register_key: str) -> str:
    from settlement.schemes.medical import mdtrt_id_for

    return mdtrt_id_for(register_key)


def _outcome(call: Any, *args: Any, **kw: Any) -> Any:
    try:
        return call(*args, **kw)
    except SettlementError as e:
        return (type(e).__name__, e.code)


def _as_outcome(result: Any) -> Any:
    return (type(result).__name__, result.code) if isinstance(result, SettlementError) else result


def _state(eng: Engine) -> dict[str, Any]:
    postings = [(p.key, p.kind, p.links_to, p.status, p.transfers, p.payload) for _, p in
                eng.ledger.postings(limit=100_000)]
    accounts = [a.code for a in eng.ledger.accounts()]
    return {
        "postings": sorted(postings, key=lambda p: p[0]),
        "balances": eng.ledger.balances(accounts),
        "accumulators": {p: eng.medical.accumulators(p) for p in PERSONS},
        "flags": [(f.flag_id, f.kind, f.person_id, f.detail) for f in eng.fraud.flags()],
        "visits": eng.store.read(lambda tx: tx.rows("SELECT mdtrt_id, status, settle_key FROM med_visits"
                                                    " ORDER BY mdtrt_id")),
        "settlements": eng.store.read(lambda tx: tx.rows("SELECT key, status, remaining FROM med_settlements"
                                                         " ORDER BY key")),
    }


@pytest.mark.parametrize("seed", SEEDS)
def test_a_batch_decides_as_one_at_a_time(make_store, store_kind: str, seed: int) -> None:
    print(f"seed {seed}")
    one, many = _engine(make_store(store_kind)), _engine(make_store(store_kind))
    regs, batches = _scenario(seed)
    for eng in (one, many):
        for key, person, inst, care in regs:
            _outcome(eng.medical.register, key, person, inst, care)
        eng.medical.void("T1:v0", "T1:voided")  # voided before it arrives: refused when it does
        eng.registry.report_death("OLD", dt.date(2024, 2, 1), actor="test")
    for batch in batches:
        if not batch:
            continue
        expected, jobs = [], []
        for req in batch:
            if req[0] == "settle":
                _, key, mdtrt, lines, at, card = req
                expected.append(_outcome(one.medical.settle, key, mdtrt, lines, at_institution=at, card_no=card))
                jobs.append(many.medical.settle_job(key, mdtrt, lines, at_institution=at, card_no=card))
            else:
                _, key, setl, amount, at = req
                expected.append(_outcome(one.medical.refund, key, setl, amount, at_institution=at))
                jobs.append(many.medical.refund_job(key, setl, amount, at_institution=at))
        handler = jobs[0][0]
        with many.store.transaction() as tx:
            got = [_as_outcome(r) for r in handler(tx, [item for _, item in jobs])]
        assert got == expected
    assert _state(many) == _state(one)
    for eng in (one, many):
        eng.ledger.check_invariants()


def test_two_visits_of_one_person_in_a_batch_share_the_deductible(make_store, store_kind: str) -> None:
    eng = _engine(make_store(store_kind))
    visits = [eng.medical.register(f"T1:r{i}", "EMP", "BJ3", "outpatient").mdtrt_id for i in range(4)]
    bill = [FeeLine("A", 800 * Y)]
    jobs = [eng.medical.settle_job(f"T1:s{i}", m, bill) for i, m in enumerate(visits)]
    with eng.store.transaction() as tx:
        out = jobs[0][0](tx, [item for _, item in jobs])
    dedc = [s.breakdown.act_pay_dedc for s in out]
    assert sum(dedc) == 1_800 * Y and dedc[0] == 800 * Y  # Beijing employees' outpatient deductible, used once
    assert sum(s.breakdown.acct_pay for s in out) <= 5_000 * Y
    assert eng.ledger.balance(chart.personal_account("EMP")) == 5_000 * Y - sum(s.breakdown.acct_pay for s in out)
    eng.ledger.check_invariants()
