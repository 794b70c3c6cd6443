"""The workload generators: reproducible days, faults that heal, seeded discrepancies as asked.

Every day here is a fixed (seed, day): the engine runs on the generator's DayClock, so what a day leaves is
the same, byte for byte, whatever the calendar says when the test runs.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import pytest

from settlement.ledger import CST
from settlement.ledger.store.sqlite import SqliteStore
from settlement.reconcile.journal import read_journal
from settlement.reconcile.reconciler import Reconciler
from settlement.reconcile.statement import write_statement
from settlement.schemes.engine import Engine
from settlement.schemes.policy import load_policy
from settlement.wire import journal_csv_text, write_journal_csv, write_journal_jsonl
from testing import load

DAY = dt.date(2026, 3, 2)
ACCOUNTS = [f"{r}/fund/hifp" for r in load.REGIONS]


def run_day(path: Path, seed: int, day: dt.date = DAY, **kw: object) -> tuple[load.DayOutcome, str]:
    """Drive (seed, day) on a fresh store; the day's outcome and a dump of everything it left: the ledger
    (accounts, postings with their stamps and payloads), the audit trail, the journals, a fund statement."""
    with SqliteStore(path) as store:
        eng = Engine(store, policies=load.policy_book(), clock=load.DayClock(day))
        pop = load.population(seed, hospitals_per_region=2, terminals_per_institution=1, persons_per_region=12)
        load.install(eng, pop, Reconciler(eng))
        out = load.hospital_day(eng, pop, seed=seed, visits=36, fault_rate=0.15, refund_rate=0.15, **kw)
        out.extend(load.pension_day(eng, pop, seed=seed, collections=10, fault_rate=0.3))
        eng.ledger.check_invariants()
        lines, _ = load.fund_statement(eng, out.day, ACCOUNTS, seed=seed, discrepancies={"statement_only": 1})
        statement = io.StringIO()
        write_statement(lines, statement)
        ledger = store.read(lambda tx: (
            tx.rows("SELECT code, kind, debits_posted, credits_posted, created_at FROM ledger_accounts ORDER BY code"),
            tx.rows("SELECT seq, key, kind, links_to, payload, created_at, status FROM ledger_postings ORDER BY seq"),
            tx.rows("SELECT * FROM ledger_transfers ORDER BY posting_seq, idx"),
            tx.rows("SELECT seq, at, person_id, event, actor, detail FROM audit_trail ORDER BY seq"),
        ))
        dump = json.dumps(ledger, ensure_ascii=False) + journal_csv_text(out.journal) + statement.getvalue()
        return out, dump


def test_a_day_is_reproducible_from_its_seed(tmp_path):
    ask = {"missing_at_centre": 1, "duplicate": 1, "status_mismatch": 1}
    a, _ = run_day(tmp_path / "a.db", 11, discrepancies=ask)
    b, _ = run_day(tmp_path / "b.db", 11, discrepancies=ask)
    c, _ = run_day(tmp_path / "c.db", 12)
    assert a.journal == b.journal and a.seeded == b.seeded and a.stats == b.stats
    assert [ln.to_dict() for ln in a.journal] != [ln.to_dict() for ln in c.journal]
    assert {k: len(v) for k, v in a.seeded.items()} == ask
    assert a.stats["visits"] == 36 and 0 < a.stats["collections"] <= 10
    assert a.stats["cross_region"] > 0 and a.stats["refunded"] > 0
    assert a.stats["lost_response"] + a.stats["lost_request"] + a.stats["crash"] > 0
    kinds = {ln.kind for ln in a.journal}
    assert kinds == {"settle", "refund", "void", "pension_collect"}
    assert {ln.status for ln in a.journal} >= {"confirmed", "reversed"}


def test_the_same_seed_and_day_leave_the_same_bytes_and_only_simulated_times(tmp_path):
    """Postings, journals and statements are equal byte for byte, and every time the day left (ledger
    accounts and postings, audit trail, journal lines) is on the simulated day in China: nothing read the
    wall clock, so the same holds on any calendar day the test runs."""
    day, first = run_day(tmp_path / "a.db", 7)
    _, second = run_day(tmp_path / "b.db", 7)
    assert first == second
    other = dt.date(2025, 11, 28)
    _, elsewhere = run_day(tmp_path / "c.db", 7, other)
    assert elsewhere != first and "2026-03" not in elsewhere
    with SqliteStore(tmp_path / "a.db") as store:
        stamps = store.read(lambda tx: [r[0] for r in tx.rows(
            "SELECT created_at FROM ledger_accounts UNION ALL SELECT created_at FROM ledger_postings"
            " UNION ALL SELECT at FROM audit_trail")])
    stamps += [ln.at for ln in day.journal]
    assert stamps and {dt.datetime.fromisoformat(s).astimezone(CST).date() for s in stamps} == {DAY}


def test_journals_round_trip_through_csv_and_jsonl(tmp_path):
    day, _ = run_day(tmp_path / "a.db", 3)
    write_journal_csv(day.journal, tmp_path / "j.csv")
    write_journal_jsonl(day.journal, tmp_path / "j.jsonl")
    assert read_journal(tmp_path / "j.csv") == read_journal(tmp_path / "j.jsonl") == day.journal
    assert all(ln.business_day == DAY.isoformat() for ln in day.journal)


def test_bad_requests_are_refused(tmp_path):
    with SqliteStore(tmp_path / "x.db") as store:
        pop = load.population(1, hospitals_per_region=1, terminals_per_institution=1, persons_per_region=10)
        with pytest.raises(ValueError, match="DayClock"):  # an engine on the wall clock cannot replay a day
            load.hospital_day(Engine(store, policies=load.policy_book()), pop, seed=1)
        eng = Engine(store, policies=load.policy_book(), clock=load.DayClock(DAY))
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
