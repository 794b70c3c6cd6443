"""Record TLV, BER-TLV and the card's data formats: exact in both directions."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardlib import fields, layout
from cardlib.errors import FieldError, TlvError
from cardlib.tlv import BerTlv, build_record, encode_length, parse_ber, parse_record


def test_record_tlv_round_trip_and_checks():
    raw = build_record(0x07, b"B10238475")
    assert raw == b"\x07\x09B10238475"
    assert parse_record(raw) == (0x07, b"B10238475")
    assert parse_record(raw, expected_tag=7) == (7, b"B10238475")
    with pytest.raises(TlvError, match="expected 08"):
        parse_record(raw, expected_tag=8)
    with pytest.raises(TlvError, match="truncated"):
        parse_record(raw[:-1])
    with pytest.raises(TlvError, match="trailing"):
        parse_record(raw + b"\x00")
    with pytest.raises(TlvError):
        build_record(0x07, bytes(256))


def test_ber_tlv_nested_and_long_lengths():
    fci = bytes.fromhex("6F1184 0F 7378312E73682EC9E7BBE1B1A3D5CF".replace(" ", ""))
    (top,) = parse_ber(fci)
    assert top.tag == 0x6F and top.constructed
    assert top.find(0x84).value == layout.SSSE_AID
    big = BerTlv(0x5F2E, bytes(300))
    enc = big.to_bytes()
    assert enc[:5] == bytes.fromhex("5F2E82012C")
    assert parse_ber(enc) == [big]
    assert encode_length(0x80) == b"\x81\x80"
    assert top.to_bytes() == fci


@pytest.mark.parametrize(
    "raw", ["6F05840F", "5F", "9F8F8F8F01", "048401", "0485000000000001", "6F02" + "6F02" * 1]
)
def test_ber_tlv_rejects_malformed(raw):
    with pytest.raises(TlvError):
        parse_ber(bytes.fromhex(raw))


def test_known_encodings():
    assert fields.cn(3).build("4403") == bytes.fromhex("4403FF")
    assert fields.cn(1).parse(b"\x01") == "01"
    assert fields.date().build(dt.date(1980, 1, 1)) == bytes.fromhex("19800101")
    assert fields.gbk(30).build("张三")[:5] == bytes.fromhex("D5C5C8FD00")
    assert fields.an(4).build("2.00") == b"2.00"
    assert fields.an(9).build("A1") == b"A1" + bytes(7)
    assert fields.an(4, pad=0x20).parse(b"12  ") == "12"


@pytest.mark.parametrize(
    "fmt,value",
    [
        (fields.cn(3), "12345678"),  # too long
        (fields.cn(3), "12a"),  # not digits
        (fields.an(2), "张"),  # not ASCII
        (fields.an(2), "abc"),  # too long
        (fields.an(3), "a\x00"),  # ends with the pad byte
        (fields.gbk(4), "张三李"),  # 6 bytes
        (fields.gbk(4), "😀"),  # not in GBK
        (fields.date(), "2020-01-01"),  # not a date object
        (fields.b(2), b"\x01"),  # wrong size
    ],
)
def test_unencodable_values_raise_field_error(fmt, value):
    with pytest.raises(FieldError):
        fmt.build(value)


@pytest.mark.parametrize(
    "fmt,raw",
    [
        (fields.cn(2), "12AF"),  # A is not BCD
        (fields.cn(2), "1F2F"),  # digit after padding
        (fields.date(), "20201301"),  # month 13
        (fields.date(), "2020FFFF"),
        (fields.an(3), "41FF00"),  # not ASCII
        (fields.an(3), "410041"),  # NUL inside a 00-padded value
        (fields.gbk(2), "D500"),  # half a GBK character
        (fields.gbk(4), "00000001"),  # a NUL before the value's end: build would refuse it
        (fields.an(2), "41"),  # wrong length
    ],
)
def test_invalid_raw_values_raise_field_error(fmt, raw):
    with pytest.raises(FieldError):
        fmt.parse(bytes.fromhex(raw))


ALL_FORMATS = [fields.cn(1), fields.cn(3), fields.cn(4), fields.an(1), fields.an(9), fields.an(18),
               fields.gbk(30), fields.b(16), fields.date()]


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=lambda f: f"{f.kind}{f.length}")
@given(data=st.data())
def test_parse_then_build_is_exact_for_every_raw_that_parses(fmt, data):
    raw = data.draw(st.binary(min_size=fmt.length, max_size=fmt.length))
    try:
        value = fmt.parse(raw)
    except FieldError:
        return
    assert fmt.build(value) == raw


@given(st.text(alphabet="0123456789", max_size=6))
def test_cn_round_trip(digits):
    assert fields.cn(3).parse(fields.cn(3).build(digits)) == digits


@given(st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5), max_size=15))
def test_gbk_round_trip(name):
    try:
        raw = fields.gbk(30).build(name)
    except FieldError:
        return  # a rare CJK code point GBK lacks
    assert fields.gbk(30).parse(raw) == name


@given(st.dates(min_value=dt.date(1000, 1, 1)))
def test_date_round_trip(d):
    assert fields.date().parse(fields.date().build(d)) == d


def test_layout_declares_what_the_domain_says():
    assert layout.SSSE_AID[:7] == b"sx1.sh." and layout.SSSE_AID[7:].decode("gbk") == "社会保障"
    assert layout.EF05.p2_sfi == 0x2C and layout.EF06.p2_sfi == 0x34
    assert [i.tag for i in layout.EF05.items] == list(range(1, 8))
    assert [i.tag for i in layout.EF06.items] == [0x08, 0x09, 0x4E, 0x0A, 0x0B, 0x0C, 0x0D]
    assert 0x4E not in [i.tag for i in layout.EF06.items_for("1.00")]
    assert 0x4E in [i.tag for i in layout.EF06.items_for("3.00")]
    assert layout.EF05.item("card_id").length == 16 and layout.EF06.item("name").length == 30
    assert len(layout.BASIC_ITEMS) == 13
