"""Simulated cards behind the real pcscd + vpcd, read through pyscard and cardlib."""

from __future__ import annotations

import subprocess
import sys

import pytest
from smartcard.System import readers as pyscard_readers

from cardlib.card import SocialSecurityCard
from cardlib.errors import CardRemoved, NoCard, PinWrong, ReaderNotFound
from cardlib.readers.pcsc import PcscReader, list_readers, reader_states, resolve_reader
from sim.faults import Fault
from sim.personalize import issue_sample, load_holder, sample_holders


def test_both_slots_listed_with_cards(slots):
    s0, s1 = slots
    assert list_readers() == [s0.reader, s1.reader]
    states = {s.reader: s for s in reader_states()}
    assert states[s0.reader].present and states[s1.reader].present
    assert states[s0.reader].atr == s0.card.atr
    assert states[s1.reader].atr == s1.card.atr


def test_bare_pyscard_sees_the_ssse(slots):
    s0, _ = slots
    (r,) = [r for r in pyscard_readers() if str(r) == s0.reader]
    conn = r.createConnection()
    conn.connect()
    try:
        aid = list(bytes.fromhex("7378312E73682EC9E7BBE1B1A3D5CF"))
        _, sw1, sw2 = conn.transmit([0x00, 0xA4, 0x04, 0x00, len(aid), *aid])
        assert (sw1, sw2) == (0x90, 0x00)
        data, sw1, sw2 = conn.transmit([0x00, 0xB2, 0x07, 0x2C, 0x0B])
        assert (sw1, sw2) == (0x90, 0x00)
        assert bytes(data) == b"\x07\x09B10238475"
    finally:
        conn.disconnect()
        conn.release()


@pytest.mark.parametrize("slot_index,stem", [(0, "zhang_san"), (1, "li_si")])
def test_read_basic_through_pcscd(slots, slot_index, stem):
    slot = slots[slot_index]
    holder = load_holder(sample_holders()[stem])
    with PcscReader(slot.reader) as reader:
        card = SocialSecurityCard(reader)
        info = card.read_basic()
        assert card.apdu_count == 14
        assert info.name == holder.holder["name"]
        assert info.social_security_number == holder.holder["social_security_number"]
        assert info.card_id == holder.card["card_id"]
        assert info.region_code == holder.card["card_id"][:6]
        assert info.atr == slot.card.atr
        card.read_basic()
        assert card.apdu_count == 27  # SSSE stays selected: no second SELECT


def test_t0_card_gets_response_and_le_handled_transparently(slots):
    _, s1 = slots  # li_si is personalised for T=0
    assert s1.card.t0
    with PcscReader(s1.reader) as reader:
        card = SocialSecurityCard(reader)
        card.select_ssse()
        from cardlib.apdu import CommandAPDU

        # Le 00 on a T=0 card: 6Cxx, then the channel resends with the right Le.
        resp = card.channel.send(CommandAPDU(0x00, 0xB2, 0x02, 0x34, b"", 5))  # record 2: the name
        assert resp.ok and resp.data[:2] == b"\x09\x1e"
        # SELECT with an FCI asked for: 61xx, then GET RESPONSE.
        resp = card.channel.send(CommandAPDU(0x00, 0xA4, 0x00, 0x00, b"\xef\x05", 256))
        assert resp.ok and resp.data[:2] == b"\x6f\x04"


def test_pin_verify_and_tries_left(slots):
    s0, _ = slots
    with PcscReader(s0.reader) as reader:
        card = SocialSecurityCard(reader)
        with pytest.raises(PinWrong) as e:
            card.verify_pin("000000")
        assert e.value.tries_left == 2
        card.verify_pin("123456")
        assert s0.card.pin.tries_left == 3


def test_resolve_reader_by_part_of_name(slots):
    s0, s1 = slots
    assert resolve_reader("00 01") == s1.reader
    with pytest.raises(ReaderNotFound):
        resolve_reader("no such reader")


def test_card_pulled_mid_command_then_removed(slots):
    """A pulled card surfaces first as 0x80100016, then 0x80100069: both are one CardRemoved."""
    s0, _ = slots
    reader = PcscReader(s0.reader)
    try:
        card = SocialSecurityCard(reader)
        card.read_basic()
        s0.card.faults.arm(Fault("pull", ins=0xB2))
        with pytest.raises(CardRemoved):
            card.read_basic()
        assert reader.wait_for_removal(2.0)  # pcscd's presence poll has seen the card gone
        with pytest.raises(CardRemoved) as e:
            reader.transmit(b"\x00\xa4\x04\x00\x00")
        assert e.value.pcsc_code == 0x80100069  # SCARD_W_REMOVED_CARD
        with pytest.raises(NoCard):
            reader.connect()
        s0.card.faults.clear()
        s0.ensure_inserted()
        assert reader.wait_for_card(2.0)
        reader.connect()
        assert SocialSecurityCard(reader).read_basic().name == "张三"
    finally:
        reader.close()
        s0.ensure_inserted()


def test_card_removed_between_commands_and_reinserted(slots):
    s0, _ = slots
    reader = PcscReader(s0.reader)
    try:
        card = SocialSecurityCard(reader)
        card.read_basic()
        s0.link.remove()  # pcscd has not polled yet: the next transmit fails as "transaction failed"
        with pytest.raises(CardRemoved) as e:
            card.read_basic()
        assert e.value.pcsc_code == 0x80100016
    finally:
        reader.close()
        s0.ensure_inserted()


def test_watch_reports_insert_and_remove(slots):
    from cardlib.readers.pcsc import watch

    s0, _ = slots
    events = []
    s0.link.remove()
    try:
        for ev in watch([s0.reader], timeout=3.0):
            events.append(ev[:2])
            if ev[0] == "removed":
                s0.ensure_inserted()
            if ev[0] == "inserted":
                break
    finally:
        s0.ensure_inserted()
    assert events == [("removed", s0.reader), ("inserted", s0.reader)]


def test_cli_reads_a_card_started_with_sim_run(slots):
    """`sscard sim run` on slot 1, then `sscard card read --national` and `--json` through pcscd."""
    _, s1 = slots
    with s1.in_another_process("--holder", "wang_xiuying") as sim:
        out = subprocess.run(
            [sys.executable, "-m", "sscard.cli", "card", "read", "--reader", "00 01", "--national",
             "--terminal-number", "110100000042"],
            capture_output=True, text=True, timeout=30,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == (
            "310100|310115195707230033|S31000077|310100D15600000511E2D3C4B5A69788|王秀英|4D4F485253532D53494D|"
            "1.00|20121108|20271108|110100000042||"
        )
        out = subprocess.run(
            [sys.executable, "-m", "sscard.cli", "card", "verify-pin", "--reader", "00 01", "--pin-stdin"],
            input="222222\n", capture_output=True, text=True, timeout=30,
        )
        assert out.returncode == 1 and "2 tries left" in out.stderr
    assert "card removed" in sim.stdout.read()


def test_cli_readers_lists_both_slots(slots):
    out = subprocess.run([sys.executable, "-m", "sscard.cli", "readers"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    assert "sscard Virtual 00 00" in out.stdout and "sscard Virtual 00 01" in out.stdout


def test_a_different_card_in_the_slot(slots):
    s0, _ = slots
    original = s0.card
    s0.replace(issue_sample("zhao_deming"))
    try:
        with PcscReader(s0.reader) as reader:
            assert SocialSecurityCard(reader).read_basic().nation == "03"
    finally:
        s0.replace(original)
