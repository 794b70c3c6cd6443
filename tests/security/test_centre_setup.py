"""A centre is set up without Python (issue 12, finding 9): institutions, persons (category, region, opening
personal-account balance), PIN references and terminals are imported from CSV or JSON by `sscard centre import`
and by an operator API route, each row checked and named on error, planned before applied, idempotent on
re-import; the settlement service reads a TOML configuration. Each failed on main (fe24823): there was no
import, no route and no --config."""

from __future__ import annotations

import json
import re
import sqlite3
import warnings
from pathlib import Path

import pytest

from settlement.api.auth import TerminalKey, hash_key
from settlement.api.service import create_app
from settlement.ledger.store.sqlite import SqliteStore
from settlement.schemes.engine import Engine
from tests.security.test_operator_cli import invoke

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("wide_console")
INSTITUTIONS = "code,name,region,level\nH110001,北京协和医院,110000,3\nH110002,社区卫生服务中心,110000,community\n"
PERSONS = ("person_id,name,region,category,card_no,assistance_class,personal_account\n"
           "110101195001010011,张伟,110000,retiree,B10000001,,1200.50\n"
           "110101198002020022,李娜,110000,employee,B10000002,,\n"
           "990100199003030033,王芳,990100,resident,,,0.00\n")
REFERENCE = "0123456789abcdef0123456789abcdef"
PINS = [{"person_id": "110101195001010011", "card_no": "B10000001", "reference": REFERENCE}]
TERMINALS = f"terminal_id,institution,key_sha256,operator\nT0001,H110001,{hash_key('k1')},false\n" \
            f"HALL,H110002,{hash_key('k2')},true\n"


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def count(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(sql).fetchone()[0])


