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


#: What a hostile card answers: anything, a record TLV with 9000, or a bare status word (6982 makes the reader
#: authenticate, 6A83/6A86 send it to its fallbacks, 61xx/6Cxx to GET RESPONSE and resends).
TAGS = [i.tag for i in (*layout.EF05.items, *layout.EF06.items)]
RECORD = st.builds(lambda tag, value: bytes([tag, len(value)]) + value, st.sampled_from([*TAGS, 0x00, 0xFF]),
                   st.binary(max_size=34))
ANSWER = st.one_of(
    st.binary(max_size=40),
    st.builds(lambda r: r + b"\x90\x00", RECORD),
    st.sampled_from([0x6982, 0x6A83, 0x6A86, 0x6A82, 0x6C12, 0x6110, 0x63C2, 0x9000]).map(
        lambda sw: sw.to_bytes(2, "big")),
)


def _psam():
    from cardlib.psam import Psam, PsamSecurity
    from cardlib.readers.memory import MemoryReader
    from sim.psam import SimPsam

    return PsamSecurity(Psam(MemoryReader(SimPsam())))


def _check_result(card: SocialSecurityCard) -> None:
    """read_basic() gives a typed error, or a result whose core items are sound."""
    try:
        info = card.read_basic()
    except CardError:
        return
    assert info.region_code.isdigit() and len(info.card_id) == 32
    assert info.name and info.card_number.isalnum() and info.social_security_number
    for w in info.warnings:
        assert w.code and w.item and w.message


@settings(max_examples=300, deadline=None, print_blob=True)
@given(st.lists(ANSWER, max_size=80))
def test_read_basic_against_a_hostile_card(answers):
    card = SocialSecurityCard(HostileTransport(list(answers)), security=_psam())  # type: ignore[arg-type]
    _check_result(card)
    assert card.apdu_count <= 14 * 3 + 64 * 14  # bounded: no endless loop


#: Changes to a sample card's records: replace record i of a file (or append), or drop it.
EDITS = st.lists(st.tuples(st.sampled_from(["EF05", "EF06"]), st.integers(0, 8),
                           st.one_of(RECORD, st.binary(max_size=40), st.none())), max_size=4)


@settings(max_examples=300, deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
@given(EDITS, st.booleans(), st.booleans(), st.booleans())
def test_read_basic_of_a_card_holding_hostile_records(edits, t0, identifier_mode, needs_auth):
    """A card that follows ISO 7816-4 but holds any bytes in some of its records (as card images can)."""
    from hypothesis import event

    from cardlib.readers.memory import MemoryReader
    from sim.card import SimCard
    from sim.issuer import DEFAULT_ISSUER
    from sim.personalize import item_records, load_holder, sample_holders, ssse_filesystem

    h = load_holder(sample_holders()["zhang_san"])
    files = {"EF05": item_records(layout.EF05, h.card, "2.00", "", True),
             "EF06": item_records(layout.EF06, h.holder, "2.00", "", True)}
    for name, i, rec in edits:
        recs = files[name]
        if rec is None:
            del recs[i : i + 1]
        elif i < len(recs):
            recs[i] = rec
        else:
            recs.append(rec)
    keys = DEFAULT_ISSUER.card_keys(bytes.fromhex(h.card["card_id"]), "3DES")
    sim = SimCard(ssse_filesystem(files["EF05"], files["EF06"], ef06_requires_auth=needs_auth), "123456", t0=t0,
                  keys=keys, identifier_mode=identifier_mode)
    card = SocialSecurityCard(MemoryReader(sim), security=_psam())
    try:
        info = card.read_basic()
    except CardError as e:
        event(f"error {type(e).__name__}")
    else:
        event(f"read with {len(info.warnings)} warnings")
        assert info.region_code.isdigit() and len(info.card_id) == 32
        assert info.name and info.card_number.isalnum() and info.social_security_number
    assert card.apdu_count <= 40


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
