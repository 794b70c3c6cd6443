"""Reader transports without PC/SC: the in-process reader's deadline, reader specs."""

from __future__ import annotations

import pytest

from cardlib import errors
from cardlib.card import SocialSecurityCard
from cardlib.readers import open_reader
from cardlib.readers.memory import MemoryReader
from cardlib.readers.serial import SerialReader
from sim.faults import Fault
from sim.personalize import issue_sample


def test_a_card_slower_than_the_readers_timeout_is_a_timeout_naming_the_command():
    sim = issue_sample("zhang_san")
    reader = MemoryReader(sim, timeout=0.05)
    card = SocialSecurityCard(reader)
    sim.faults.arm(Fault("slow", ins=0xB2, delay=0.1))
    with pytest.raises(errors.CardTimeout, match=r"READ RECORD \(00 B2 .*0.05 s"):
        card.read_basic()
    card.connect()  # the reader let the card go; connecting again serves it
    assert card.read_basic().name == "张三"


def test_open_reader_passes_the_timeout_and_refuses_a_bare_url():
    r = open_reader("serial:socket://127.0.0.1:7816", timeout=1.5)
    assert isinstance(r, SerialReader) and r.timeout == 1.5 and r.url == "socket://127.0.0.1:7816"
    with pytest.raises(errors.ReaderNotFound, match="write serial:loop://"):
        open_reader("loop://")


@pytest.mark.parametrize(
    "answer,exc,text",
    [
        (b"", errors.MalformedResponse, r"READ RECORD \(00 B2 01 2C\): response shorter than a status word"),
        (b"\x90", errors.MalformedResponse, r"READ RECORD \(00 B2 01 2C\)"),
        (b"\x6a\x83", errors.RecordNotFound, r"READ RECORD \(00 B2 01 2C\): record not found"),
        (b"\xff\xff", errors.UnknownStatus, r"READ RECORD \(00 B2 01 2C\)"),
        (b"\x6c\x10", errors.WrongLe, r"READ RECORD \(00 B2 01 2C\): card asked for a different Le twice"),
    ],
)
def test_any_answer_bytes_give_a_typed_error_naming_the_command(answer, exc, text):
    from cardlib.apdu import CardChannel, CommandAPDU

    class Answers:
        def transmit(self, apdu: bytes) -> bytes:
            return answer

    with pytest.raises(exc, match=text):
        CardChannel(Answers()).check(CommandAPDU(0x00, 0xB2, 0x01, 0x2C, b"", 0x10))
