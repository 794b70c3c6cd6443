"""APDU traces recorded through the real pcscd + vpcd and played back there by sim's replay card.

A card that fails at a counter is reproduced from its trace (`sscard card read --trace FILE`, then
`sscard sim run --replay FILE` or `ReplayCard` in a test): the replay answers what the card answered.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cardlib.card import SocialSecurityCard
from cardlib.errors import CardTimeout
from cardlib.readers.pcsc import PcscReader
from cardlib.trace import TraceWriter, TracingReader
from sim.faults import Fault
from sim.replay import ReplayCard
from sscard.cli import app

runner = CliRunner()


@pytest.mark.parametrize("slot_index", [0, 1])  # zhang_san (T=1) and li_si (T=0: GET RESPONSE, 6Cxx)
def test_a_trace_recorded_through_pcscd_replays_through_pcscd(slots, tmp_path, slot_index):
    slot = slots[slot_index]
    original = slot.card
    trace = tmp_path / "read.jsonl"
    first = runner.invoke(app, ["card", "read", "--reader", slot.reader, "--json", "--trace", str(trace)])
    assert first.exit_code == 0, first.output
    replay = ReplayCard.load(trace)
    try:
        slot.replace(replay)  # type: ignore[arg-type]
        again = runner.invoke(app, ["card", "read", "--reader", slot.reader, "--json"])
        assert again.exit_code == 0, again.output
        assert json.loads(again.output) == json.loads(first.output)
        assert replay.finished and not replay.mismatches
    finally:
        slot.replace(original)


def test_a_pin_trace_holds_no_pin_and_still_replays(slots, tmp_path):
    s0, _ = slots
    original = s0.card
    trace = tmp_path / "pin.jsonl"
    out = runner.invoke(app, ["card", "verify-pin", "--reader", s0.reader, "--pin-stdin", "--trace", str(trace)],
                        input="123456\n")
    assert out.exit_code == 0, out.output
    assert "123456" not in trace.read_text() and "0020000003******" in trace.read_text()
    replay = ReplayCard.load(trace)
    try:
        s0.replace(replay)  # type: ignore[arg-type]
        out = runner.invoke(app, ["card", "verify-pin", "--reader", s0.reader, "--pin-stdin"], input="123456\n")
        assert out.exit_code == 0 and "PIN ok" in out.output
        assert replay.finished
    finally:
        s0.replace(original)


def test_a_mute_card_at_a_counter_is_reproduced_behind_pcscd_from_its_trace(slots, tmp_path):
    s0, _ = slots
    original = s0.card
    trace = tmp_path / "mute.jsonl"
    s0.card.faults.arm(Fault("mute", ins=0xB2, after=6))
    try:
        with (open(trace, "w") as out, TracingReader(PcscReader(s0.reader, timeout=0.4), TraceWriter(out)) as r,
              pytest.raises(CardTimeout)):
            SocialSecurityCard(r).read_basic()
        records = [json.loads(line) for line in trace.read_text().splitlines()]
        assert records[-1]["error"] == "CardTimeout" and records[-1]["ms"] >= 400
        s0.card.faults.clear()
        replay = ReplayCard.load(trace)
        s0.replace(replay)  # type: ignore[arg-type]
        with PcscReader(s0.reader, timeout=0.4) as r, pytest.raises(CardTimeout, match="READ RECORD"):
            SocialSecurityCard(r).read_basic()
        assert replay.finished
    finally:
        original.faults.clear()
        s0.replace(original)


def test_sim_run_replays_a_trace_for_another_process(slots, tmp_path):
    """`sscard sim run --replay` puts a recorded card on a slot for any PC/SC program, as at the counter."""
    _, s1 = slots
    trace = tmp_path / "li_si.jsonl"
    assert runner.invoke(app, ["card", "read", "--reader", s1.reader, "--trace", str(trace)]).exit_code == 0
    with s1.in_another_process("--replay", str(trace)) as sim:
        out = runner.invoke(app, ["card", "read", "--reader", s1.reader, "--json"])
        assert out.exit_code == 0, out.output
        assert json.loads(out.output)["name"] == "李四"
    assert "inserted on vpcd" in sim.stdout.read()


def test_card_dump_through_pcscd_and_its_trace_replays(slots, tmp_path):
    s0, _ = slots
    original = s0.card
    trace = tmp_path / "dump.jsonl"
    first = runner.invoke(app, ["card", "dump", "--reader", s0.reader, "--json", "--trace", str(trace)])
    assert first.exit_code == 0, first.output
    dump = json.loads(first.output)
    assert [f["path"] for f in dump["files"]][:2] == ["SSSE/EF05", "SSSE/EF06"]
    assert dump["files"][1]["records"][1]["value"] == "张三"
    replay = ReplayCard.load(trace)
    try:
        s0.replace(replay)  # type: ignore[arg-type]
        again = runner.invoke(app, ["card", "dump", "--reader", s0.reader, "--json"])
        assert json.loads(again.output)["files"] == dump["files"] and replay.finished
    finally:
        s0.replace(original)
