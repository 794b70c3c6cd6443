"""`sscard centre card ...` through Typer's CliRunner on an SQLite centre: plan, show, then apply; refusals
exit 2 with the typed error and change nothing."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from settlement.ledger.store.sqlite import SqliteStore
from sscard.cli import app
from tests.settlement.flows_helpers import Clock, make_engine

runner = CliRunner()
NEW_ID = "110100D156000005B1A0C3D4E5F60702"


def invoke(db: Path, *args: str, answer: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, ["centre", "card", *args, "--db", str(db)], input=answer)
    return result.exit_code, result.output


def test_a_card_reported_lost_unlocked_and_replaced_from_the_command_line(tmp_path):
    db = tmp_path / "centre.db"
    make_engine(SqliteStore(db), Clock()).store.close()
    code, out = invoke(db, "report-lost", "C0000001", "--reason", "lost on the bus", "--actor", "wang",
                       answer="n\n")
    assert code == 1 and "nothing changed" in out and "C0000001" in out  # shown, not applied
    code, out = invoke(db, "report-lost", "C0000001", "--reason", "lost on the bus", "--actor", "wang",
                       answer="y\n")
    assert code == 0 and "reported lost" in out
    code, out = invoke(db, "blacklist")
    assert code == 0 and "version 1: 1 entries" in out and "C0000001" in out
    code, out = invoke(db, "replace", "EMP", "--card-no", "C0000011", "--card-id", NEW_ID, "--expires-on",
                       "2034-03-01", "--reason", "not found", "--yes")
    assert code == 0 and "C0000011" in out and "replaced" in out
    code, out = invoke(db, "show", "C0000001")
    assert code == 0 and "lost on the bus" in out and "wang" in out and "replaced" in out
    code, out = invoke(db, "list", "EMP")
    assert code == 0 and out.index("C0000011") < out.index("C0000001")


def test_refusals_exit_2_and_change_nothing(tmp_path):
    db = tmp_path / "centre.db"
    make_engine(SqliteStore(db), Clock()).store.close()
    code, out = invoke(db, "cancel", "C0000002", "--reason", "deceased", "--yes")
    assert code == 0
    for args, error in [(("unlock", "C0000002", "--reason", "found", "--yes"), "CARD_CANCELLED"),
                        (("report-lost", "NOSUCH", "--reason", "lost", "--yes"), "UNKNOWN_CARD"),
                        (("replace", "RES", "--card-no", "C0000033", "--card-id", NEW_ID, "--reason", "worn", "--yes"),
                         "NO_CARD_OF_RECORD"),
                        (("issue", "RES", "--card-no", "C 1", "--card-id", NEW_ID, "--reason", "new", "--yes"),
                         "INVALID_REQUEST")]:
        code, out = invoke(db, *args)
        assert code == 2 and error in out, out
    code, out = invoke(db, "blacklist")
    assert "version 1: 1 entries" in out