def state(db: Path) -> tuple[int, ...]:
    with sqlite3.connect(db) as conn:
        tables = {t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return tuple(count(db, f"SELECT COUNT(*) FROM {t}") if t in tables else 0 for t in (
        "reg_institutions", "reg_persons", "reg_pin_references", "ledger_postings", "recon_terminals"))


@pytest.fixture
def centre(tmp_path: Path) -> Path:
    """A new centre's ledger, with its institutions imported."""
    db = tmp_path / "centre.db"
    path = write(tmp_path / "institutions.csv", INSTITUTIONS)
    code, shown = invoke("centre", "import", "institutions", path, "--db", db, "--init")
    assert code == 0 and "plan only" in shown and "H110001" in shown and "2 to add" in shown, shown
    assert count(db, "SELECT COUNT(*) FROM reg_institutions") == 0
    code, shown = invoke("centre", "import", "institutions", path, "--db", db, "--apply")
    assert code == 0 and "2 added" in shown, shown
    return db


def test_a_new_centre_is_enrolled_from_files_and_a_second_import_changes_nothing(centre, tmp_path):
    db = centre
    persons = write(tmp_path / "persons.csv", PERSONS)
    pins = write(tmp_path / "pins.json", json.dumps(PINS))
    terminals = write(tmp_path / "terminals.csv", TERMINALS)
    keys = tmp_path / "keys.toml"
    for kind, path in (("persons", persons), ("pin-references", pins)):
        code, shown = invoke("centre", "import", kind, path, "--db", db, "--apply", "--actor", "ops")
        assert code == 0, shown
    assert REFERENCE not in shown
    code, shown = invoke("centre", "import", "terminals", terminals, "--db", db, "--keys-file", keys, "--apply")
    assert code == 0 and "2 keys written" in shown, shown
    with SqliteStore(db) as store:
        eng = Engine(store)
        assert eng.registry.person("110101195001010011").category == "retiree"
        assert eng.registry.pin_reference("110101195001010011").reference == bytes.fromhex(REFERENCE)
        from settlement.schemes import chart

        assert eng.ledger.balances([chart.personal_account("110101195001010011")]) == {
            chart.personal_account("110101195001010011"): 120050}
        assert eng.cards.card("B10000002").person_id == "110101198002020022"
    from settlement.api.auth import load_terminal_keys

    assert {(k.terminal_id, k.institution, k.operator) for k in load_terminal_keys(keys)} == {
        ("T0001", "H110001", False), ("HALL", "H110002", True)}
    before, text = state(db), keys.read_text()
    for kind, path in (("institutions", tmp_path / "institutions.csv"), ("persons", persons),
                       ("pin-references", pins), ("terminals", terminals)):
        extra = ("--keys-file", keys) if kind == "terminals" else ()
        code, shown = invoke("centre", "import", kind, path, "--db", db, "--apply", *extra)
        assert code == 0 and "0 added, 0 replaced" in shown, shown
    assert state(db) == before and keys.read_text() == text


@pytest.mark.parametrize(("text", "row", "field"), [
    (PERSONS.replace(",employee,", ",worker,"), 2, "category"),
    (PERSONS.replace("990100,resident,,,0.00", "990100,resident,,,12.345"), 3, "personal_account"),
    (PERSONS.replace("990100,", "990199,", 2), 3, "region"),
    (PERSONS.replace(",B10000002,", ",B-0002,"), 2, "card_no"),
    (PERSONS.replace("110101198002020022,李娜", "110101195001010011,李娜"), 2, ""),  # a person twice
    (PERSONS.replace("1200.50\n", "1200.50,extra\n"), 1, ""),
])
def test_a_bad_row_is_named_and_nothing_is_imported(centre, tmp_path, text, row, field):
    path = write(tmp_path / "persons.csv", text)
    before = state(centre)
    code, shown = invoke("centre", "import", "persons", path, "--db", centre, "--apply")
    assert code == 2 and "INVALID_ENROLMENT_ROW" in shown and f"persons.csv row {row}: {field}" in shown, shown
    assert state(centre) == before


def test_a_row_that_contradicts_the_record_is_a_conflict(centre, tmp_path):
    path = write(tmp_path / "persons.csv", PERSONS)
    assert invoke("centre", "import", "persons", path, "--db", centre, "--apply")[0] == 0
    before = state(centre)
    for text, what in ((PERSONS.replace("李娜", "李四"), "other details"),
                       (PERSONS.replace("1200.50", "1300.00"), "opened with 1200.50 yuan")):
        code, shown = invoke("centre", "import", "persons", write(path, text), "--db", centre, "--apply")
        assert code == 2 and "ENROLMENT_CONFLICT" in shown and what in shown, shown
    terminals = write(tmp_path / "t.csv", TERMINALS.replace("H110001", "H999999"))
    code, shown = invoke("centre", "import", "terminals", terminals, "--db", centre, "--apply")
    assert code == 2 and "t.csv row 1" in shown and "import institutions first" in shown, shown
    pins = write(tmp_path / "pins.json", json.dumps([{**PINS[0], "reference": "not hex at all but secret"}]))
    code, shown = invoke("centre", "import", "pin-references", pins, "--db", centre, "--apply")
    assert code == 2 and "pins.json row 1: reference" in shown and "secret" not in shown, shown
    assert state(centre) == before


def test_a_gbk_file_reads_with_its_encoding(centre, tmp_path):
    path = write(tmp_path / "persons.csv", PERSONS, "gbk")
    code, shown = invoke("centre", "import", "persons", path, "--db", centre, "--apply")
    assert code == 2 and "persons.csv row 1" in shown and "encoding" in shown, shown
    code, shown = invoke("centre", "import", "persons", path, "--db", centre, "--apply", "--encoding", "gbk")
    assert code == 0 and "3 added" in shown, shown
    with SqliteStore(centre) as store:
        assert Engine(store).registry.person("110101198002020022").name == "李娜"


def test_a_missing_ledger_is_not_created_without_init(tmp_path):
    path = write(tmp_path / "institutions.csv", INSTITUTIONS)
    code, shown = invoke("centre", "import", "institutions", path, "--db", tmp_path / "typo.db", "--apply")
    assert code == 2 and "NO_LEDGER" in shown and not (tmp_path / "typo.db").exists()


# -- the operator API ----------------------------------------------------------------------------------------
@pytest.fixture
def api(tmp_path: Path):
    store = SqliteStore(tmp_path / "api.db")
    eng = Engine(store)
    eng.registry.add_institution("H110001", "北京协和医院", "110000", "3")
    app = create_app(eng, terminals=[TerminalKey("T1", hash_key("counter"), institution="H110001"),
                                     TerminalKey("HALL", hash_key("hall"), operator=True)])
    with TestClient(app) as c:
        yield c, eng
    store.close()


def rows(text: str) -> list[dict]:
    import csv
    import io

    return [{k: (v or None) for k, v in r.items()} for r in csv.DictReader(io.StringIO(text))]


def test_an_operator_imports_persons_over_the_api_plan_then_apply(api):
    c, eng = api
    body = {"rows": rows(PERSONS), "operator": "王芳", "source": "persons.csv"}
    r = c.post("/v1/enrolment/persons", json=body, headers={"X-Terminal-Key": "hall"})
    assert r.status_code == 200 and not r.json()["applied"] and r.json()["counts"]["add"] == 3, r.text
    assert eng.store.read(lambda tx: tx.value("SELECT COUNT(*) FROM reg_persons")) == 0
    r = c.post("/v1/enrolment/persons", json={**body, "apply": True}, headers={"X-Terminal-Key": "hall"})
    assert r.status_code == 200 and r.json()["applied"], r.text
    r = c.post("/v1/enrolment/persons", json={**body, "apply": True}, headers={"X-Terminal-Key": "hall"})
    assert r.json()["counts"] == {"add": 0, "same": 3, "replace": 0}
    pins = {"rows": PINS, "operator": "王芳", "apply": True}
    r = c.post("/v1/enrolment/pin-references", json=pins, headers={"X-Terminal-Key": "hall"})
    assert r.status_code == 200 and REFERENCE not in r.text


def test_only_an_operator_imports_and_bad_rows_are_named(api):
    c, eng = api
    body = {"rows": rows(PERSONS), "operator": "x", "apply": True}
    r = c.post("/v1/enrolment/persons", json=body, headers={"X-Terminal-Key": "counter"})
    assert (r.status_code, r.json()["code"]) == (403, "FORBIDDEN")
    r = c.post("/v1/enrolment/persons", json=body)
    assert r.status_code == 401
    bad = {**body, "rows": rows(PERSONS.replace(",employee,", ",boss,"))}
    r = c.post("/v1/enrolment/persons", json=bad, headers={"X-Terminal-Key": "hall"})
    assert (r.status_code, r.json()["code"]) == (422, "INVALID_ENROLMENT_ROW") and "row 2: category" in r.text
    r = c.post("/v1/enrolment/terminals", json=body, headers={"X-Terminal-Key": "hall"})
    assert r.status_code == 422
    assert eng.store.read(lambda tx: tx.value("SELECT COUNT(*) FROM reg_persons")) == 0


# -- the service's configuration file ------------------------------------------------------------------------
def test_the_service_reads_a_toml_config_and_flags_override_it(tmp_path, monkeypatch):
    import uvicorn


    keys = write(tmp_path / "terminal-keys.toml",
                 f'[terminal.OPS]\nkey_sha256 = "{hash_key("secret")}"\noperator = true\n')
    config = tmp_path / "centre.toml"
    text = (ROOT / "deploy" / "centre.toml.example").read_text()
    text = text.replace('postgres = "host=/run/postgresql dbname=sscard user=sscard"', 'db = "centre.db"')
    write(config, text.replace("port = 8700", "port = 8711").replace("init = false", "init = true"))
    assert keys.name in text
    seen = {}

    def run(server, sockets=None):  # noqa: ANN001
        seen["port"] = server.config.port
        with TestClient(server.config.app) as c:
            r = c.get("/v1/persons/X", headers={"X-Terminal-Key": "secret"})
        seen["answer"] = (r.status_code, r.json()["code"])

    monkeypatch.setattr(uvicorn.Server, "run", run)
    code, shown = invoke("settlement", "serve", "--config", config)
    assert code == 0, shown
    assert seen == {"port": 8711, "answer": (404, "UNKNOWN_PERSON")} and (tmp_path / "centre.db").exists()
    code, shown = invoke("settlement", "serve", "--config", config, "--port", "8712")
    assert code == 0 and seen["port"] == 8712, shown
    write(config, text + "\n[store2]\nx = 1\n")
    code, shown = invoke("settlement", "serve", "--config", config)
    assert code == 2 and "store2" in shown, shown
    write(config, text.replace("[terminals]", "[terminals]\n# (moved)").replace('keys = "terminal-keys.toml"',
                                                                                'keys = "nope.toml"'))
    code, shown = invoke("settlement", "serve", "--config", config)
    assert code == 2 and "nope.toml" in re.sub(r"[\s│]", "", shown), shown  # Rich wraps long paths in its box


def test_readme_says_what_a_centre_without_an_hsm_does_with_a_pin_block():
    readme = (ROOT / "README.md").read_text()
    assert "Without it the terminal's `pin_verified` is taken." not in readme
    assert "PIN_CHECK_UNAVAILABLE" in readme and "--config" in readme and "centre import" in readme
