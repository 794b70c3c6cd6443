"""Operator mistakes at the command line (issue 12, finding 8): each is caught with a clear message and a
non-zero exit before anything changes. A mistyped `--db` is not a new, empty ledger; a day with no data is
not "clean"; a GBK file is read with `--encoding gbk` and refused without it naming the row that is not
UTF-8; an unregistered terminal's journal names the `--terminals` option that registers it."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from settlement.reconcile.journal import read_journal
from settlement.wire import JournalLine, journal_csv_text
from sscard.cli import app
from sscard.stack import listening_socket
from tests.settlement.reconcile.test_reconcile import DAY

runner = CliRunner()


def invoke(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture
def day(tmp_path: Path) -> tuple[Path, Path]:
    """A generated hospital day without discrepancies: (its directory, its ledger)."""
    out, db = tmp_path / "day", tmp_path / "day.db"
    code, text = invoke("load", "generate", "--out", out, "--db", db, "--day", DAY, "--visits", 180,
                        "--collections", 0, "--persons-per-region", 12)
    assert code == 0, text
    return out, db


def postings(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM ledger_postings").fetchone()[0])


@pytest.mark.parametrize("command", [
    ("reconcile", "--day", DAY.isoformat()),
    ("clear", "--period", DAY.isoformat()),
])
def test_a_mistyped_db_is_refused_not_created(tmp_path, day, command):
    typo = tmp_path / "dya.db"
    code, text = invoke(*command, "--db", typo)
    assert code == 2, text
    assert "NO_LEDGER" in text and str(typo.name) in text, text
    assert not typo.exists() and not list(tmp_path.glob("dya.db*"))


def test_settlement_serve_refuses_a_missing_db_without_init(tmp_path):
    keys = tmp_path / "keys.toml"
    keys.write_text("")
    with listening_socket() as sock:  # (where it would serve, if it started)
        out = subprocess.run([sys.executable, "-m", "sscard", "settlement", "serve", "--db", str(tmp_path / "nope.db"),
                              "--keys", str(keys), "--fd", str(sock.fileno())], pass_fds=[sock.fileno()],
                             capture_output=True, text=True, timeout=60)
    text = out.stdout + out.stderr
    assert out.returncode == 2 and "NO_LEDGER" in text and "--init" in text, text
    assert not (tmp_path / "nope.db").exists()


def test_a_day_without_data_is_not_clean(day):
    out, db = day
    before = postings(db)
    code, text = invoke("reconcile", "--day", "2026-03-03", "--db", db)
    assert code == 2, text
    assert "NO_DATA" in text and "2026-03-03" in text, text
    code, text = invoke("reconcile", "--day", "2026-03-03", "--db", db, "--close")
    assert code == 2 and "NO_DATA" in text and "closed" not in text.replace("not closed", ""), text
    assert postings(db) == before


def _gbk_journal(out: Path, row: int) -> tuple[Path, str]:
    """The day's journal as a GBK file whose data row `row` carries Chinese text (a HIS's memo in the
    request): every other row is ASCII, so only that row is not UTF-8."""
    lines = read_journal(out / "journal.jsonl")
    assert len(lines) > row + 20
    i = next(n for n in range(row - 1, len(lines)) if lines[n].request)
    ln = lines[i]
    lines[i] = JournalLine(**{**{f: getattr(ln, f) for f in JournalLine.__dataclass_fields__},
                              "request": {**dict(ln.request or {}), "memo": "门诊挂号费 诊查费"}})
    text = journal_csv_text(lines)
    path = out / "journal-gbk.csv"
    path.write_bytes(text.encode("gbk"))
    return path, ln.key


def test_a_gbk_journal_names_its_row_and_reads_with_encoding(day):
    out, db = day
    path, key = _gbk_journal(out, 150)
    csv_rows = path.read_bytes().split(b"\n")
    row = next(n for n, b in enumerate(csv_rows) if key.encode() in b and not b.isascii())  # 1 = first data row
    code, text = invoke("reconcile", "--day", DAY.isoformat(), "--db", db, "--journal", path)
    assert code == 2, text
    assert f"row {row}:" in text and "UTF-8" in text and "--encoding" in text, text
    code, text = invoke("reconcile", "--day", DAY.isoformat(), "--db", db, "--journal", path, "--encoding", "gbk")
    assert code == 0 and "clean" in text, text
    code, text = invoke("reconcile", "--day", DAY.isoformat(), "--db", db, "--journal", path, "--encoding", "latin9")
    assert code == 2 and "encoding" in text and "gbk" in text, text


def test_an_unregistered_terminal_names_the_terminals_option(day, tmp_path):
    out, db = day
    (ln,) = read_journal(out / "journal.jsonl")[:1]
    stranger = JournalLine(**{**{f: getattr(ln, f) for f in JournalLine.__dataclass_fields__},
                              "terminal_id": "TX9", "key": "TX9:000001"})
    path = tmp_path / "tx9.csv"
    path.write_text(journal_csv_text([stranger]))
    code, text = invoke("reconcile", "--day", DAY.isoformat(), "--db", db, "--journal", path)
    assert code == 2 and "UNKNOWN_TERMINAL" in text and "--terminals" in text, text
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "--terminals" in readme


def test_reports_say_what_the_files_were(day):
    """(A check that the fixture's day is clean with its own journal: the tests above rely on it.)"""
    out, db = day
    code, text = invoke("reconcile", "--day", DAY.isoformat(), "--db", db, "--journal", out / "journal.csv",
                        "--report-dir", out / "reports")
    assert code == 0 and "clean" in text, text
    report = json.loads((out / "reports" / f"recon-{DAY.isoformat()}.json").read_text())
    assert report["clean"] and report["journal_lines"] > 150
