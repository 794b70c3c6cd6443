"""SocialSecurityCard against the simulated card, in-process: data, PIN, APDU economy, hostile answers."""

from __future__ import annotations

import datetime as dt

import pytest

from cardlib import errors
from cardlib.card import SocialSecurityCard, encode_pin
from cardlib.layout import EF06
from cardlib.readers.memory import MemoryReader
from sim.faults import Fault
from sim.personalize import issue_card, issue_sample, load_holder, sample_holders


def open_card(stem: str = "zhang_san", **kw):
    sim = issue_sample(stem, **kw)
    reader = MemoryReader(sim)
    return sim, reader, SocialSecurityCard(reader)


@pytest.mark.parametrize("stem", sorted(sample_holders()))
def test_read_basic_matches_the_holder_file(stem):
    h = load_holder(sample_holders()[stem])
    _, _, card = open_card(stem)
    info = card.read_basic()
    assert info.card_id == h.card["card_id"]
    assert info.card_number == h.card["card_number"]
    assert info.spec_version == h.card["spec_version"]
    assert info.issuer_code == h.card["issuer_code"]
    assert info.issue_date.isoformat() == str(h.card["issue_date"])
    for k in ("social_security_number", "name", "sex", "nation", "birth_place"):
        assert getattr(info, k) == h.holder[k]
    assert info.birth_date.isoformat() == str(h.holder["birth_date"])
    assert info.region_code == h.card["card_id"][:6]
    assert card.apdu_count == 14


def test_read_basic_apdus_are_one_select_and_thirteen_reads():
    _, reader, card = open_card()
    from cardlib.apdu import CardChannel

    card.channel = CardChannel(reader, log=[])
    card.read_basic()
    sent = [c.hex().upper() for c, _ in card.channel.log]
    assert sent[0] == "00A404000F7378312E73682EC9E7BBE1B1A3D5CF"
    assert sent[1] == "00B2012C12"  # card_id: 16 bytes + tag + length
    assert sent[7] == "00B2072C0B"  # card number
    assert sent[8] == "00B2013414"  # social security number: EF06 record 1
    assert sent[9] == "00B2023420"  # name: record 2
    assert sent[10] == "00B2043403"  # sex: record 4 (the 4E record 3 is read only for a full name)
    assert sum(1 for s in sent if s[2:4] == "A4") == 1
    assert len(sent) == 14


def test_national_string_has_eleven_fields():
    _, _, card = open_card()
    s = card.read_basic().national("110100000042", "DEV-7")
    assert s == (
        "110100|110105198001010016|B10238475|110100D156000005B1A0C3D4E5F60718|张三|4D4F485253532D53494D|"
        "2.00|20190520|20290520|110100000042|DEV-7|"
    )
    assert s.count("|") == 11
    s.encode("gbk")  # the interface string is GBK


def test_to_dict_is_json_friendly():
    import json

    _, _, card = open_card()
    d = card.read_basic().to_dict()
    assert d["birth_date"] == "1980-01-01" and isinstance(d["atr"], str)
    json.dumps(d, ensure_ascii=False)


def test_t0_card_reads_the_same():
    _, _, card = open_card("li_si", t0=True)
    assert card.read_basic().name == "李四"
    assert card.apdu_count == 14  # no GET RESPONSE needed: exact Le and a SELECT without Le


def test_version_1_card_has_no_name_extension_record():
    sim, _, card = open_card("wang_xiuying")
    info = card.read_basic()
    assert info.spec_version == "1.00" and info.profile == "generation-1" and not info.warnings
    assert card.apdu_count == 14  # SELECT + 7 EF05 + 6 EF06, sex at record 3
    with pytest.raises(errors.ItemUnreadable, match="generation-1"):
        card.read_item(EF06, "name_extension")


def test_verify_pin_counts_down_and_blocks():
    sim, _, card = open_card()
    with pytest.raises(errors.PinWrong) as e:
        card.verify_pin("000000")
    assert e.value.tries_left == 2
    assert card.pin_tries_left() == 2
    card.verify_pin("123456")
    assert sim.pin.tries_left == 3
    for left in (2, 1):
        with pytest.raises(errors.PinWrong) as e:
            card.verify_pin("999999")
        assert e.value.tries_left == left
    with pytest.raises(errors.PinBlocked):
        card.verify_pin("999999")
    with pytest.raises(errors.PinBlocked):
        card.verify_pin("123456")  # even the right PIN: blocked
    assert card.pin_tries_left() == 0


