"""A corpus of card images built from public field evidence (tests/cards/*.toml), each read in-process,
through the serial path (sim/serial_reader over socket://) and through pcscd (the card behind vpcd): the
counter's core items exact, everything else read or warned by name.

The images hold raw records loaded into the simulated card as they are (sim.images), so they carry bytes
our personalisation would never write. Their facts come from code that reads real cards (facts only; no
code copied), found with the search tools:

- EF06 by record number after SELECT EF06, `00 B2 01 04 14` (social security number), `00 B2 02 04 20`
  (name): winkexp/SiChuanActivex GYHMeter/GYHMeter/GYHMeterCtrl.cpp (iReadCardBas_HSM_Step2); the same
  sequence in an Android reader (tecsun DataDoWithBuilder: SELECT EF05, `00 B2 07 04 0B`, SELECT EF06,
  `00 B2 01 04 14`, `00 B2 02 04 20`).
- EF05 and EF06 by SFI and record number, the spec version deciding the generation: first byte '2' or 00
  -> second generation, '1' -> first; sex `00 B2 04 34 03` on a v2 card, `00 B2 03 34 03` on a v1 card (no
  4E record); issuer code read with Le 0E (12 bytes): ace-wh-gao/GeneralCardDispenser
  SSCReaderFuncs/SSCReaderFuncs.cpp (ReadCardBaseInfo).
- EF06 by record identifier after SELECT EF06 (`00 B2 08 00 14`, `00 B2 09 00 20`, `00 B2 0A 00 03`,
  nation and birth place as BCD), a Xinjiang reader: a7082633/HDOS_VC6 新疆焦阳/HD_XJDLL/HD_XJDLL.cpp;
  identifier mode and the EF05/EF06 item table (01 card id 16 bytes, 05/06 dates 4, 07 card number 9,
  08 18, 09 30, 0A/0B 1, 0C 3, 0D 4), birth place trimmed of FF: yxsylyh/hiquotion_cpp
  Hardware/card/SIDCard/DeCard/SIDCardOperation.cpp.
- A card identification code padded with FF after a short serial, read with Le 00 (trace in a comment:
  `01 10 330300D156000005........FFFFFFFF`), spec "3.00" as 33 2E 30 30, external authentication
  (`00 82 00 0A 10`) before EF06 is read by record number: leithergit/Z390Kylin
  Evolis_Z390_printer/evolis_z390_printer.cpp (WriteCard1/WriteCard2).
- Third-generation cards: "3.0卡读个人基本信息需要RKSSSE密钥外部认证" (the PSAM needs the RKSSSE key to
  read a 3.0 card's basic data); iReadCardBas_HSM_Step1/Step2 gathering region code, ATR, algorithm flag
  (9F0C in the SSSE FCI), card id and challenges for the HSM, then authenticating and reading EF05/EF06;
  the 4E name extension read (Le 16) and joined to the name, "二代社保卡可能没有记录" (a second-generation
  card may lack the 4E record): gdgly/SI_3rdCard code/SSCARD/SSCARD/SSCARD/SSCARDCtrl.cpp.
- 初始化机构编号 as 24 characters (12 bytes BCD) in an issuing system's parsed output (subCHString(37,61)),
  an anonymous public card-issuing web page found by find_string (no repository named by the index).

Odd values (spec "0200", dates 00000000/FFFFFFFF, FF-padded card number and name, nation in ASCII, ASCII
issuer code) are the ones issue 11 reports from cards read at a counter; the holders are fictitious.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cardlib import errors
from cardlib.apdu import CardChannel
from cardlib.basic import CORE_ITEMS
from cardlib.card import SocialSecurityCard
from cardlib.profiles import CardProfile
from cardlib.psam import Psam, PsamSecurity
from cardlib.readers.memory import MemoryReader
from sim.images import CardImage, issue_image, load_image
from sim.psam import SimPsam

CARDS = Path(__file__).resolve().parents[1] / "cards"
IMAGES = sorted(CARDS.glob("*.toml"))
NON_CORE = ("card_type", "spec_version", "issuer_code", "issue_date", "sex", "nation", "birth_place", "birth_date")


def psam() -> PsamSecurity:
    return PsamSecurity(Psam(MemoryReader(SimPsam())))


def check(image: CardImage, card: SocialSecurityCard, apdus_before: int = 0) -> None:
    """Read the card as a counter would and compare with the image's [expect] table."""
    e = image.expect
    if e.get("needs_auth"):
        with pytest.raises(errors.AuthenticationRequired):
            card.read_basic()
        card.connect()
        apdus_before = card.apdu_count
        info = card.read_basic(security=psam())
    else:
        info = card.read_basic()
    for item in sorted(CORE_ITEMS - {"expiry_date"}):
        assert getattr(info, item) == e[item], item
    assert (info.expiry_date.isoformat() if info.expiry_date else "") == e["expiry_date"]
    assert info.region_code == e["card_id"][:6]
    assert info.profile == e["profile"]
    for item in NON_CORE:  # read or warned, never silently lost
        assert getattr(info, item) is not None or any(w.item == item for w in info.warnings), item
        if item in e:
            assert getattr(info, item) == e[item], item
    assert sorted(w.code for w in info.warnings) == sorted(e["warnings"])
    assert card.apdu_count - apdus_before == e["apdus"]
    if "suite" in e:
        assert card.identity()[1] == e["suite"]
    assert info.national().count("|") == 11
    info.national().encode("gbk")


