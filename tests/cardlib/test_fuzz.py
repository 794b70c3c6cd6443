"""Arbitrary bytes into every parser and into the card reader: a typed error, never a crash or a hang."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardlib import fields, layout
from cardlib.apdu import CardChannel, CommandAPDU, ResponseAPDU
from cardlib.card import SocialSecurityCard
from cardlib.errors import CardError
from cardlib.readers.base import historical_bytes
from cardlib.readers.serial import Frame, read_frame
from cardlib.tlv import parse_ber, parse_record
from sim.personalize import issue_sample

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=600))
def test_command_apdu_parser(raw):
    try:
        cmd = CommandAPDU.from_bytes(raw)
    except CardError:
        return
    assert CommandAPDU.from_bytes(cmd.to_bytes()) == cmd


@FUZZ
@given(st.binary(max_size=300))
def test_response_apdu_parser(raw):
    try:
        r = ResponseAPDU.from_bytes(raw)
    except CardError:
        return
    assert r.to_bytes() == raw
    try:
        r.check()
    except CardError:
        pass


@FUZZ
@given(st.binary(max_size=300))
def test_tlv_parsers(raw):
    for parse in (parse_record, parse_ber):
        try:
            parse(raw)
        except CardError:
            pass


@FUZZ
@given(st.binary(max_size=300))
def test_record_parser_agrees_with_its_construct_declaration(raw):
    from construct import ConstructError

    from cardlib.tlv import RecordTLV

    try:
        declared = RecordTLV.parse(raw)
        declared = (declared.tag, declared.value) if len(raw) == 2 + declared.length else None
    except ConstructError:
        declared = None
    try:
        ours = parse_record(raw)
    except CardError:
        ours = None
    assert ours == declared


@FUZZ
@given(st.binary(max_size=40))
def test_field_parsers(raw):
    for f in (*(i.fmt for i in layout.EF05.items), *(i.fmt for i in layout.EF06.items), fields.cn(2)):
        try:
            f.parse(raw)
        except CardError:
            pass


@FUZZ
@given(st.binary(max_size=300))
def test_frame_parsers(raw):
    try:
        Frame.from_bytes(raw)
    except CardError:
        pass
    buf = bytearray(raw)

    def read(n):
        out = bytes(buf[:n])
        del buf[:n]
        return out

    try:
        read_frame(read)
    except CardError:
        pass


@FUZZ
@given(st.binary(max_size=40))
def test_atr_parser(raw):
    assert len(historical_bytes(raw)) <= 15


class HostileTransport:
    """A card that answers each APDU with the next drawn bytes."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = answers
        self.atr = b"\x3b\x00"

    def connect(self) -> bytes:
        return self.atr

    def disconnect(self) -> None:
        pass

    def transmit(self, apdu: bytes) -> bytes:
        return self.answers.pop(0) if self.answers else b"\x6f\x00"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=80))
def test_read_basic_against_a_hostile_card(answers):
    card = SocialSecurityCard(HostileTransport(list(answers)))  # type: ignore[arg-type]
    try:
        card.read_basic()
    except CardError:
        pass
    assert card.apdu_count <= 14 * 3 + 64 * 14  # bounded: no endless loop


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=4, max_size=40), max_size=20))
def test_sim_card_answers_anything_with_a_status_word(apdus):
    card = issue_sample("zhang_san")
    card.power_on()
    for a in apdus:
        resp = card.process(a)
        assert resp is not None and len(resp) >= 2


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=300))
def test_channel_over_random_answers(answer):
    class One:
        def transmit(self, apdu):
            return answer

    try:
        CardChannel(One()).send(CommandAPDU(0, 0xB2, 1, 0x2C, le=18))
    except CardError:
        pass
    except Exception as e:  # pragma: no cover - this is the failure the test exists for
        pytest.fail(f"untyped error {type(e).__name__}: {e}")
