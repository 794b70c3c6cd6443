"""Reconciliation cannot destroy settlements (issue 12, finding 8): a repair is planned and shown before it is
applied; a journal cut short (at a line boundary too) is told from a whole one by its trailer and repair
refuses it; a repair that would void more than a share of a terminal's day stops unless forced with a reason;
`accept` and a forced close are in the CLI, planned then applied. Each failed on main (fe24823): `--repair`
voided at once, journals had no trailer, there was no threshold, no --accept and no forced close."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path

import pytest

from settlement.errors import IncompleteJournal, InvalidJournalRow
from settlement.reconcile.journal import check_trailer, iter_rows, read_journal
from settlement.wire import write_journal_csv, write_journal_jsonl
from tests.security.test_operator_cli import day, invoke, postings  # noqa: F401  (the generated day fixture)
from tests.settlement.reconcile.test_reconcile import DAY

D = DAY.isoformat()
pytestmark = pytest.mark.usefixtures("wide_console")


def audit(db: Path, action: str) -> list[dict]:
    import sqlite3

    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT actor, key, outcome, detail FROM recon_audit WHERE action = ? ORDER BY seq",
                            (action,)).fetchall()
    return [{"actor": a, "key": k, "outcome": o, **json.loads(d)} for a, k, o, d in rows]


def busiest(lines) -> str:  # noqa: ANN001
    return Counter(ln.terminal_id for ln in lines if ln.kind == "settle").most_common(1)[0][0]


def busiest_first(lines, t: str) -> str:  # noqa: ANN001
    return next(ln.key for ln in lines if ln.terminal_id == t and ln.kind == "settle")


# -- trailers ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_an_export_carries_a_trailer_that_tells_a_cut_file(day, tmp_path, suffix):  # noqa: F811
    out, _ = day
    lines = read_journal(out / "journal.jsonl")
    path = tmp_path / f"j{suffix}"
    (write_journal_csv if suffix == ".csv" else write_journal_jsonl)(lines, path)
    trailer = check_trailer(path)
    assert trailer is not None and trailer.rows == len(lines) and trailer.last_serial == lines[-1].key
    assert len(list(iter_rows(path))) == len(lines)  # readers skip the trailer
    text = path.read_text()
    body, tail = text[:text.rindex("\n", 0, -1) + 1], text[text.rindex("\n", 0, -1) + 1:]
    cut = tmp_path / f"cut{suffix}"
    cut.write_text(body[:body.rindex("\n", 0, -1) + 1])  # cut at a line boundary, trailer gone
    assert check_trailer(cut) is None
    cut.write_text(body[:body.rindex("\n", 0, -1) + 1] + tail)  # a line dropped, the trailer kept
    with pytest.raises(IncompleteJournal, match="rows"):
        check_trailer(cut)
    cut.write_text(body.replace(lines[5].key, lines[5].key[:-1] + "9", 1) + tail)  # a line changed
    with pytest.raises(IncompleteJournal, match="sha256"):
        check_trailer(cut)
    cut.write_text(body + tail[:30])  # the trailer itself cut short
    with pytest.raises(IncompleteJournal, match="cut short"):
        check_trailer(cut)
    cut.write_text(text + body.splitlines(keepends=True)[-1])  # a line after the trailer
    with pytest.raises(InvalidJournalRow, match="after the trailer"):
        list(iter_rows(cut))


def test_a_trailer_survives_conversion_to_gbk(day, tmp_path):  # noqa: F811
    out, _ = day
    path = tmp_path / "j.csv"
    write_journal_csv(read_journal(out / "journal.jsonl"), path)
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes(path.read_text().encode("gbk"))
    assert check_trailer(gbk, "gbk") == check_trailer(path)


def test_repair_refuses_a_journal_cut_at_a_line_boundary(day, tmp_path):  # noqa: F811
    """The field case: a journal cut at a line boundary made every settlement after the cut "missing at the
    terminal", and repair voided them (84 on the day it happened)."""
    out, db = day
    text = (out / "journal.csv").read_text().splitlines(keepends=True)
    t = busiest(read_journal(out / "journal.jsonl"))
    at = [n for n, line in enumerate(text) if line.startswith(f"{t},") and ",settle," in line][1]
    cut = tmp_path / "journal.csv"
    cut.write_text("".join(text[:at]))  # cut at a line boundary inside a terminal's day: the rest gone
    before = postings(db)
    code, shown = invoke("reconcile", "--day", D, "--db", db, "--journal", cut, "--repair")
    assert code == 1 and "missing_at_terminal" in shown and "plan only" in shown, shown
    assert "without a complete trailer" in shown, shown
    code, shown = invoke("reconcile", "--day", D, "--db", db, "--journal", cut, "--repair", "--apply",
                         "--force-threshold", "the operator is sure")
    assert code == 2 and "INCOMPLETE_JOURNAL" in shown and "terminal export" in shown, shown
    assert postings(db) == before
    code, shown = invoke("reconcile", "--day", D, "--db", db, "--journal", out / "journal.csv")  # the whole file
    assert code == 0 and "clean" in shown, shown


