"""Card profiles and tolerant decoding: what differs by spec version and region, and the forms field cards use."""

from __future__ import annotations

import datetime as dt

import pytest

from cardlib import layout
from cardlib.basic import CORE_ITEMS, decode
from cardlib.errors import FieldError
from cardlib.layout import EF05, EF06
from cardlib.profiles import (
    GENERATION_1,
    GENERATION_2,
    GENERATION_3,
    CardProfile,
    choose,
    generation_of,
    suite_for_spec,
)


@pytest.mark.parametrize(
    "raw,generation,text,odd",
    [
        (b"1.00", 1, "1.00", False),
        (b"2.00", 2, "2.00", False),
        (b"3.00", 3, "3.00", False),
        (b"0200", 2, "2.00", True),  # digits without the point
        (bytes.fromhex("00322E30"), 2, "2.00", True),  # a NUL first: field readers take 00 as generation 2
        (b"2.0\x00", 2, "2.00", True),
        (b"3.0 ", 3, "3.00", True),
        (b"0300", 3, "3.00", True),
        (b"4.00", 3, "4.00", True),  # newer than we know: the newest generation we know
        (b"\xff\xff\xff\xff", 2, None, True),  # unreadable: assumed generation 2, never SM4
        (b"ab.c", 2, None, True),
        (b"", 2, None, True),
    ],
)
def test_spec_version_maps_to_a_generation(raw, generation, text, odd):
    spec = generation_of(raw)
    assert (spec.generation, spec.text, bool(spec.note)) == (generation, text, odd)


def test_a_second_generation_card_never_maps_to_sm4():
    for raw in ("2.00", "0200", "\x002.0", "2.0", "1.00", "????"):
        assert suite_for_spec(raw) == "3DES", raw
    assert suite_for_spec("3.00") == suite_for_spec(b"0300") == "SM4"


def test_ef06_record_numbers_by_generation():
    assert [GENERATION_2.record_number(EF06, i) for i in EF06.items] == [1, 2, 3, 4, 5, 6, 7]
    assert [GENERATION_1.record_number(EF06, i) for i in EF06.items if GENERATION_1.has(i)] == [1, 2, 3, 4, 5, 6]
    assert GENERATION_1.record_number(EF06, EF06.item("sex")) == 3  # field: 00 B2 03 34 03 on a v1 card
    assert GENERATION_2.record_number(EF06, EF06.item("sex")) == 4  # field: 00 B2 04 34 03 on a v2 card
    assert GENERATION_3.record_number(EF06, EF06.item("birth_date")) == 7
    for p in (GENERATION_1, GENERATION_2, GENERATION_3):  # EF05: record n carries tag n on every card
        assert [p.record_number(EF05, i) for i in EF05.items] == [i.tag for i in EF05.items]
    assert GENERATION_2.toggled_name_extension().record_number(EF06, EF06.item("sex")) == 3


def test_profile_chosen_by_region_and_generation():
    xinjiang = CardProfile("xinjiang", 2, identifier_mode=True, regions=("65",))
    urumqi = CardProfile("urumqi", 2, regions=("6501",))
    extra = (xinjiang, urumqi)
    assert choose("650100", 2, extra) is urumqi  # the longest prefix
    assert choose("652300", 2, extra) is xinjiang
    assert choose("110100", 2, extra) is GENERATION_2
    assert choose("650100", 3, extra) is GENERATION_3  # a regional profile is for its generation only
    assert choose("310100", 1) is GENERATION_1


P2 = GENERATION_2


