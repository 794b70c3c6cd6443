"""Day-end reconciliation on both stores: every seeded discrepancy is found and nothing else, repairs make
the day clean and are audited and idempotent, closed days refuse work, bad input names the row."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Mapping

import pytest

from settlement import errors
from settlement.ledger import Store
from settlement.reconcile.journal import iter_csv_rows, read_journal
from settlement.reconcile.reconciler import Reconciler
from settlement.reconcile.repair import Repairs, recon_void_key
from settlement.reconcile.statement import read_statement, write_statement
from settlement.schemes.engine import Engine
from settlement.wire import CSV_HEADER, JournalLine, write_journal_csv, write_journal_jsonl
from testing import load

REPAIRABLE = ("missing_at_centre", "missing_at_terminal", "status_mismatch")
DAY = dt.date(2026, 3, 2)
"""The simulated business day: the engine runs on the load generator's clock, never on the wall's."""


def make_world(store: Store, *, persons: int = 16, day: dt.date = DAY) -> tuple[Engine, Reconciler, load.Population]:
    eng = Engine(store, policies=load.policy_book(), clock=load.DayClock(day))
    recon = Reconciler(eng)
    pop = load.population(3, hospitals_per_region=2, terminals_per_institution=1, persons_per_region=persons)
    load.install(eng, pop, recon)
    return eng, recon, pop


def found(report) -> set[tuple[str, str]]:  # noqa: ANN001
    return {(d.cls, d.key) for d in report.open_differences}


def seeded(*days: load.DayOutcome) -> set[tuple[str, str]]:
    return {(cls, k) for d in days for cls, keys in d.seeded.items() for k in keys}


@pytest.fixture
def world(store: Store) -> tuple[Engine, Reconciler, load.Population]:
    return make_world(store)


def drive(eng: Engine, pop: load.Population, *, visits: int = 40, collections: int = 14,
          hospital: Mapping[str, int] | None = None, pension: Mapping[str, int] | None = None,
          seed: int = 5) -> load.DayOutcome:
    day = load.hospital_day(eng, pop, seed=seed, visits=visits, discrepancies=hospital or {})
    return day.extend(load.pension_day(eng, pop, seed=seed, collections=collections, discrepancies=pension or {}))


# -- classification ------------------------------------------------------------------------------------------------
def test_a_clean_day_is_clean_and_totals_agree(world):
    eng, recon, pop = world
    day = drive(eng, pop, visits=50, collections=16)
    assert day.stats["lost_response"] + day.stats["crash"] + day.stats["lost_request"] > 0 or day.stats["refunded"]
    recon.import_lines(day.journal, actor="ops")
    report = recon.reconcile(day.day, actor="ops")
    assert report.clean, [d.message for d in report.differences]
    assert report.totals and all(t.agree for t in report.totals)
    assert report.fund_totals()["hifp_pay"][0] == report.fund_totals()["hifp_pay"][1] > 0
    assert report.journal_lines == len(day.journal)
    eng.ledger.check_invariants()


def test_every_seeded_discrepancy_is_found_and_nothing_else(world):
    eng, recon, pop = world
    each = dict.fromkeys(load.DISCREPANCIES, 1)
    day = drive(eng, pop, visits=48, collections=14, hospital={**each, "missing_at_centre": 2},
                pension={"missing_at_centre": 1, "amount_mismatch": 1, "duplicate": 1})
    recon.import_lines(day.journal, actor="ops")
    report = recon.reconcile(day.day, actor="ops")
    assert found(report) == seeded(day)
    by_key = {d.key: d for d in report.differences}
    assert {d.cls for d in report.differences} == set(load.DISCREPANCIES)
    for key in day.seeded["status_mismatch"]:
        assert by_key[key].reason == "reversed_at_terminal_only" and by_key[key].repair == "void"
    for key in day.seeded["missing_at_centre"]:
        assert by_key[key].repair == "replay" and by_key[key].centre is None
    for key in day.seeded["amount_mismatch"]:
        d = by_key[key]
        assert d.repair == "manual" and d.journal and d.centre and d.journal["amount"] - d.centre["amount"] == 100
    assert all(d.institution_id for d in report.differences)
    # terminal totals disagree exactly where the seeded differences are
    bad_terminals = {d.terminal_id for d in report.differences}
    assert {t.terminal_id for t in report.totals if not t.agree} <= bad_terminals


def test_repairs_make_the_day_clean_and_are_audited_and_idempotent(world):
    eng, recon, pop = world
    day = drive(eng, pop, visits=50, collections=12, hospital=dict.fromkeys(REPAIRABLE, 1),
                pension={"missing_at_centre": 1})
    recon.import_lines(day.journal, actor="ops")
    before = recon.reconcile(day.day, actor="ops")
    assert found(before) == seeded(day)
    result = recon.repair(day.day, actor="ops")
    assert sorted(a.outcome for a in result.actions) == ["posted", "posted", "voided", "voided"]
    assert result.after.clean and all(t.agree for t in result.after.totals)
    void_keys = {a.key: a.posting_key for a in result.actions if a.action == "void"}
    (orphan,) = day.seeded["missing_at_terminal"]
    assert void_keys[orphan] == recon_void_key(orphan)  # no terminal void: reconciliation's own key
    (voided,) = day.seeded["status_mismatch"]
    assert void_keys[voided].startswith(voided.split(":")[0] + ":")  # the terminal's own void key
    n = len(eng.ledger.postings(limit=100_000))
    again = recon.repair(day.day, actor="ops")
    assert again.actions == [] and again.after.clean
    assert len(eng.ledger.postings(limit=100_000)) == n
    assert recon.reconcile(day.day, actor="ops").clean
    trail = recon.audit(day.day)
    repairs = [e for e in trail if e.action in ("replay", "void")]
    assert [e.outcome for e in repairs].count("started") == 4
    assert {e.key for e in repairs} == {k for _, k in seeded(day)}
    assert all(e.actor == "ops" and e.at for e in trail)
    eng.ledger.check_invariants()


def test_a_repair_interrupted_after_posting_posts_nothing_twice(world, monkeypatch):
    eng, recon, pop = world
    day = drive(eng, pop, visits=30, collections=0, hospital={"missing_at_centre": 1})
    recon.import_lines(day.journal, actor="ops")
    real = Repairs._record
    calls = []

    def crash_once(self, *a, **kw):  # noqa: ANN001, ANN002, ANN003
        if not calls:
            calls.append(1)
            raise RuntimeError("power cut after the settlement committed")
        return real(self, *a, **kw)

    monkeypatch.setattr(Repairs, "_record", crash_once)
    with pytest.raises(RuntimeError):
        recon.repair(day.day, actor="ops")
    n = len(eng.ledger.postings(limit=100_000))
    result = recon.repair(day.day, actor="ops")  # the difference is gone: the replay did commit
    assert result.after.clean and len(eng.ledger.postings(limit=100_000)) == n
    (key,) = day.seeded["missing_at_centre"]
    assert [e.outcome for e in recon.audit(day.day) if e.key == key] == ["started"]


def test_a_failed_replay_is_audited_and_posts_nothing(world):
    eng, recon, pop = world
    day = drive(eng, pop, visits=20, collections=0, hospital={"missing_at_centre": 1})
    (key,) = day.seeded["missing_at_centre"]
    lines = [JournalLine(**{**ln.to_dict(), "request": None}) if ln.key == key else ln for ln in day.journal]
    recon.import_lines(lines, actor="ops")
    n = len(eng.ledger.postings(limit=100_000))
    result = recon.repair(day.day, actor="ops")
    assert [(a.key, a.outcome) for a in result.actions] == [(key, "failed")]
    assert "no request" in result.actions[0].detail
    assert found(result.after) == {("missing_at_centre", key)}
    assert len(eng.ledger.postings(limit=100_000)) == n


def test_manual_differences_stay_until_accepted_and_a_closed_day_refuses_work(world):
    eng, recon, pop = world
    day = drive(eng, pop, visits=30, collections=0, hospital={"amount_mismatch": 1, "duplicate": 1})
    recon.import_lines(day.journal, actor="ops")
    result = recon.repair(day.day, actor="ops")
    assert result.actions == [] and found(result.after) == seeded(day)
    with pytest.raises(errors.InvalidState, match="2 open differences"):
        recon.close_day(day.day, actor="ops")
    with pytest.raises(errors.InvalidRequest):
        recon.accept(day.day, day.seeded["duplicate"][0], actor="ops", note=" ")
    for _, key in seeded(day):
        recon.accept(day.day, key, actor="ops", note="HIS corrected; terminal re-export pending")
    report = recon.close_day(day.day, actor="ops")
    assert report.clean and report.closed and len(report.differences) == 2
    assert all(d.accepted for d in report.differences)
    for attempt in (lambda: recon.reconcile(day.day, actor="ops"), lambda: recon.repair(day.day, actor="ops"),
                    lambda: recon.import_lines(day.journal, actor="ops"),
                    lambda: recon.accept(day.day, "x:1", actor="ops", note="late")):
        with pytest.raises(errors.DayClosed):
            attempt()
    stored = recon.report(day.day)
    assert stored is not None and stored.closed and stored.run_id == report.run_id


def test_a_terminal_whose_journal_is_missing_is_flagged_not_itemised(world):
    eng, recon, pop = world
    day = drive(eng, pop, visits=30, collections=0)
    absent = day.journal[0].terminal_id
    recon.import_lines([ln for ln in day.journal if ln.terminal_id != absent], actor="ops")
    report = recon.reconcile(day.day, actor="ops")
    assert found(report) == {("journal_missing", absent)}
    assert recon.repair(day.day, actor="ops").actions == []
    recon.import_lines([ln for ln in day.journal if ln.terminal_id == absent], actor="ops")
    assert recon.reconcile(day.day, actor="ops").clean


def test_reimporting_a_terminal_day_replaces_it(world):
    eng, recon, pop = world
    day = drive(eng, pop, visits=20, collections=0)
    recon.import_lines(day.journal, actor="ops")
    recon.import_lines(day.journal, actor="ops")
    report = recon.reconcile(day.day, actor="ops")
    assert report.clean and report.journal_lines == len(day.journal)


def test_unknown_terminal_and_wrong_institution_name_the_row_and_import_nothing(world, tmp_path):
    eng, recon, pop = world
    day = drive(eng, pop, visits=10, collections=0)
    good = day.journal[0]
    stranger = JournalLine(**{**good.to_dict(), "terminal_id": "TX9", "key": "TX9:000001", "request": None})
    path = tmp_path / "journal.csv"
    write_journal_csv([*day.journal[:3], stranger], path)
    with pytest.raises(errors.UnknownTerminal, match=r"journal.csv row 4: terminal TX9 is not registered"):
        recon.import_journal([path], actor="ops")
    wrong = JournalLine(**{**good.to_dict(), "institution_id": "H99999999"})
    write_journal_csv([*day.journal[:2], wrong], path)
    with pytest.raises(errors.InvalidJournalRow, match=r"journal.csv row 3: institution_id: terminal .* belongs to"):
        recon.import_journal([path], actor="ops")
    assert recon.reconcile(day.day, actor="ops").journal_lines == 0


def test_bad_request_json_in_a_csv_names_the_row(world, tmp_path):
    eng, recon, pop = world
    day = drive(eng, pop, visits=6, collections=0)
    path = tmp_path / "j.csv"
    rows = [ln.csv_values() for ln in day.journal]
    rows[2][-1] = "[1, 2]"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_HEADER.split(","))
        w.writerows(rows)
    with pytest.raises(errors.InvalidJournalRow, match=r"j.csv row 3: request"):
        recon.import_journal([path], actor="ops")
    assert recon.reconcile(day.day, actor="ops").journal_lines == 0


def test_csv_and_jsonl_journals_import_alike(world, tmp_path):
    eng, recon, pop = world
    day = drive(eng, pop, visits=20, collections=8, hospital={"duplicate": 1})
    write_journal_csv(day.journal, tmp_path / "a.csv")
    write_journal_jsonl(day.journal, tmp_path / "a.jsonl")
    assert read_journal(tmp_path / "a.csv") == read_journal(tmp_path / "a.jsonl") == day.journal
    recon.import_journal([tmp_path / "a.jsonl"], actor="ops")
    via_jsonl = found(recon.reconcile(day.day, actor="ops"))
    recon.import_journal([tmp_path / "a.csv"], actor="ops")
    assert found(recon.reconcile(day.day, actor="ops")) == via_jsonl == seeded(day)


def test_a_bad_day_is_a_typed_error(world):
    _, recon, _ = world
    for bad in ("2024-13-01", "yesterday", "2024-3-1"):
        with pytest.raises(errors.InvalidRequest):
            recon.reconcile(bad, actor="ops")


# -- statements ------------------------------------------------------------------------------------------------
def test_statement_differences_are_found(world, tmp_path):
    eng, recon, pop = world
    day = drive(eng, pop, visits=40, collections=0)
    accounts = [f"{r}/fund/hifp" for r in load.REGIONS]
    lines, st_seeded = load.fund_statement(eng, day.day, accounts, seed=1, discrepancies={
        "statement_only": 1, "ledger_only": 1, "statement_amount_mismatch": 1, "statement_duplicate": 1})
    write_statement(lines, tmp_path / "st.csv")
    assert read_statement(tmp_path / "st.csv") == lines
    recon.import_lines(day.journal, actor="ops")
    recon.import_statement([tmp_path / "st.csv"], actor="ops")
    report = recon.reconcile(day.day, actor="ops")
    got = {(s.cls, s.reference) for s in report.open_statement_differences}
    assert got == {(c, r) for c, refs in st_seeded.items() for r in refs}
    assert not report.open_differences and not report.clean
    # a statement drawn per terminal batch agrees with the ledger
    batch, _ = load.fund_statement(eng, day.day, accounts, seed=1, batch=True)
    write_statement(batch, tmp_path / "batch.csv")
    recon.import_statement([tmp_path / "batch.csv"], actor="ops")
    assert recon.reconcile(day.day, actor="ops").clean


def test_bad_statement_rows_name_the_row(world, tmp_path):
    eng, recon, pop = world
    day = eng.today().isoformat()
    head = "value_date,account,reference,debit,credit,description\n"
    cases = {
        "12.5": r"row 2: debit: .*exactly two decimals",
        "-12.50": r"row 2: debit: .*exactly two decimals",
        "1,000.00": r"row 2",
    }
    for amount, msg in cases.items():
        p = tmp_path / "s.csv"
        p.write_text(head + f"{day},110000/fund/hifp,T1:1,1.00,,x\n{day},110000/fund/hifp,T1:2,\"{amount}\",,x\n")
        with pytest.raises(errors.InvalidStatementRow, match=msg):
            recon.import_statement([p], actor="ops")
    p = tmp_path / "s.csv"
    p.write_text(head + f"{day},110000/fund/nope,T1:1,1.00,,x\n")
    with pytest.raises(errors.InvalidStatementRow, match=r"s.csv row 1: account: no ledger account"):
        recon.import_statement([p], actor="ops")
    p.write_text(head + f"{day},110000/fund/hifp,T1:1,1.00,2.00,x\n")
    with pytest.raises(errors.InvalidStatementRow, match=r"row 1: debit: give exactly one"):
        recon.import_statement([p], actor="ops")
    p.write_text("date,account\n")
    with pytest.raises(errors.InvalidStatementRow, match="header"):
        recon.import_statement([p], actor="ops")


# -- the journal format (no store) -----------------------------------------------------------------------------
def _line(**over: object) -> JournalLine:
    base = dict(terminal_id="T1", business_day="2024-03-01", key="T1:000001", kind="settle", status="confirmed",
                amount=1000, institution_id="H1", insured_region="110000", treatment_region="110000",
                at="2024-03-01T09:00:00+08:00", hifp_pay=700, psn_cash_pay=300, request={"mdtrt_id": "MD1"})
    return JournalLine(**{**base, **over})  # type: ignore[arg-type]


def _csv(rows: list[list[str]]) -> io.StringIO:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER.split(","))
    w.writerows(rows)
    buf.seek(0)
    buf.name = "journal.csv"  # type: ignore[misc]
    return buf


@pytest.mark.parametrize(("field", "value", "message"), [
    ("amount", "12.34", r"row 2: amount: .*whole number of fen"),
    ("amount", "-5", r"row 2: amount: .*whole number of fen"),
    ("hifp_pay", "", r"row 2: hifp_pay: .*whole number of fen"),
    ("amount", "999", r"row 2: amount: the breakdown sums to 1000 fen but amount is 999"),
    ("key", "T2:000001", r"row 2: key: key must be T1:<serial>"),
    ("kind", "refundd", r"row 2: kind: kind must be one of"),
    ("status", "ok", r"row 2: status: status must be one of"),
    ("business_day", "2024-02-30", r"row 2: business_day: "),
    ("at", "2024-03-01 09:00", r"row 2: at: at needs a UTC offset"),
    ("at", "soon", r"row 2: at: at must be an ISO 8601"),
    ("original_key", "T1:000000", r"row 2: original_key: a settle has no original_key"),
    ("request", "{not json", r"row 2: request: request is not valid JSON"),
    ("institution_id", "", r"row 2: institution_id: "),
])
def test_bad_journal_rows_name_the_row_and_field(field, value, message):
    good = _line().csv_values()
    bad = list(good)
    bad[CSV_HEADER.split(",").index(field)] = value
    with pytest.raises(errors.InvalidJournalRow, match=message):
        list(iter_csv_rows(_csv([good, bad, good])))


def test_journal_line_contract():
    with pytest.raises(errors.InvalidJournalRow, match="a void needs original_key"):
        _line(kind="void", amount=0, hifp_pay=0, psn_cash_pay=0)
    with pytest.raises(errors.InvalidJournalRow, match="cannot be 'reversed'"):
        _line(kind="refund", status="reversed", original_key="T1:000000")
    with pytest.raises(errors.InvalidJournalRow, match="carries no medical breakdown"):
        _line(kind="pension_collect")
    _line(kind="pension_collect", hifp_pay=0, psn_cash_pay=0)
    _line(status="reversed", hifp_pay=0, psn_cash_pay=0)  # breakdown unknown after a lost response: all 0
    ln = _line()
    assert JournalLine.from_row(next(iter_csv_rows(_csv([ln.csv_values()])))) == ln
    with pytest.raises(errors.InvalidJournalRow, match="line 1 must be the header"):
        list(iter_csv_rows(io.StringIO("terminal,day\n")))


def test_a_line_filed_under_the_day_before_still_matches_and_a_line_on_both_days_is_a_duplicate(world):
    eng, recon, pop = world
    day = drive(eng, pop, visits=30, collections=0)
    yesterday = (dt.date.fromisoformat(day.day) - dt.timedelta(days=1)).isoformat()
    settles = [ln for ln in day.journal if ln.kind == "settle" and ln.status == "confirmed"]
    moved, twice = settles[0], settles[1]
    early = [JournalLine(**{**ln.to_dict(), "business_day": yesterday}) for ln in (moved, twice)]
    recon.import_lines([ln for ln in day.journal if ln is not moved], actor="ops")
    recon.import_lines(early, actor="ops")  # the terminals' clocks were a little behind at midnight
    assert found(recon.reconcile(yesterday, actor="ops")) == {("duplicate", twice.key)}
    assert found(recon.reconcile(day.day, actor="ops")) == {("duplicate", twice.key)}


def test_a_settlement_voided_from_a_short_journal_is_restored_on_both_stores(world):
    """(tests/security/test_repair_plan.py drives this through the CLI on SQLite; here the library on each
    store: the correcting posting, the copy of the ledger and the comparison.)"""
    eng, recon, pop = world
    day = drive(eng, pop, visits=40, collections=0)
    settled = [ln.key for ln in day.journal if ln.kind == "settle" and ln.status == "confirmed"
               and not any(o.original_key == ln.key for o in day.journal)]
    gone = settled[0]
    recon.import_lines([ln for ln in day.journal if ln.key != gone], actor="ops")
    voided = recon.repair(day.day, actor="ops", keys=[gone])
    assert [a.outcome for a in voided.actions] == ["voided"]
    recon.import_lines(day.journal, actor="ops")
    assert found(recon.reconcile(day.day, actor="ops")) == {("status_mismatch", gone)}
    with pytest.raises(errors.InvalidState):
        recon.plan_restore(day.day, [settled[1]])  # in force: nothing to restore
    plan = recon.plan_restore(day.day, [gone])
    assert plan[0].amount > 0 and plan[0].restore_key.startswith("RECON:R")
    result = recon.apply_restore(day.day, plan, actor="ops", reason="the whole journal has it")
    assert [a.outcome for a in result.actions] == ["restored"] and result.after.clean
    assert recon.apply_restore(day.day, plan, actor="ops", reason="again").actions[0].outcome == "replayed"
    assert eng.medical.settlement(gone).status == "settled"
    eng.ledger.check_invariants()
