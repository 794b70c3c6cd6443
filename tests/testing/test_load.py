"""The workload generators: reproducible days, faults that heal, seeded discrepancies as asked."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from settlement.ledger.store.sqlite import SqliteStore
from settlement.reconcile.journal import read_journal
from settlement.reconcile.reconciler import Reconciler
from settlement.schemes.engine import Engine
from settlement.schemes.policy import load_policy
from settlement.wire import write_journal_csv, write_journal_jsonl
from testing import load


def run_day(path: Path, seed: int, **kw: object) -> load.DayOutcome:
    with SqliteStore(path) as store:
        eng = Engine(store, policies=load.policy_book())
        pop = load.population(seed, hospitals_per_region=2, terminals_per_institution=1, persons_per_region=12)
        load.install(eng, pop, Reconciler(eng))
        day = load.hospital_day(eng, pop, seed=seed, visits=36, fault_rate=0.15, refund_rate=0.15, **kw)
        day.extend(load.pension_day(eng, pop, seed=seed, collections=10, fault_rate=0.3))
        eng.ledger.check_invariants()
        return day


def test_a_day_is_reproducible_from_its_seed(tmp_path):
    ask = {"missing_at_centre": 1, "duplicate": 1, "status_mismatch": 1}
    a = run_day(tmp_path / "a.db", 11, discrepancies=ask)
    b = run_day(tmp_path / "b.db", 11, discrepancies=ask)
    c = run_day(tmp_path / "c.db", 12)
    assert a.journal == b.journal and a.seeded == b.seeded and a.stats == b.stats
    assert [ln.to_dict() for ln in a.journal] != [ln.to_dict() for ln in c.journal]
    assert {k: len(v) for k, v in a.seeded.items()} == ask
    assert a.stats["visits"] == 36 and 0 < a.stats["collections"] <= 10
    assert a.stats["cross_region"] > 0 and a.stats["refunded"] > 0
    assert a.stats["lost_response"] + a.stats["lost_request"] + a.stats["crash"] > 0
    kinds = {ln.kind for ln in a.journal}
    assert kinds == {"settle", "refund", "void", "pension_collect"}
    assert {ln.status for ln in a.journal} >= {"confirmed", "reversed"}


def test_journals_round_trip_through_csv_and_jsonl(tmp_path):
    day = run_day(tmp_path / "a.db", 3)
    write_journal_csv(day.journal, tmp_path / "j.csv")
    write_journal_jsonl(day.journal, tmp_path / "j.jsonl")
    assert read_journal(tmp_path / "j.csv") == read_journal(tmp_path / "j.jsonl") == day.journal
    assert all(ln.business_day == load.today().isoformat() for ln in day.journal)


def test_bad_requests_are_refused(tmp_path):
    with SqliteStore(tmp_path / "x.db") as store:
        eng = Engine(store, policies=load.policy_book())
        pop = load.population(1, hospitals_per_region=1, terminals_per_institution=1, persons_per_region=10)
        with pytest.raises(ValueError, match="a driven day must be today"):
            load.hospital_day(eng, pop, seed=1, day=load.today() - dt.timedelta(days=1))
        load.install(eng, pop)
        with pytest.raises(ValueError, match="unknown discrepancy class"):
            load.hospital_day(eng, pop, seed=1, visits=5, discrepancies={"lost": 1})
        with pytest.raises(ValueError, match="generate a bigger day"):
            load.hospital_day(eng, pop, seed=1, visits=3, discrepancies={"duplicate": 5})


def test_population_and_policy_clones(tmp_path):
    pop = load.population(2)
    assert {i.region for i in pop.institutions} == set(load.REGIONS)
    assert len({h.person_id for h in pop.persons}) == len(pop.persons)
    assert pop.hall_terminals() and pop.hospital_terminals()
    assert set(load.policy_book().regions()) == set(load.REGIONS)
    paths = load.write_policies(tmp_path)
    assert sorted(load_policy(p).region for p in paths) == sorted(load.CLONES)