def test_change_pin():
    sim, _, card = open_card()
    with pytest.raises(errors.PinWrong):
        card.change_pin("000000", "222222")
    card.change_pin("123456", "222222")
    card.verify_pin("222222")
    with pytest.raises(errors.PinWrong):
        card.verify_pin("123456")


@pytest.mark.parametrize("pin", ["12", "1234567890123", "12a456", "", " 123456"])
def test_bad_pin_format_is_refused_before_the_card_sees_it(pin):
    sim, _, card = open_card()
    with pytest.raises(ValueError):
        card.verify_pin(pin)
    assert sim.pin.tries_left == 3 and sim.apdus == 0


def test_pin_encoding():
    assert encode_pin("123456") == bytes.fromhex("123456")
    assert encode_pin("12345") == bytes.fromhex("12345F")


# ---- hostile or failing cards -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fault,exc",
    [
        (Fault("garbage", ins=0xB2, after=3), (errors.MalformedResponse, errors.StatusError)),
        (Fault("truncate", ins=0xB2, after=2), errors.MalformedResponse),
        (Fault("no_sw", ins=0xB2, after=2, length=5), (errors.MalformedResponse, errors.StatusError)),
        (Fault("sw", ins=0xB2, sw=0x6F00), errors.UnknownStatus),
        (Fault("sw", ins=0xA4, sw=0x6A82), errors.FileNotFound),
        (Fault("sw", ins=0xB2, sw=0x6982), errors.SecurityStatusNotSatisfied),
        (Fault("pull", ins=0xB2, after=5), errors.CardRemoved),
        (Fault("mute", ins=0xB2, after=1), errors.CardTimeout),
    ],
)
def test_faults_become_typed_errors_and_the_reader_recovers(fault, exc):
    sim, reader, card = open_card()
    sim.faults.arm(fault)
    with pytest.raises(exc):
        card.read_basic()
    assert sim.pin.tries_left == 3  # nothing on the card changed
    sim.faults.clear()
    sim.reinsert()
    card.connect()
    assert card.read_basic().name == "张三"


def test_slow_card_still_answers():
    sim, _, card = open_card()
    sim.faults.arm(Fault("slow", ins=0xB2, delay=0.05, count=2))
    assert card.read_basic().name == "张三"


def test_a_card_that_answers_another_items_record_is_caught():
    sim, reader, card = open_card()
    card.select_ssse()
    # the card answers the name record (EF06 record 2) with the sex record's TLV
    original = sim.process

    def liar(apdu: bytes):
        if apdu[:4] == bytes.fromhex("00B20234"):
            return original(bytes.fromhex("00B2043403"))
        return original(apdu)

    sim.process = liar  # type: ignore[method-assign]
    with pytest.raises(errors.ItemUnreadable, match="EF06 record 2, tag 09") as e:
        card.read_item(EF06, "name")
    assert (e.value.file, e.value.record, e.value.tag, e.value.raw) == ("EF06", 2, 0x09, bytes.fromhex("0A0131"))
    # read_basic notices, says so, and asks for the name by identifier instead
    info = card.read_basic()
    assert info.name == "张三"
    assert [(w.code, w.record, w.tag) for w in info.warnings] == [("record_numbering", 2, 0x09)]


def test_a_record_with_the_wrong_length_is_caught():
    sim, _, card = open_card()
    card.read_basic()
    sim.process = lambda apdu: b"\x09\x02\xd5\xc5\x90\x00"  # type: ignore[method-assign]
    with pytest.raises(errors.ItemUnreadable, match="layout says 30"):
        card.read_item(EF06, "name")


def test_no_card_and_removed_card():
    reader = MemoryReader(None)
    with pytest.raises(errors.NoCard):
        SocialSecurityCard(reader).read_basic()
    sim, reader, card = open_card()
    card.read_basic()
    reader.remove()
    with pytest.raises(errors.CardRemoved):
        card.read_basic()


def test_card_with_a_changed_layout_value_is_read_as_data():
    h = load_holder(sample_holders()["zhang_san"])
    h.holder["birth_date"] = dt.date(2000, 2, 29)
    card = SocialSecurityCard(MemoryReader(issue_card(h)))
    assert card.read_basic().birth_date == dt.date(2000, 2, 29)
