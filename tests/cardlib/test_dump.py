"""`sscard card dump` / cardlib.dump: every file and record a card lets the terminal read, raw and decoded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cardlib import layout
from cardlib.card import SocialSecurityCard
from cardlib.dump import MAX_RECORD, dump_card
from cardlib.psam import Psam, PsamSecurity
from cardlib.readers.memory import MemoryReader
from sim.images import issue_image, load_image
from sim.personalize import issue_sample
from sim.psam import SimPsam
from sim.serial_reader import SerialReaderServer
from sscard.cli import app

CARDS = Path(__file__).resolve().parents[1] / "cards"


def files(dump) -> dict:
    return {f.path: f for f in dump.files}


def test_a_dump_walks_the_file_map_and_decodes_what_read_basic_reads():
    sim = issue_sample("zhang_san")
    info = SocialSecurityCard(MemoryReader(sim)).read_basic()
    dump = dump_card(SocialSecurityCard(MemoryReader(sim)))
    by_path = files(dump)
    assert list(by_path) == ["SSSE/EF05", "SSSE/EF06", "SSSE/DF01/EF05", "SSSE/DF02/EF05", "SSSE/DF03/EF05",
                             "SSSE/DF04/EF05", "SSSE/DF04/EF15"]
    items = {r.item: r for f in ("SSSE/EF05", "SSSE/EF06") for r in by_path[f].records}
    assert items["card_id"].value.hex().upper() == info.card_id
    assert items["name"].value == info.name and items["birth_date"].value == info.birth_date
    assert [r.number for r in by_path["SSSE/EF06"].records] == list(range(1, 8))  # 4E is record 3 on v2
    assert by_path["SSSE/EF06"].end.startswith("6A83")
    assert by_path["SSSE/DF03/EF05"].records[1].item == "pension_region"
    assert by_path["SSSE/DF04/EF15"].records == []
    assert json.loads(json.dumps(dump.to_dict()))["files"][1]["records"][1]["value"] == "张三"


def test_transaction_records_are_decoded():
    sim = issue_sample("zhang_san")
    ef15 = sim.mf.children[0xDDF1].children[0xDF04].children[0xEF15]
    ef15.records.append(layout.TransactionRecord.build(dict(
        kind=1, time="20261130101500", terminal_number="110100000042", serial=7, institution="H110000101",
        total=12000, fund=9000, account=1000, cash=2000, reserved=bytes(4))))
    (rec,) = files(dump_card(SocialSecurityCard(MemoryReader(sim))))["SSSE/DF04/EF15"].records
    assert rec.value["total"] == 12000 and rec.value["terminal_number"] == "110100000042" and rec.warning is None


def test_probing_finds_the_transparent_files_the_map_does_not_name():
    dump = files(dump_card(SocialSecurityCard(MemoryReader(issue_sample("zhang_san"))), probe=True))
    assert not dump["SSSE/SFI 08"].known and dump["SSSE/SFI 08"].binary is not None  # EF08: the photo


def test_a_card_that_wants_an_authenticated_terminal_is_dumped_around_it_or_with_a_psam():
    sim = issue_sample("li_si", ef06_requires_auth=True)
    plain = files(dump_card(SocialSecurityCard(MemoryReader(sim))))
    assert plain["SSSE/EF06"].records == [] and plain["SSSE/EF06"].end.startswith("6982")
    assert len(plain["SSSE/EF05"].records) == 7 and plain["SSSE/DF01/EF05"].records  # the rest is still there
    sm = PsamSecurity(Psam(MemoryReader(SimPsam(), timeout=5.0)))
    sim = issue_sample("li_si", ef06_requires_auth=True)
    dump = dump_card(SocialSecurityCard(MemoryReader(sim)), security=sm)
    assert dump.authenticated and files(dump)["SSSE/EF06"].records[1].value == "李四"


@pytest.mark.parametrize("image", sorted(CARDS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_card_of_the_corpus_dumps_without_aborting(image):
    dump = files(dump_card(SocialSecurityCard(MemoryReader(issue_image(load_image(image))))))
    assert len(dump["SSSE/EF05"].records) == 7
    assert dump["SSSE/EF06"].records or dump["SSSE/EF06"].end.startswith("6982")


def test_a_card_that_never_runs_out_of_records_is_read_only_so_far():
    sim = issue_sample("zhang_san")
    original = sim.process

    def endless(apdu: bytes):
        if apdu[1] == 0xB2 and apdu[3] == 0x2C:  # EF05 via SFI: always "another record", and garbage in it
            return b"\x99\x01\x00\x90\x00"
        return original(apdu)

    sim.process = endless
    ef05 = files(dump_card(SocialSecurityCard(MemoryReader(sim))))["SSSE/EF05"]
    assert len(ef05.records) == MAX_RECORD and ef05.end == f"stopped at record {MAX_RECORD}"
    assert ef05.records[0].warning == "tag 99 is not in the layout of EF05"


def test_cli_dump_json_and_table():
    srv = SerialReaderServer(issue_sample("li_si")).start()
    try:
        out = CliRunner().invoke(app, ["card", "dump", "--reader", f"serial:{srv.url}", "--json"])
        assert out.exit_code == 0, out.output
        dump = json.loads(out.output)
        assert dump["files"][1]["path"] == "SSSE/EF06" and dump["files"][1]["records"][1]["value"] == "李四"
        out = CliRunner().invoke(app, ["card", "dump", "--reader", f"serial:{srv.url}"])
        assert out.exit_code == 0 and "社会保障号码" in out.output and "6A83 after 7 records" in out.output
    finally:
        srv.stop()
