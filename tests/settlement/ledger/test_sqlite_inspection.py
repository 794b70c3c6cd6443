"""README's "Inspecting a ledger": every sqlite-utils command it shows runs against a ledger the engine wrote,
while the store is open, and reads what the engine says, changing nothing."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

from settlement.ledger.store.sqlite import SqliteStore
from settlement.schemes import chart
from settlement.wire import FeeLine
from tests.settlement.flows_helpers import Y, make_engine

README = Path(__file__).resolve().parents[3] / "README.md"


def documented_commands() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    section = text.split("### Inspecting a ledger", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    return [shlex.split(line) for line in block.group(1).splitlines() if line.startswith("sqlite-utils ")]


def sqlite_utils(args: list[str]) -> str:
    out = subprocess.run([sys.executable, "-m", "sqlite_utils", *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_the_documented_inspection_commands_read_a_live_ledger(tmp_path):
    db = tmp_path / "settlement.db"
    with SqliteStore(db) as store:  # open: the service is running
        eng = make_engine(store)
        visit = eng.medical.register("T0001:000001", "EMP", "BJ3", "inpatient")
        eng.medical.settle("T0001:000002", visit.mdtrt_id, [FeeLine("A", 20_000 * Y)])
        before = eng.ledger.balances([chart.fund("110000", "hifp")])
        commands = documented_commands()
        assert len(commands) >= 5
        for cmd in commands:
            args = [str(db) if a == "var/settlement.db" else a for a in cmd[1:]]
            out = sqlite_utils(args)
            assert out.strip(), cmd
        counts = {t["table"]: t["count"] for t in json.loads(sqlite_utils(["tables", str(db), "--counts"]))}
        assert counts["ledger_postings"] == len(eng.ledger.postings(limit=1000)) > 0
        rows = json.loads(sqlite_utils(["query", str(db), "SELECT credits_posted - debits_posted AS balance_fen"
                                        " FROM ledger_accounts WHERE code = :c", "-p", "c", "110000/fund/hifp"]))
        assert rows == [{"balance_fen": before["110000/fund/hifp"]}] and before["110000/fund/hifp"] < 0
        assert eng.ledger.balances([chart.fund("110000", "hifp")]) == before
        eng.ledger.check_invariants()