@pytest.mark.parametrize(
    "name,raw,value,notes",
    [
        ("name", "张三".encode("gbk") + bytes(26), "张三", []),
        ("name", "张三".encode("gbk") + b" " * 26, "张三", []),  # space padding: trimmed
        ("name", "张三".encode("gbk") + b"\xff" * 26, "张三", []),  # FF padding: trimmed
        ("name", "张三".encode("gbk") + b"\x00\x20\xff" * 8 + b"\x00\x00", "张三", []),
        ("name", "䶮".encode("gb18030") + bytes(26), "䶮", []),  # a rare character outside GBK (GB 18030)
        ("social_security_number", b"11010519800101018x", "11010519800101018X", ["ssn_lowercase_x"]),
        ("social_security_number", b"110105198001010016", "110105198001010016", []),
        ("social_security_number", b"110105198001010017", "110105198001010017", ["ssn_check_digit"]),
        ("social_security_number", b"110105800101001" + bytes(3), "110105800101001", []),  # 15 digits
        ("card_number", b"B10238475", "B10238475", []),
        ("card_number", b"B1023847" + b"\xff", "B1023847", []),
        ("card_number", b"B10238475\xff\xff\xff", "B10238475", []),
        ("card_number", b"B1023847501", "B10238475", ["card_number_long"]),
        ("card_id", bytes.fromhex("330300D15600000599110145FFFFFFFF"), "330300D15600000599110145FFFFFFFF", []),
        ("expiry_date", bytes.fromhex("20290520"), dt.date(2029, 5, 20), []),
        ("expiry_date", bytes(4), None, ["date_absent"]),
        ("expiry_date", b"\xff" * 4, None, ["date_absent"]),
        ("issue_date", b"20190520", dt.date(2019, 5, 20), ["date_ascii"]),
        ("issuer_code", bytes.fromhex("110100000000000001FFFFFF"), "110100000000000001", []),
        ("issuer_code", b"110100000001", "110100000001", ["issuer_code_form"]),
        ("issuer_code", b"3101000002\x00\x00", "3101000002", ["issuer_code_form"]),
        ("spec_version", b"2.00", "2.00", []),
        ("spec_version", b"0200", "2.00", ["spec_version_odd"]),
        ("spec_version", b"\xff" * 4, None, ["spec_version_unreadable"]),
        ("nation", b"\x01", "01", []),
        ("nation", b"\x31", "01", ["nation_ascii"]),  # ASCII '1', not BCD 31
        ("nation", b"01", "01", ["nation_ascii"]),
        ("nation", b"\x15", "15", []),
        ("birth_place", bytes.fromhex("110105"), "110105", []),
        ("birth_place", bytes.fromhex("1101FF"), "1101", []),
        ("sex", b"1", "1", []),
        ("name_extension", bytes(20), "", []),
    ],
)
def test_items_decode_in_the_forms_field_cards_use(name, raw, value, notes):
    item = next(i for f in (EF05, EF06) for i in f.items if i.name == name)
    got = decode(item, raw, P2)
    assert got.value == value
    assert [n.code for n in got.notes] == notes


def test_nation_form_is_declared_per_profile():
    bcd = CardProfile("bcd-nation", 2, nation_form="bcd")
    assert decode(EF06.item("nation"), b"\x31", bcd).value == "31"  # Daur, on a card that writes BCD
    ascii_ = CardProfile("ascii-nation", 2, nation_form="ascii")
    assert decode(EF06.item("nation"), b"\x31", ascii_) == ("01", ())
    with pytest.raises(FieldError):
        decode(EF06.item("nation"), b"\x01", ascii_)


def test_issuer_code_form_is_declared_per_profile():
    an = CardProfile("ascii-issuer", 2, issuer_code_form="an")
    assert decode(EF05.item("issuer_code"), b"110100000001", an) == ("110100000001", ())


@pytest.mark.parametrize(
    "name,raw",
    [
        ("name", bytes(30)),  # empty
        ("name", b"\x81\x20" + bytes(28)),  # a GBK lead byte with no trail
        ("name", "张".encode("gbk") + b"\x00" + "三".encode("gbk") + bytes(25)),  # NUL inside
        ("social_security_number", b"11010519800101001"),  # 17 characters
        ("social_security_number", b"11010519800101001A"),
        ("card_number", b"\xff" * 9),
        ("card_number", b"B10-38475"),
        ("card_id", bytes.fromhex("3303")),
        ("card_id", bytes.fromhex("AB0300D15600000599110145FFFFFFFF")),  # region code not digits
        ("expiry_date", bytes.fromhex("20291320")),
        ("expiry_date", bytes.fromhex("2029052F")),
        ("expiry_date", b"2029"),
        ("nation", b"\x1a"),
        ("birth_place", bytes.fromhex("11A105")),
    ],
)
def test_undecodable_values_raise_field_error(name, raw):
    item = next(i for f in (EF05, EF06) for i in f.items if i.name == name)
    with pytest.raises(FieldError):
        decode(item, raw, P2)


def test_core_items_are_the_counters():
    assert {"card_id", "social_security_number", "name", "card_number", "expiry_date"} == CORE_ITEMS
    assert {i.name for f in layout.SSSE_FILES for i in f.items} >= CORE_ITEMS
