"""`sscard load generate`, `sscard reconcile` and `sscard clear` through Typer's CliRunner (SQLite)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from settlement.ledger import Ledger
from settlement.ledger.store.sqlite import SqliteStore
from sscard import ops_cmd
from tests.settlement.reconcile.test_reconcile import DAY

app = typer.Typer()
ops_cmd.register(app)
runner = CliRunner()


def invoke(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_generate_reconcile_repair_clear(tmp_path):
    out, db = tmp_path / "day", tmp_path / "day.db"
    code, text = invoke("load", "generate", "--out", out, "--db", db, "--day", DAY, "--visits", 30, "--collections", 8,
                        "--persons-per-region", 12, "--discrepancy", "missing_at_centre=1",
                        "--discrepancy", "missing_at_terminal=1", "--discrepancy", "status_mismatch=1")
    assert code == 0, text
    seeded = json.loads((out / "seeded.json").read_text())
    day = seeded["day"]
    assert day == DAY.isoformat()
    assert {k: len(v) for k, v in seeded["journal"].items()} == {
        "missing_at_centre": 1, "missing_at_terminal": 1, "status_mismatch": 1}
    assert (out / "journal.jsonl").exists() and (out / "statement.csv").exists()
    common = ("--day", day, "--db", db, "--policies", out / "policies", "--report-dir", tmp_path / "reports")
    code, text = invoke("reconcile", "--journal", out / "journal.csv", *common)
    assert code == 1, text
    assert "3 open differences" in text and "missing_at_centre" in text and "(3 journal, 0 statement)" in text
    diffs = (tmp_path / "reports" / f"recon-{day}-differences.csv").read_text().splitlines()
    assert len(diffs) == 4 and diffs[0].startswith("business_day,class,reason,key")
    report = json.loads((tmp_path / "reports" / f"recon-{day}.json").read_text())
    assert {d["key"] for d in report["differences"]} == {k for v in seeded["journal"].values() for k in v}
    code, text = invoke("reconcile", "--repair", "--close", "--apply", *common)
    assert code == 0, text
    assert "clean" in text and "closed" in text and "voided" in text and "posted" in text
    code, text = invoke("reconcile", *common)
    assert code == 2 and "DAY_CLOSED" in text
    code, text = invoke("clear", "--period", day, "--db", db, "--report-dir", tmp_path / "reports")
    assert code == 0, text
    assert "net positions sum to 0.00" in text
    code, text = invoke("clear", "--period", day, "--db", db)
    assert code == 0 and "already cleared" in text


def test_bad_input_exits_2_and_names_the_row(tmp_path):
    db = tmp_path / "x.db"
    with SqliteStore(db) as store:  # an (empty) ledger: a missing one is refused (tests/security/)
        Ledger(store)
    bad = tmp_path / "journal.csv"
    bad.write_text("terminal_id,business_day\nT1,2024-03-01\n")
    code, text = invoke("reconcile", "--day", "2024-03-01", "--db", db, "--journal", bad)
    assert code == 2 and "INVALID_JOURNAL_ROW" in text and "header" in text
    code, text = invoke("reconcile", "--day", "2024-13-01", "--db", db)
    assert code == 2 and "INVALID_REQUEST" in text
    code, text = invoke("reconcile", "--day", "2024-03-01")
    assert code != 0 and "--db" in text
