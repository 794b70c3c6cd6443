"""`sscard centre card ...` and the simulated issuer's `sscard sim issue` through Typer's CliRunner on an SQLite
centre: plan (tried and rolled back), show, then apply; refusals exit 2 with the typed error, before any
question, and change nothing."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from cardlib.card import SocialSecurityCard
from cardlib.readers.memory import MemoryReader
from settlement.ledger.store.sqlite import SqliteStore
from settlement.schemes.engine import Engine
from sim.personalize import issue_card, load_holder
from sscard.cli import app
from sscard.world import seed
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
    planned = out[out.index("planned"):out.index("apply?")]
    assert "reported lost" in planned and "C0000001 goes on the blacklist" in planned
    code, out = invoke(db, "blacklist")
    assert "version 0: 0 entries" in out  # the plan was rolled back
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
    code, out = invoke(db, "unlock", "C0000002", "--reason", "found", answer="y\n")
    assert code == 2 and "CARD_CANCELLED" in out and "apply?" not in out  # refused by the plan: nothing asked
    code, out = invoke(db, "blacklist")
    assert "version 1: 1 entries" in out


def test_the_simulated_issuer_personalises_and_enrols_in_one_step(tmp_path):
    """`sscard sim issue`: a replacement card for 张三, its holder file for `sim run`, the old card replaced;
    a card that cannot be personalised, or a person the centre does not know, enrols nothing."""
    db, out = tmp_path / "centre.db", tmp_path / "zhang_san-2.json"
    eng = Engine(SqliteStore(db))
    seed(eng)
    eng.store.close()

    def issue(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, ["sim", "issue", *args, "--db", str(db)])
        return result.exit_code, result.output

    code, out_text = issue("--holder", "zhang_san", "--replace", "--card-no", "B10238476", "--card-id",
                           "110100d156000005b1a0c3d4e5f60719", "--out", str(out), "--actor", "bureau")
    assert code == 0 and "B10238476" in out_text and "replaced" in out_text
    info = SocialSecurityCard(MemoryReader(issue_card(load_holder(out)))).read_basic()
    assert (info.card_number, info.card_id) == ("B10238476", "110100D156000005B1A0C3D4E5F60719")
    eng = Engine(SqliteStore(db))
    assert [(c.card_no, c.status) for c in eng.cards.cards_of("110105198001010016")] == [
        ("B10238476", "active"), ("B10238475", "replaced")]
    assert eng.cards.history("B10238476")[0].actor == "bureau"
    before = eng.cards.cards_of("110105198001010016")
    eng.store.close()
    for args, error in [(("--holder", "zhang_san", "--card-no", "B10238477", "--card-id", "XYZ"), "card_id"),
                        (("--holder", "zhang_san", "--card-no", "B10238477"), "both --card-no and --card-id"),
                        (("--holder", str(out), "--card-no", "B10238477", "--card-id", "110100D156000005B1A0C3D4E5F"
                          "60720"), "already has card B10238476")]:
        code, out_text = issue(*args)
        assert code == 2 and error in out_text, out_text
    eng = Engine(SqliteStore(db))
    assert eng.cards.cards_of("110105198001010016") == before
    eng.store.close()