def test_a_journal_whose_trailer_disagrees_is_not_imported(day, tmp_path):  # noqa: F811
    out, db = day
    text = (out / "journal.csv").read_text().splitlines(keepends=True)
    edited = tmp_path / "journal.csv"
    edited.write_text("".join(text[:-3] + text[-1:]))  # two lines dropped, the trailer kept
    code, shown = invoke("reconcile", "--day", D, "--db", db, "--journal", edited)
    assert code == 2 and "INCOMPLETE_JOURNAL" in shown and "rows" in shown, shown


# -- plan, then apply ----------------------------------------------------------------------------------------
def test_repair_shows_its_plan_and_changes_nothing_without_apply(tmp_path):
    out, db = tmp_path / "day", tmp_path / "day.db"
    code, shown = invoke("load", "generate", "--out", out, "--db", db, "--day", D, "--visits", 30,
                         "--collections", 8, "--persons-per-region", 12, "--discrepancy", "missing_at_terminal=1",
                         "--discrepancy", "missing_at_centre=1")
    assert code == 0, shown
    seeded = json.loads((out / "seeded.json").read_text())["journal"]
    (orphan,), (lost,) = seeded["missing_at_terminal"], seeded["missing_at_centre"]
    before = postings(db)
    code, shown = invoke("reconcile", "--day", D, "--db", db, "--journal", out / "journal.csv", "--repair")
    assert code == 1, shown
    assert orphan in shown and lost in shown and "void" in shown and "replay" in shown, shown
    assert "1 to void (take back)" in shown and "1 to replay (post)" in shown and "plan only" in shown, shown
    assert postings(db) == before and not audit(db, "void") and not audit(db, "replay")
    code, shown = invoke("reconcile", "--day", D, "--db", db, "--repair", "--apply", "--actor", "wang",
                         "--policies", out / "policies")
    assert code == 0 and "clean" in shown and "voided" in shown and "posted" in shown, shown
    assert postings(db) == before + 2  # the void and the replayed settlement (a registration posts nothing)
    assert {a["key"] for a in audit(db, "void")} == {orphan} and audit(db, "void")[0]["actor"] == "wang"


