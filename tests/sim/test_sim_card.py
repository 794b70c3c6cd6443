"""The simulated card answers raw APDUs as a real card does."""

from __future__ import annotations

import pytest

from cardlib import layout
from sim.card import make_atr
from sim.personalize import Holder, HolderError, issue_card, issue_sample, load_holder, sample_holders

SELECT_SSSE = "00A404000F" + layout.SSSE_AID.hex()


def tx(card, hexapdu: str) -> str:
    return card.process(bytes.fromhex(hexapdu)).hex().upper()


@pytest.fixture
def card():
    c = issue_sample("zhang_san")
    c.power_on()
    return c


def test_select_by_aid_and_fid(card):
    assert tx(card, SELECT_SSSE) == "9000"
    assert tx(card, "00A40000023F00") == "9000"  # MF
    assert tx(card, "00A4040005A000000003") == "6A82"
    assert tx(card, SELECT_SSSE + "00").startswith("6F")  # with Le: FCI returned on T=1
    assert tx(card, "00A4000002DF04") == "9000"
    assert tx(card, "00A4000002DF01") == "9000"  # sibling DF from DF04
    assert tx(card, "00A4020002EF05") == "9000"
    assert tx(card, "00A4010002EF05") == "6A82"  # P1=01 wants a DF
    assert tx(card, "00A40900023F00") == "6A86"


def test_read_binary(card):
    tx(card, SELECT_SSSE)
    assert tx(card, "00B0000010") == "6986"  # no current EF
    tx(card, "00A4000002EF05")
    assert tx(card, "00B0000010") == "6981"  # a record file
    tx(card, "00A4000002EF08")
    assert tx(card, "00B0000000") == "9000"  # empty photo on test cards
    assert tx(card, "00B0000100") == "6B00"  # offset beyond the end


def test_pin_counter(card):
    tx(card, SELECT_SSSE)
    assert tx(card, "00200000") == "63C3"
    assert tx(card, "0020000003000000") == "63C2"
    assert tx(card, "0020000003123456") == "9000"
    assert tx(card, "00200000") == "9000"  # verified
    assert tx(card, "002000000312345A") == "6A80"  # not BCD
    assert tx(card, "0020000003111111") == "63C2"
    assert tx(card, "0020000003111111") == "63C1"
    assert tx(card, "0020000003111111") == "6983"
    assert tx(card, "0020000003123456") == "6983"
    assert card.pin.blocked


def test_pin_is_not_stored_in_clear(card):
    import pickle

    assert b"123456" not in pickle.dumps(card.pin.__dict__)
    assert b"\x12\x34\x56" not in pickle.dumps(card.pin.__dict__)


def test_change_pin_command(card):
    assert tx(card, "805E0100071234 56FF654321".replace(" ", "")) == "9000"
    assert tx(card, "0020000003654321") == "9000"
    assert tx(card, "805E010003123456") == "6A80"  # no separator


def test_t0_get_response_and_6c():
    c = issue_sample("li_si", t0=True)
    c.power_on()
    assert tx(c, SELECT_SSSE + "00")[:2] == "61"  # case 4 on T=0: data waits
    fci_len = int(tx(c, SELECT_SSSE + "00")[2:], 16)
    resp = tx(c, f"00C00000{fci_len:02X}")
    assert resp.startswith("6F") and resp.endswith("9000")
    assert tx(c, "00C0000010") == "6985"  # nothing pending
    assert tx(c, "00B2092C00") == "6A83"  # EF05 has no record 9
    assert tx(c, "00B2023405") == "6C20"  # EF06 record 2, the name, is 30+2 bytes
    assert tx(c, "00B2023420").endswith("9000")


def test_unknown_instruction_and_class(card):
    assert tx(card, "00FF0000") == "6D00"
    assert tx(card, "F0A40000") == "6E00"
    assert tx(card, "00") == "6700"


def test_atr_forms():
    assert make_atr(False, b"") == bytes.fromhex("3B80800101")
    t0 = make_atr(True, b"AB")
    assert t0 == bytes.fromhex("3B024142")
    from cardlib.readers.base import historical_bytes

    assert historical_bytes(make_atr(False, b"MOHRSS")) == b"MOHRSS"
    assert historical_bytes(t0) == b"AB"


def test_power_cycle_resets_selection_and_verification(card):
    tx(card, SELECT_SSSE)
    tx(card, "0020000003123456")
    card.power_on()
    assert tx(card, "00B2072C0B") == "6A82"  # MF selected again: no EF05 by SFI there
    tx(card, SELECT_SSSE)
    assert tx(card, "00200000") == "63C3"


# ---- personalization --------------------------------------------------------------------------------------
def test_every_sample_holder_issues_a_card():
    for path in sample_holders().values():
        assert issue_card(load_holder(path)).label


def _holder(**changes) -> Holder:
    h = load_holder(sample_holders()["zhang_san"])
    for where, key, value in changes.get("set", []):
        getattr(h, where)[key] = value
    for where, key in changes.get("drop", []):
        del getattr(h, where)[key]
    return h


@pytest.mark.parametrize(
    "change,message",
    [
        ({"set": [("holder", "name", "一二三四五六七八九十一二三四五六")]}, "name"),
        ({"set": [("card", "card_number", "TOO-LONG-NUMBER")]}, "card_number"),
        ({"set": [("holder", "birth_place", "ABC")]}, "birth_place"),
        ({"set": [("card", "issue_date", "2019-13-01")]}, "issue_date"),
        ({"set": [("card", "card_id", "zz")]}, "card_id"),
        ({"drop": [("holder", "sex")]}, "sex"),
        ({"set": [("holder", "hobby", "chess")]}, "unknown EF06 items: hobby"),
    ],
)
def test_bad_holder_values_are_refused_naming_the_field(change, message):
    with pytest.raises(HolderError, match=message):
        issue_card(_holder(**change))


def test_bad_holder_files(tmp_path):
    p = tmp_path / "x.toml"
    p.write_text("[card\n")
    with pytest.raises(HolderError, match="not valid TOML"):
        load_holder(p)
    p.write_text("[card]\n")
    with pytest.raises(HolderError, match=r"needs \[card\] and \[holder\]"):
        load_holder(p)
    with pytest.raises(HolderError, match="cannot read"):
        load_holder(tmp_path / "missing.toml")
    j = tmp_path / "x.json"
    j.write_text("{")
    with pytest.raises(HolderError, match="not valid JSON"):
        load_holder(j)
