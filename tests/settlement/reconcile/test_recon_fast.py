"""The fast paths of day-end reconciliation keep its behaviour: the CSV import reader accepts and refuses exactly
what the plain csv-module reader does, requests are kept exactly where a replay may need them, a SQLite store's
scratch files can be lost or be of an earlier layout, and imports split into windows count duplicates alike."""

from __future__ import annotations

import csv
import io
import sqlite3
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from settlement import errors
from settlement.ledger import Store
from settlement.ledger.store.sqlite import SqliteStore
from settlement.reconcile import imports
from settlement.reconcile import sql as q
from settlement.reconcile.journal import (
    ROWS_PER_FILE,
    _bad_row,
    _csv_header,
    _csv_records,
    _terminal_check,
    import_row,
    iter_csv_import,
)
from settlement.reconcile.reconciler import Reconciler
from settlement.wire import CSV_HEADER, JournalLine, LineError, _row_from_csv, write_journal_csv
from tests.settlement.reconcile.test_reconcile import drive, found, make_world, seeded

TERMINALS = {"T1": "H1", "T2": None}


def _line(**over: object) -> list[str]:
    base = JournalLine(terminal_id="T1", business_day="2024-03-01", key="T1:000001", kind="settle",
                       status="confirmed", amount=1000, institution_id="H1", insured_region="110000",
                       treatment_region="110000", at="2024-03-01T09:00:00+08:00", hifp_pay=700, psn_cash_pay=300,
                       request={"mdtrt_id": "MD1", "note": 'say "hi", ok'})
    values = base.csv_values()
    for name, value in over.items():
        values[CSV_HEADER.split(",").index(name)] = str(value)
    return values


def _exact(text: str, terminals: dict[str, str | None], check_request: bool) -> list[tuple[object, ...]]:
    """The reference: csv.reader, the full per-field validation, then the terminal's checks."""
    f = io.StringIO(text, newline="")
    name = "j.csv"
    _csv_header(f, name)
    out = []
    for n, values in _csv_records(f, name):
        if not values:
            continue
        try:
            row = _row_from_csv(values, check_request=check_request)
        except LineError as e:
            raise _bad_row(name, n, e) from None
        _terminal_check(terminals, row[0], row[14], name, n)
        out.append((*import_row(row), n))
    return out


def _fast(text: str, terminals: dict[str, str | None], check_request: bool) -> list[tuple[object, ...]]:
    f = io.StringIO(text, newline="")
    f.name = "j.csv"  # type: ignore[misc]
    rows = [r for c in iter_csv_import(f, terminals, check_request=check_request, size=3)
            for rs in c.groups.values() for r in rs]
    return sorted(rows, key=lambda r: r[-1])


def _outcome(fn, text: str, check_request: bool) -> object:  # noqa: ANN001
    try:
        return fn(text, TERMINALS, check_request)
    except errors.SettlementError as e:
        return (type(e).__name__, e.message)


def _csv_text(records: list[list[str]], *, end: str = "\n") -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator=end).writerows([CSV_HEADER.split(","), *records])
    return buf.getvalue()


TRICKY = ["", " ", "x", "0", "00", "-1", "+1", "1.0", "1_000", "١٢", "²", "9" * 16, "9" * 17, "T1", "T2", "T3",
          "T1:000002", "T2:1", "T1:", ":1", "T1:a:b", "settle", "refund", "void", "pension_collect", "confirmed",
          "reversed", "failed", "pending", "2024-03-01", "2024-02-30", "2024-3-1", "0000-01-01",
          "2024-03-01T09:00:00Z", "2024-03-01 09:00", "2024-03-01T09:00:00", "H1", "H2", " H1", "H1 ", "\t",
          'a"b', '"', '""', "a,b", "a\nb", "a\r\nb", "{}", "[1]", "{bad", '{"a": 1}', ' {"a":1}', "null", "x" * 65,
          "\x00"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 17), st.sampled_from(TRICKY)), max_size=3), st.booleans(),
       st.sampled_from(["\n", "\r\n", "\r"]), st.integers(0, 2))
def test_the_fast_reader_accepts_and_refuses_exactly_what_the_plain_reader_does(edits, check_request, end, where):
    records = [_line(key=f"T1:{i:06d}") for i in range(1, 4)]
    bad = records[where]
    for column, value in edits:
        bad[column] = value
    text = _csv_text(records, end=end)
    assert _outcome(_fast, text, check_request) == _outcome(_exact, text, check_request)