def test_a_repair_over_the_threshold_stops_unless_forced_with_a_reason(day, tmp_path):  # noqa: F811
    """A terminal's complete-looking export that lacks a third of its settlements (a restored backup, a
    journal rebuilt from the wrong day): repair would void them all."""
    out, db = day
    lines = read_journal(out / "journal.jsonl")
    t = busiest(lines)
    mine = [ln.key for ln in lines if ln.terminal_id == t and ln.kind == "settle"]
    gone = set(mine[: len(mine) // 3])
    short = tmp_path / "journal.csv"
    write_journal_csv([ln for ln in lines if ln.key not in gone and ln.original_key not in gone], short)
    before = postings(db)
    code, shown = invoke("reconcile", "--day", D, "--db", db, "--journal", short, "--repair", "--apply")
    assert code == 2 and "REPAIR_THRESHOLD" in shown and t in shown and "20%" in shown, shown
    assert postings(db) == before
    code, shown = invoke("reconcile", "--day", D, "--db", db, "--repair", "--apply", "--threshold", "0.5")
    assert code == 0 and "voided" in shown, shown  # a wider threshold, given on purpose
    voided = [a["key"] for a in audit(db, "void") if a["outcome"] == "voided"]
    assert len(voided) > 1 and set(voided) <= gone and postings(db) == before + len(voided)


def test_force_threshold_is_audited_with_its_reason(day, tmp_path):  # noqa: F811
    out, db = day
    lines = read_journal(out / "journal.jsonl")
    t = busiest(lines)
    gone = {ln.key for ln in lines if ln.terminal_id == t and ln.kind == "settle"} - {busiest_first(lines, t)}
    short = tmp_path / "journal.csv"
    write_journal_csv([ln for ln in lines if ln.key not in gone and ln.original_key not in gone], short)
    before = postings(db)
    code, shown = invoke("reconcile", "--day", D, "--db", db, "--journal", short, "--repair", "--apply",
                         "--force-threshold", "terminal stolen; its settlements were fraudulent", "--actor", "li")
    assert code == 0, shown
    voided = [a["key"] for a in audit(db, "void") if a["outcome"] == "voided"]
    assert len(voided) > 1 and set(voided) <= gone and postings(db) == before + len(voided)
    (forced,) = audit(db, "force_threshold")
    assert forced["actor"] == "li" and forced["reason"].startswith("terminal stolen") and t in forced["terminals"]


def test_accept_and_force_close_are_planned_then_applied(tmp_path):
    out, db = tmp_path / "day", tmp_path / "day.db"
    code, shown = invoke("load", "generate", "--out", out, "--db", db, "--day", D, "--visits", 60,
                         "--collections", 0, "--persons-per-region", 10, "--discrepancy", "amount_mismatch=2")
    assert code == 0, shown
    a, b = json.loads((out / "seeded.json").read_text())["journal"]["amount_mismatch"]
    common = ("--day", D, "--db", db)
    code, shown = invoke("reconcile", *common, "--journal", out / "journal.csv", "--accept", a)
    assert code == 2 and "--note" in shown, shown
    code, shown = invoke("reconcile", *common, "--journal", out / "journal.csv", "--accept", a, "--note",
                         "HIS corrected the bill")
    assert code == 1 and a in shown and "plan only" in shown and not audit(db, "accept"), shown
    code, shown = invoke("reconcile", *common, "--accept", "T9:404", "--note", "typo", "--apply")
    assert code == 2 and "T9:404" in shown and not audit(db, "accept"), shown
    code, shown = invoke("reconcile", *common, "--accept", a, "--note", "HIS corrected the bill", "--apply")
    assert code == 1 and "1 open differences" in shown, shown
    assert [(x["key"], x["note"]) for x in audit(db, "accept")] == [(a, "HIS corrected the bill")]
    code, shown = invoke("reconcile", *common, "--close")
    assert code == 1 and "not closed" in shown and not audit(db, "close"), shown
    code, shown = invoke("reconcile", *common, "--close", "--force", "--note", "bank confirms the centre")
    assert code == 1 and "plan" in shown and b not in [x["key"] for x in audit(db, "close")], shown
    assert not audit(db, "close")
    code, shown = invoke("reconcile", *common, "--close", "--force", "--note", "bank confirms the centre",
                         "--apply", "--actor", "zhao")
    assert code == 1 and "closed" in shown, shown
    (closed,) = audit(db, "close")
    assert closed["actor"] == "zhao" and closed["outcome"] == "forced" and closed["note"].startswith("bank")
    code, shown = invoke("reconcile", *common)
    assert code == 2 and "DAY_CLOSED" in shown


# -- restoring what was voided by mistake --------------------------------------------------------------------
def test_a_wrongly_voided_settlement_is_restored_by_a_correcting_posting(day, tmp_path):  # noqa: F811
    """The field case's aftermath: settlements voided by a repair that trusted a short journal stayed
    `status_mismatch` "manual" with no command to undo it. Now each is restored (planned, then applied with a
    reason), audited; it can be refunded and voided again like any settlement."""
    from settlement.ledger.store.sqlite import SqliteStore
    from settlement.schemes.engine import Engine
    from settlement.schemes.policy import PolicyBook

    out, db = day
    lines = read_journal(out / "journal.jsonl")
    t = busiest(lines)
    refunded = {ln.original_key for ln in lines if ln.kind in ("refund", "void")}
    gone = [ln.key for ln in lines if ln.terminal_id == t and ln.kind == "settle" and ln.status == "confirmed"
            and ln.key not in refunded][:2]
    short = tmp_path / "short.csv"
    write_journal_csv([ln for ln in lines if ln.key not in gone], short)
    code, shown = invoke("reconcile", "--day", D, "--db", db, "--journal", short, "--repair", "--apply",
                         "--force-threshold", "operator error, on purpose")
    assert code == 0 and shown.count("voided") >= 2, shown
    code, shown = invoke("reconcile", "--day", D, "--db", db, "--journal", out / "journal.csv")
    assert code == 1 and "reversed at the centre" in shown and all(k in shown for k in gone), shown
    before = postings(db)
    args = ("reconcile", "--day", D, "--db", db, *(x for k in gone for x in ("--restore", k)))
    code, shown = invoke(*args)
    assert code == 2 and "--note" in shown, shown
    code, shown = invoke(*args, "--note", "the whole journal proves them")
    assert code == 1 and "plan only" in shown and "2 to restore" in shown and postings(db) == before, shown
    code, shown = invoke(*args, "--note", "the whole journal proves them", "--apply", "--actor", "sun")
    assert code == 0 and "clean" in shown and shown.count("restored") >= 2, shown
    assert postings(db) == before + 2
    restores = [a for a in audit(db, "restore") if a["outcome"] == "restored"]
    assert sorted(a["key"] for a in restores) == sorted(gone)
    assert all(a["actor"] == "sun" and a["reason"] == "the whole journal proves them" for a in restores)
    code, shown = invoke(*args, "--note", "again", "--apply")
    assert code == 2 and "INVALID_STATE" in shown and "in force" in shown and postings(db) == before + 2, shown
    with SqliteStore(db) as store:
        noon = dt.datetime.combine(DAY, dt.time(4), tzinfo=dt.UTC)  # noon in China on the reconciled day
        eng = Engine(store, policies=PolicyBook.load(out / "policies"), clock=lambda: noon)
        s = eng.medical.settlement(gone[0])
        assert s.status == "settled" and s.refundable > 0
        eng.medical.refund(f"{t}:900001", gone[0], 1)
        eng.medical.void(f"{t}:900002", gone[1])
        eng.ledger.check_invariants()
    code, shown = invoke("reconcile", "--day", D, "--db", db)
    assert code == 1 and "2 open differences" in shown, shown
    assert f"settle {gone[1]} (" in shown and "reversed at the centre" in shown, shown  # voided again: seen
    assert f"refund {t}:900001 (0.01 yuan)" in shown, shown  # the refund (the journal predates it)
