"""READ RECORD / UPDATE RECORD conformance: the simulated card addresses records exactly as ISO 7816-4 says.

P2 b8..b4 is the SFI (00000 = current EF, 11111 RFU), b3..b1 the mode: 100 record number P1 (P1 = 00 the
current record), 000/001/010/011 the first/last/next/previous record whose identifier is P1 (00 = any),
with the record pointer of ISO 7816-4 Annex C (cardwerk.com/iso7816-4-annex-c-record-pointer-management).

Field traces the table includes, each reading a real card (sources cited in tests/cardlib/test_card_corpus.py):
`00 B2 01 04 14` / `00 B2 02 04 20` after SELECT EF06 (record number, current EF), `00 B2 04 34 03` for sex
on a version 2 card (record 4 by SFI 6), `00 B2 08 00 14` / `00 B2 0A 00 03` (identifier mode, current EF),
`00 B2 07 2C 0B` for the card number (EF05 record 7 by SFI 5). A card answers 6A83 for a record it lacks:
EF06 has records 1..7, so `00 B2 08 34` (record EIGHT) is refused, which is what cardlib used to send.
"""

from __future__ import annotations

import re

import pytest

from cardlib import layout
from sim.personalize import issue_sample

SELECT_SSSE = "00A404000F" + layout.SSSE_AID.hex().upper()
SELECT_EF06 = "00A4020002EF06"
SELECT_DF04 = "00A4000002DF04"
SSN = "0812" + b"110105198001010016".hex().upper()
NAME = "091E" + "张三".encode("gbk").hex().upper() + "00" * 26
EXT = "4E14" + "00" * 20
SEX = "0A0131"
NATION = "0B0101"
BIRTH = "0D0419800101"
CARD_NO = "0709" + b"B10238475".hex().upper()

# (before: APDUs sent first, command, expected answer (regex), what it shows)
TABLE: list[tuple[list[str], str, str, str]] = [
    # -- record number (b3..b1 = 100) by SFI
    ([SELECT_SSSE], "00B2072C0B", CARD_NO + "9000", "EF05 record 7 = card number (tag 07)"),
    ([SELECT_SSSE], "00B2012C12", "0110" + "[0-9A-F]{32}9000", "EF05 record 1 = card identification code"),
    ([SELECT_SSSE], "00B2013414", SSN + "9000", "EF06 record 1 = social security number (tag 08)"),
    ([SELECT_SSSE], "00B2023420", NAME + "9000", "EF06 record 2 = name (tag 09)"),
    ([SELECT_SSSE], "00B2033416", EXT + "9000", "EF06 record 3 = name extension 4E on a v2 card"),
    ([SELECT_SSSE], "00B2043403", SEX + "9000", "EF06 record 4 = sex on a v2 card (field trace)"),
    ([SELECT_SSSE], "00B2053403", NATION + "9000", "EF06 record 5 = nation"),
    ([SELECT_SSSE], "00B2073406", BIRTH + "9000", "EF06 record 7 = birth date"),
    ([SELECT_SSSE], "00B2083414", "6A83", "record 8: EF06 has 7 records (tag 08 is not record 8)"),
    ([SELECT_SSSE], "00B2093420", "6A83", "record 9 does not exist either"),
    ([SELECT_SSSE], "00B2423400", "6A83", "no record 0x42"),
    ([SELECT_SSSE], "00B2003400", "6A83", "P1 = 00 is the current record: undefined after the SFI reset it"),
    ([SELECT_SSSE], "00B2013405", "6C14", "Le too short: the card says the right one (T=1 sim answers 6Cxx)"),
    ([SELECT_SSSE], "00B2013400", SSN + "9000", "Le 00: the whole record"),
    # -- record identifier (b3..b1 = 000..011) by SFI
    ([SELECT_SSSE], "00B2083000", SSN + "9000", "first record with identifier 08, SFI 6"),
    ([SELECT_SSSE], "00B24E3000", EXT + "9000", "first record with identifier 4E"),
    ([SELECT_SSSE], "00B2003000", SSN + "9000", "first record, any identifier"),
    ([SELECT_SSSE], "00B2003100", BIRTH + "9000", "last record, any identifier"),
    ([SELECT_SSSE], "00B20A3200", SEX + "9000", "next with identifier 0A, pointer undefined: the first one"),
    ([SELECT_SSSE], "00B20C3300", "0C03[0-9A-F]{6}9000", "previous with 0C, pointer undefined: the last one"),
    ([SELECT_SSSE], "00B2423000", "6A83", "no record with identifier 42"),
    ([SELECT_SSSE], "00B2052C00", "0504[0-9]{8}9000", "EF05: record 5 carries tag 05 (number mode)"),
    ([SELECT_SSSE], "00B2052800", "0504[0-9]{8}9000", "EF05: identifier 05 (identifier mode), same record"),
    # -- current EF (SFI 00000)
    ([SELECT_SSSE], "00B2010414", "6986", "no current EF after selecting the DF"),
    ([SELECT_SSSE, SELECT_EF06], "00B2010414", SSN + "9000", "record 1 of the current EF (field trace)"),
    ([SELECT_SSSE, SELECT_EF06], "00B2020420", NAME + "9000", "record 2 of the current EF (field trace)"),
    ([SELECT_SSSE, SELECT_EF06], "00B2080014", SSN + "9000", "identifier 08 in the current EF (field trace)"),
    ([SELECT_SSSE, SELECT_EF06], "00B20A0003", SEX + "9000", "identifier 0A in the current EF (field trace)"),
    ([SELECT_SSSE, SELECT_EF06], "00B2080414", "6A83", "record NUMBER 8 in the current EF"),
    # -- the record pointer (Annex C)
    ([SELECT_SSSE, SELECT_EF06], "00B2000200", SSN + "9000", "next, pointer undefined: the first record"),
    ([SELECT_SSSE, SELECT_EF06, "00B2000200"], "00B2000200", NAME + "9000", "next again: record 2"),
    ([SELECT_SSSE, SELECT_EF06, "00B2000200", "00B2000200"], "00B2000400", NAME + "9000",
     "record number 00 = the current record"),
    ([SELECT_SSSE, SELECT_EF06, "00B2000200", "00B2000200"], "00B2000300", SSN + "9000", "previous: record 1"),
    ([SELECT_SSSE, SELECT_EF06, "00B2000200"], "00B2000300", "6A83", "previous from the first record"),
    ([SELECT_SSSE, SELECT_EF06, "00B2000100"], "00B2000200", "6A83", "next from the last record"),
    ([SELECT_SSSE, SELECT_EF06, "00B2000200", "00B2050400"], "00B2000200", NAME + "9000",
     "reading by number does not move the pointer"),
    ([SELECT_SSSE, SELECT_EF06, "00B2000200"], "00B2003200", SSN + "9000", "an SFI resets the pointer"),
    ([SELECT_SSSE, SELECT_EF06, "00B2000200", SELECT_EF06], "00B2000400", "6A83", "SELECT resets it too"),
    # -- refusals
    ([SELECT_SSSE], "00B2FF3400", "6A86", "P1 = FF is RFU"),
    ([SELECT_SSSE], "00B2013500", "6A86", "101: several records (not supported)"),
    ([SELECT_SSSE], "00B2013600", "6A86", "110: several records (not supported)"),
    ([SELECT_SSSE], "00B2013700", "6A86", "111: RFU"),
    ([SELECT_SSSE], "00B201FC00", "6A86", "SFI 11111 is RFU"),
    ([SELECT_SSSE], "00B2017C00", "6A82", "no file with SFI 15"),
    ([SELECT_SSSE], "00B2013C00", "6981", "SFI 7 is EF07, a transparent file"),
    ([], "00B2012C12", "6A82", "MF is current: no EF05 by SFI there"),
    # -- a cyclic file of fixed records without identifiers
    ([SELECT_SSSE, SELECT_DF04], "00B201AC00", "6A83", "DF04 EF15 is empty"),
]