@pytest.mark.parametrize("text", [
    # a request running over two lines, whose first line looks like a whole record
    CSV_HEADER + '\nT1,2024-03-01,T1:000001,settle,,confirmed,1000,700,0,0,0,0,300,H1,110000,110000,'
                 '2024-03-01T09:00:00+08:00,"{""a"":""x""\n}"\n',
    # a stray quote inside the quoted request, a quote outside it, blank lines, no line end at the end
    CSV_HEADER + '\nT1,2024-03-01,T1:000001,settle,,confirmed,1000,700,0,0,0,0,300,H1,110000,110000,'
                 '2024-03-01T09:00:00+08:00,"{"a":1}"\n',
    CSV_HEADER + '\n\nT1,2024-03-01,T1:000001,settle,,confirmed,1000,700,0,0,0,0,300,H"1,110000,110000,'
                 '2024-03-01T09:00:00+08:00,\n\n',
    CSV_HEADER + '\nT2,2024-03-01,T2:000001,settle,,confirmed,1000,700,0,0,0,0,300,H9,110000,110000,'
                 '2024-03-01T09:00:00+08:00,"{""a"":""x""}"',
    CSV_HEADER + '\nT9,2024-03-01,T9:000001,settle,,confirmed,1000,700,0,0,0,0,300,H1,110000,110000,'
                 '2024-03-01T09:00:00+08:00,',
])
@pytest.mark.parametrize("check_request", [False, True])
def test_odd_records_read_alike(text, check_request):
    assert _outcome(_fast, text, check_request) == _outcome(_exact, text, check_request)


def test_row_numbers_name_the_file_and_row():
    records = [_line(key=f"T1:{i:06d}") for i in range(1, 5)]
    f = io.StringIO(_csv_text(records), newline="")
    f.name = "b.csv"  # type: ignore[misc]
    rows = [r for c in iter_csv_import(f, TERMINALS, file_index=2) for rs in c.groups.values() for r in rs]
    assert sorted(r[-1] for r in rows) == [2 * ROWS_PER_FILE + n for n in (1, 2, 3, 4)]


# -- in a store ------------------------------------------------------------------------------------------------
def _stored(recon: Reconciler, day: str) -> dict[str, str]:
    return dict(recon._read(lambda tx: tx.rows(
        "SELECT key, request FROM recon_journal WHERE business_day = ?", (day,))))


def test_requests_are_kept_only_where_a_replay_may_need_them(store: Store):
    eng, recon, pop = make_world(store)
    day = drive(eng, pop, visits=30, collections=0, hospital={"missing_at_centre": 1})
    (missing,) = day.seeded["missing_at_centre"]
    recon.import_lines(day.journal, actor="ops")
    requests = _stored(recon, day.day)
    posted = {k for (k,) in store.read(lambda tx: tx.rows("SELECT key FROM ledger_postings"))}
    with_request = {ln.key for ln in day.journal if ln.request}
    assert requests[missing]  # not posted: kept for the replay
    assert {k for k, r in requests.items() if r} == with_request - posted
    result = recon.repair(day.day, actor="ops")
    assert [(a.key, a.outcome) for a in result.actions] == [(missing, "posted")] and result.after.clean


def test_a_bad_request_in_a_later_window_names_its_row_and_imports_nothing(world_sqlite, tmp_path, monkeypatch):
    eng, recon, pop, day = world_sqlite
    monkeypatch.setattr(imports, "_WINDOW", 5)
    rows = [ln.csv_values() for ln in day.journal]
    rows[-2][-1] = "[1, 2]"
    path = tmp_path / "j.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([CSV_HEADER.split(","), *rows])
    with pytest.raises(errors.InvalidJournalRow, match=rf"j.csv row {len(rows) - 1}: request"):
        recon.import_journal([path], actor="ops")
    assert recon.reconcile(day.day, actor="ops").journal_lines == 0


@pytest.mark.parametrize("window", [3, 10**9])
def test_windows_change_nothing(world_sqlite, tmp_path, monkeypatch, window):
    eng, recon, pop, day = world_sqlite
    monkeypatch.setattr(imports, "_WINDOW", window)
    # the duplicate's second line far from the first (another window), two files
    lines = list(day.journal)
    half = len(lines) // 2
    write_journal_csv(lines[:half], tmp_path / "a.csv")
    write_journal_csv(lines[half:], tmp_path / "b.csv")
    res = recon.import_journal([tmp_path / "a.csv", tmp_path / "b.csv"], actor="ops")
    assert res.lines == len(lines)
    assert found(recon.reconcile(day.day, actor="ops")) == seeded(day)


@pytest.fixture
def world_sqlite(tmp_path):  # noqa: ANN201
    with SqliteStore(tmp_path / "ledger.db") as store:
        eng, recon, pop = make_world(store)
        day = drive(eng, pop, visits=40, collections=6, hospital={"duplicate": 1, "missing_at_terminal": 1})
        yield eng, recon, pop, day
        recon.close()


def test_lost_scratch_files_are_made_again(world_sqlite):
    eng, recon, pop, day = world_sqlite
    recon.import_lines(day.journal, actor="ops")
    before = recon.reconcile(day.day, actor="ops")
    assert found(before) == seeded(day)
    recon.close()
    for f in (recon.scratch.journal, recon.scratch.centre):
        f.discard()
    again = Reconciler(eng)
    lost = again.reconcile(day.day, actor="ops")  # the copy is made again from the ledger; journals are gone
    assert {d.cls for d in lost.differences} == {"journal_missing"}
    again.import_lines(day.journal, actor="ops")
    assert found(again.reconcile(day.day, actor="ops")) == seeded(day)
    again.close()