@pytest.fixture(params=IMAGES, ids=[p.stem for p in IMAGES])
def image(request) -> CardImage:
    return load_image(request.param)


def test_the_corpus_covers_what_issue_11_lists():
    images = [load_image(p) for p in IMAGES]
    specs = {i.value("EF05", 0x03) for i in images}
    assert {b"1.00", b"2.00", b"3.00", b"0200", bytes.fromhex("00322E30")} <= specs
    assert any(not i.identifier_mode for i in images) and any(i.identifier_mode for i in images)
    assert any(i.ef06_requires_auth for i in images)
    assert any(len(i.value("EF06", 0x09) or b"") == 30 and (i.value("EF06", 0x4E) or b"\0")[0] not in b"\0 \xff"
               for i in images)  # a long name continued in 4E
    issuer = [i.value("EF05", 0x04) or b"" for i in images]
    assert any(v.isascii() and v.strip(b" \0").isdigit() for v in issuer)  # ASCII
    assert any(not v.strip(b" \0").isdigit() for v in issuer)  # BCD
    names = [i.value("EF06", 0x09) or b"" for i in images]
    assert {n[-1:] for n in names} >= {b"\x00", b" ", b"\xff"}  # 00, space and FF padding
    dates = {i.value("EF05", t) for i in images for t in (0x05, 0x06)}
    assert bytes(4) in dates and b"\xff" * 4 in dates


def test_read_in_process(image):
    card = SocialSecurityCard(MemoryReader(issue_image(image)))
    check(image, card)


def test_read_through_the_serial_path(image):
    from cardlib.readers.serial import SerialReader
    from sim.serial_reader import SerialReaderServer

    srv = SerialReaderServer(issue_image(image)).start()
    reader = SerialReader(srv.url)
    try:
        check(image, SocialSecurityCard(reader))
    finally:
        reader.close()
        srv.stop()


@pytest.fixture(scope="module")
def slot0(slots):
    """vpcd slot 0, its sample card put back afterwards."""
    s0 = slots[0]
    original = s0.card
    yield s0
    s0.replace(original)


def test_read_through_pcscd(image, slot0):
    from cardlib.readers.pcsc import PcscReader

    slot0.replace(issue_image(image))
    with PcscReader(slot0.reader) as reader:
        check(image, SocialSecurityCard(reader, connected=True))


def test_identifier_mode_where_a_profile_asks():
    """A regional profile asks for READ RECORD by identifier: a card that supports it is read that way; one
    that refuses (6A86) is read by number from then on, with a warning."""
    xinjiang = CardProfile("xinjiang identifier", 2, identifier_mode=True, regions=("65",))
    image = load_image(CARDS / "v2_identifier_mode_spaces.toml")
    reader = MemoryReader(issue_image(image))
    card = SocialSecurityCard(reader, channel=CardChannel(reader, log=[]), profiles=[xinjiang])
    info = card.read_basic()
    assert info.name == "古丽娜尔" and info.profile == "xinjiang identifier" and not info.warnings
    ef06 = [c for c, _ in card.channel.log if c[1] == 0xB2 and c[3] >> 3 == 6]
    assert [c[2] for c in ef06] == [0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D] and {c[3] for c in ef06} == {0x30}
    assert card.apdu_count == 14

    zhejiang = CardProfile("zhejiang identifier", 2, identifier_mode=True, regions=("33",))
    image = load_image(CARDS / "v2_number_only_t0.toml")
    card = SocialSecurityCard(MemoryReader(issue_image(image)), profiles=[zhejiang])
    info = card.read_basic()
    assert info.name == "陈晓燕" and [w.code for w in info.warnings] == ["identifier_mode_refused"]
    assert card.apdu_count == 15  # one refused READ RECORD by identifier, then by number


def test_sscard_sim_run_serves_an_image():
    """`sscard sim run --image FILE --serial PORT`: a card that failed at a counter, back on a bench."""
    import socket
    import subprocess
    import sys

    from cardlib.readers.serial import SerialReader

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = CARDS / "v2_long_minority_name.toml"
    proc = subprocess.Popen([sys.executable, "-m", "sscard.cli", "sim", "run", "--image", str(path),
                             "--serial", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert "serial reader" in proc.stdout.readline()  # serving
        reader = SerialReader(f"socket://127.0.0.1:{port}")
        try:
            assert SocialSecurityCard(reader).read_basic().name == load_image(path).expect["name"]
        finally:
            reader.close()
    finally:
        proc.terminate()
        proc.wait(10)