def tx(card, hexapdu: str) -> str:
    return card.process(bytes.fromhex(hexapdu)).hex().upper()


@pytest.mark.parametrize("before,cmd,expected,what", TABLE, ids=[f"{c}:{w}" for _, c, _, w in TABLE])
def test_read_record_conformance(before, cmd, expected, what):
    card = issue_sample("zhang_san")
    card.power_on()
    for apdu in before:
        assert tx(card, apdu).endswith("9000"), apdu
    assert re.fullmatch(expected, tx(card, cmd)), what


@pytest.mark.parametrize("cmd", ["00B2083000", "00B20A0003", "00B2000200", "00B2003100", "00B2000300"])
def test_a_card_that_addresses_by_number_only_refuses_identifier_mode(cmd):
    from sim.personalize import issue_card, load_holder, sample_holders

    h = load_holder(sample_holders()["zhang_san"])
    h.identifier_mode = False
    card = issue_card(h)
    card.power_on()
    tx(card, SELECT_SSSE)
    tx(card, SELECT_EF06)
    assert tx(card, cmd) == "6A86"
    assert tx(card, "00B2010414") == SSN + "9000"  # by number it answers


def test_version_1_card_numbers_ef06_without_the_4e_record():
    card = issue_sample("wang_xiuying")
    card.power_on()
    tx(card, SELECT_SSSE)
    assert tx(card, "00B2033403") == "0A0132" + "9000"  # sex is record 3 on a v1 card (field trace)
    assert tx(card, "00B24E3000") == "6A83"
    assert tx(card, "00B2073406") == "6A83"  # six records


def test_cyclic_records_have_no_identifiers():
    card = issue_sample("zhang_san")
    card.power_on()
    tx(card, SELECT_SSSE)
    tx(card, SELECT_DF04)
    ef = card.cur_df.by_sfi(layout.DF04_TRANSACTIONS.sfi)
    ef.records[:] = [bytes([0x01]) * 48, bytes([0x02]) * 48]
    assert tx(card, "00B201AC30") == "01" * 48 + "9000"
    assert tx(card, "00B201A800") == "6A83"  # identifier 01: none (fixed records carry no identifier)
    assert tx(card, "00B200A900") == "02" * 48 + "9000"  # last record, any identifier


def test_update_record_addresses_records_like_read_record():
    """UPDATE RECORD by the tag in number mode (what cardlib used to send) does not reach the item."""
    from cardlib.card import SocialSecurityCard
    from cardlib.errors import RecordNotFound
    from cardlib.psam import Psam, PsamSecurity
    from cardlib.readers.memory import MemoryReader
    from sim.psam import SimPsam

    sim = issue_sample("zhang_san")
    card = SocialSecurityCard(MemoryReader(sim))
    sm = PsamSecurity(Psam(MemoryReader(SimPsam())))
    card.authenticate(sm)
    items = layout.DF04.files[0]
    with pytest.raises(RecordNotFound):
        card.update_record(sm, layout.DF04, items, 0x51, b"\x51\x012")  # record 0x51: none
    card.update_record(sm, layout.DF04, items, 2, b"\x51\x012")  # record 2 carries tag 51
    df04 = sim.mf.children[0xDDF1].children[0xDF04]
    assert df04.by_sfi(items.sfi).records[1] == b"\x51\x012"
    assert df04.by_sfi(items.sfi).records[0][:1] == b"\x50"