def test_a_copy_ahead_of_the_ledger_is_made_again(world_sqlite):
    eng, recon, pop, day = world_sqlite
    recon.import_lines(day.journal, actor="ops")
    recon.sync()
    recon._centre_run(lambda tx: tx.execute("UPDATE recon_cursor SET seq = seq + 1000"))
    recon._centre_run(lambda tx: tx.execute("UPDATE recon_centre SET amount = amount + 1"))
    assert recon.sync() > 0
    assert found(recon.reconcile(day.day, actor="ops")) == seeded(day)


def test_journals_of_an_earlier_layout_move_to_the_scratch_file(tmp_path):
    path = tmp_path / "old.db"
    with SqliteStore(path) as store:
        eng, recon, pop = make_world(store)
        day = drive(eng, pop, visits=20, collections=0, hospital={"amount_mismatch": 1})
        recon.import_lines(day.journal, actor="ops")
        rows = recon._read(lambda tx: tx.rows(f"SELECT {', '.join((*q.JOURNAL_COLS, 'copies'))} FROM recon_journal"))
        receipts = recon._read(lambda tx: tx.rows("SELECT * FROM recon_receipts"))
        recon.close()
        # the first layout: journals in the store, with columns since dropped; the copy in the store too
        cols = ", ".join(f"{c} {'INTEGER' if c in (*q.AMOUNT_COLS, 'parts_known', 'row_no') else 'TEXT'}"
                         for c in q.JOURNAL_COLS)

        def old_layout(tx):  # noqa: ANN001, ANN202
            tx.execute(f"CREATE TABLE recon_journal ({cols}, copies INTEGER NOT NULL DEFAULT 1, insured_region"
                       " TEXT, treatment_region TEXT, at TEXT, source TEXT, source_row INTEGER)")
            tx.executemany(f"INSERT INTO recon_journal ({', '.join((*q.JOURNAL_COLS, 'copies'))}) VALUES"
                           f" ({', '.join('?' * (len(q.JOURNAL_COLS) + 1))})", rows)
            tx.execute("CREATE TABLE recon_receipts (business_day TEXT, terminal_id TEXT, lines INTEGER,"
                       " sources TEXT, imported_at TEXT, imported_by TEXT, PRIMARY KEY (business_day, terminal_id))")
            tx.executemany("INSERT INTO recon_receipts VALUES (?, ?, ?, ?, ?, ?)", receipts)
            tx.execute("CREATE TABLE recon_centre (key TEXT)")
            tx.execute("CREATE TABLE recon_cursor (name TEXT PRIMARY KEY, seq BIGINT)")

        store.run(old_layout)
        for f in (recon.scratch.journal, recon.scratch.centre):
            f.discard()
        moved = Reconciler(eng)
        assert found(moved.reconcile(day.day, actor="ops")) == seeded(day)
        left = {t for (t,) in store.read(lambda tx: tx.rows("SELECT name FROM sqlite_master WHERE type = 'table'"))}
        assert not left & set(q.SCRATCH_TABLES)
        moved.close()


def test_the_scratch_files_leave_the_ledger_alone(world_sqlite):
    eng, recon, pop, day = world_sqlite
    recon.import_lines(day.journal, actor="ops")
    recon.reconcile(day.day, actor="ops")
    ledger = recon.store.path
    con = sqlite3.connect(ledger)
    try:
        tables = {t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert not tables & set(q.SCRATCH_TABLES)
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        con.close()
    for f in (recon.scratch.journal, recon.scratch.centre):
        assert Path(f.path).exists() and Path(f.path).name.startswith(Path(ledger).name + "-recon")


def test_runs_reuse_the_scratch_connections(world_sqlite):
    eng, recon, pop, day = world_sqlite
    recon.import_lines(day.journal, actor="ops")
    for _ in range(5):
        recon.reconcile(day.day, actor="ops")
    assert len(recon.scratch._conns) <= 4  # two readers (the two sides of a comparison) and the two writers


def test_a_write_between_the_two_sides_of_a_comparison_makes_it_run_again_in_one_transaction(store, monkeypatch):
    from settlement.reconcile import compare as recon_compare
    eng, recon, pop = make_world(store)
    day = drive(eng, pop, visits=30, collections=4, hospital={"amount_mismatch": 1, "missing_at_terminal": 1})
    recon.import_lines(day.journal, actor="ops")
    expected = found(recon.reconcile(day.day, actor="ops"))
    real, calls, lock = recon_compare._state, [], threading.Lock()

    def drifting(tx):  # noqa: ANN001, ANN202
        with lock:
            calls.append(threading.current_thread().name)
            n = len(calls)
        return (*real(tx), n)  # every read sees a different state, as if a write came in between

    monkeypatch.setattr(recon_compare, "_state", drifting)
    again = recon.reconcile(day.day, actor="ops")
    assert found(again) == expected == seeded(day)
    assert len(calls) == 4, calls  # two sides, then both again in one transaction
