"""APDU traces (cardlib.trace) and the replay card (sim.replay), in-process: record, mask, play back."""

from __future__ import annotations

import io
import json
import logging

import pytest

from cardlib import errors
from cardlib.card import SocialSecurityCard
from cardlib.readers.memory import MemoryReader
from cardlib.trace import TraceWriter, TracingReader, masked_hex, matches, parse_trace
from sim.faults import Fault
from sim.personalize import issue_sample
from sim.replay import ReplayCard


def record(card, steps) -> list[str]:
    """Run `steps(SocialSecurityCard)` on `card` through a TracingReader; the trace's lines."""
    out = io.StringIO()
    reader = TracingReader(MemoryReader(card), TraceWriter(out, reader="Memory Reader 00"))
    steps(SocialSecurityCard(reader))
    reader.disconnect()
    return out.getvalue().splitlines()


def test_a_trace_is_json_lines_with_timings_and_no_pin():
    lines = record(issue_sample("zhang_san"), lambda c: (c.read_basic(), c.verify_pin("123456")))
    recs = [json.loads(x) for x in lines]
    assert recs[0]["type"] == "trace" and recs[0]["version"] == 1
    assert recs[1]["type"] == "connect" and recs[1]["atr"]
    apdus = [r for r in recs if r["type"] == "apdu"]
    assert [r["n"] for r in apdus] == list(range(1, 16))
    assert apdus[0]["name"] == "SELECT" and apdus[-1]["name"] == "VERIFY"
    assert all(r["ms"] >= 0 and r["t"] >= 0 for r in apdus)
    assert apdus[-1]["c"] == "0020000003******" and apdus[-1]["r"] == "9000"
    assert "123456" not in "\n".join(lines)


@pytest.mark.parametrize(
    "apdu,shown",
    [
        ("0020000003123456", "0020000003******"),  # VERIFY: PIN
        ("805E010007123456FF654321", "805E010007" + "**" * 7),  # CHANGE PIN: old and new PIN
        ("0082000208" + "11" * 8, "0082000208" + "**" * 8),  # EXTERNAL AUTHENTICATE: cryptogram
        ("04E200A8" + "34" + "AA" * 48 + "0102030400", None),  # APPEND RECORD with MAC (Lc 0x34)
        ("845E000007123456A1B2C3D4", "845E000007" + "**" * 7),  # PIN RELOAD: new PIN + MAC
        ("00B2012C00", "00B2012C00"),  # READ RECORD: nothing secret
        ("0088000108" + "22" * 8 + "08", "0088000108" + "22" * 8 + "08"),  # INTERNAL AUTH: a public random
    ],
)
def test_masking(apdu, shown):
    raw = bytes.fromhex(apdu)
    if shown is None:  # a secure-messaging command: only its 4-byte MAC is hidden
        shown = apdu[:-10].upper() + "**" * 4 + apdu[-2:]
    assert masked_hex(raw) == shown
    assert matches(shown, raw)
    assert not matches(shown, raw[:-1])


def test_replayed_read_gives_the_same_result_and_the_whole_trace_is_used():
    original = SocialSecurityCard(MemoryReader(issue_sample("li_si"))).read_basic()
    lines = record(issue_sample("li_si"), lambda c: c.read_basic())
    replay = ReplayCard(parse_trace(lines))
    assert SocialSecurityCard(MemoryReader(replay)).read_basic() == original
    assert replay.finished and not replay.mismatches


def test_a_masked_pin_still_replays_the_flow():
    lines = record(issue_sample("zhang_san"), lambda c: c.verify_pin("123456"))
    card = SocialSecurityCard(MemoryReader(ReplayCard(parse_trace(lines))))
    card.verify_pin("123456")


def test_a_command_off_the_trace_is_refused_and_logged(caplog):
    lines = record(issue_sample("zhang_san"), lambda c: c.read_basic())
    replay = ReplayCard(parse_trace(lines))
    card = SocialSecurityCard(MemoryReader(replay))
    card.select_ssse()
    with caplog.at_level(logging.WARNING, logger="sim.replay"), pytest.raises(errors.UnknownStatus) as e:
        card.read_record(6, 1)  # the trace's second command reads EF05 first
    assert e.value.sw == 0x6F00
    assert "command 2 READ RECORD 00B20134" in caplog.text and "differs from the trace" in caplog.text
    with pytest.raises(errors.InsNotSupported):  # never in the trace at all
        card.get_challenge(8)
    assert len(replay.mismatches) == 2 and replay.position == 1


def outcome(read) -> object:
    """What a read came to: its result, or the class of its error."""
    try:
        return read().to_dict()
    except errors.CardError as e:
        return type(e)


@pytest.mark.parametrize(
    "fault",
    [
        Fault("sw", ins=0xB2, sw=0x6A83, after=0),  # a required item refused: the read fails
        Fault("sw", ins=0xB2, sw=0x6A83, after=9),  # an optional one: the read warns
        Fault("garbage", ins=0xB2, after=3),
        Fault("mute", ins=0xB2, after=5),
        Fault("pull", ins=0xB2, after=2),
    ],
)
def test_a_card_that_failed_fails_the_same_way_from_its_trace(fault):
    sim = issue_sample("zhang_san")
    sim.faults.arm(fault)
    out = io.StringIO()
    first = outcome(lambda: SocialSecurityCard(TracingReader(MemoryReader(sim), TraceWriter(out))).read_basic())
    replay = ReplayCard(parse_trace(out.getvalue().splitlines()))
    assert outcome(lambda: SocialSecurityCard(MemoryReader(replay)).read_basic()) == first
    assert not replay.mismatches and replay.finished
    if fault.kind in ("mute", "pull"):
        assert first in (errors.CardTimeout, errors.CardRemoved)


def test_a_trace_that_is_not_one_is_refused():
    with pytest.raises(errors.MalformedResponse, match="not a version 1"):
        parse_trace(['{"type": "apdu"}'])
    with pytest.raises(errors.MalformedResponse, match="line 2 is not JSON"):
        parse_trace(['{"type": "trace", "version": 1}', "{oops"])
    with pytest.raises(ValueError, match="no successful connect"):
        ReplayCard(parse_trace(['{"type": "trace", "version": 1}']))
