"""Command/response APDUs, status words and the T=0 channel."""

from __future__ import annotations

import pytest

from cardlib import errors
from cardlib.apdu import CardChannel, CommandAPDU, ResponseAPDU
from cardlib.errors import MalformedResponse


@pytest.mark.parametrize(
    "cmd,raw",
    [
        (CommandAPDU(0x00, 0x84, 0, 0), "00840000"),  # case 1
        (CommandAPDU(0x00, 0x84, 0, 0, le=8), "0084000008"),  # case 2S
        (CommandAPDU(0x00, 0xB0, 0, 0, le=256), "00B0000000"),  # case 2S, Le 256 -> 00
        (CommandAPDU(0x00, 0xA4, 4, 0, b"\x3f\x00"), "00A40400023F00"),  # case 3S
        (CommandAPDU(0x00, 0xA4, 4, 0, b"\x3f\x00", 256), "00A40400023F0000"),  # case 4S
        (CommandAPDU(0x00, 0xB0, 0, 0, le=1024), "00B00000000400"),  # case 2E
        (CommandAPDU(0x00, 0xB0, 0, 0, le=65536), "00B00000000000"),  # case 2E, Le 65536 -> 0000
        (CommandAPDU(0x00, 0xD6, 0, 0, bytes(300)), "00D6000000012C" + "00" * 300),  # case 3E
        (CommandAPDU(0x00, 0xD6, 0, 0, bytes(300), 512), "00D6000000012C" + "00" * 300 + "0200"),  # 4E
    ],
)
def test_encode_and_parse_every_case(cmd, raw):
    assert cmd.to_bytes().hex().upper() == raw.upper()
    assert CommandAPDU.from_bytes(bytes.fromhex(raw)) == cmd


def test_short_command_can_be_forced_extended():
    cmd = CommandAPDU(0x00, 0xB2, 1, 0x2C, le=18)
    assert cmd.to_bytes(extended=True).hex() == "00b2012c000012"
    assert CommandAPDU.from_bytes(cmd.to_bytes(extended=True)) == cmd


@pytest.mark.parametrize("raw", ["00", "00A404", "00A40400033F00", "00A40400023F00AABB", "00A4040000000001"])
def test_malformed_commands_are_rejected(raw):
    with pytest.raises(MalformedResponse):
        CommandAPDU.from_bytes(bytes.fromhex(raw))


def test_command_fields_are_range_checked():
    with pytest.raises(ValueError):
        CommandAPDU(0x100, 0, 0, 0)
    with pytest.raises(ValueError):
        CommandAPDU(0, 0, 0, 0, le=65537)


@pytest.mark.parametrize(
    "sw,cls",
    [
        (0x6A82, errors.FileNotFound),
        (0x6A83, errors.RecordNotFound),
        (0x6982, errors.SecurityStatusNotSatisfied),
        (0x6983, errors.PinBlocked),
        (0x6700, errors.WrongLength),
        (0x6988, errors.MacWrong),
        (0x6987, errors.MacMissing),
        (0x6984, errors.ChallengeInvalid),
        (0x6D00, errors.InsNotSupported),
        (0x6E00, errors.ClaNotSupported),
        (0x6F00, errors.UnknownStatus),
        (0x6C12, errors.WrongLe),
    ],
)
def test_status_words_map_to_typed_errors(sw, cls):
    with pytest.raises(cls) as e:
        ResponseAPDU(b"", sw).check()
    assert e.value.sw == sw
    assert f"{sw:04X}" in str(e.value)


def test_pin_wrong_carries_tries_left():
    with pytest.raises(errors.PinWrong) as e:
        ResponseAPDU(b"", 0x63C2).check()
    assert e.value.tries_left == 2
    assert "2 tries left" in str(e.value)


def test_response_shorter_than_sw_is_malformed():
    for raw in (b"", b"\x90"):
        with pytest.raises(MalformedResponse):
            ResponseAPDU.from_bytes(raw)


class Scripted:
    """A transport that answers from a script and records what it was sent."""

    def __init__(self, *answers: str) -> None:
        self.answers = [bytes.fromhex(a) for a in answers]
        self.sent: list[str] = []

    def transmit(self, apdu: bytes) -> bytes:
        self.sent.append(apdu.hex().upper())
        return self.answers.pop(0)


def test_61xx_is_followed_by_get_response_until_done():
    t = Scripted("6104", "AABBCCDD6102", "EEFF9000")
    ch = CardChannel(t)
    resp = ch.send(CommandAPDU(0x00, 0xA4, 0, 0, b"\xef\x05", 256))
    assert resp == ResponseAPDU(bytes.fromhex("AABBCCDDEEFF"), 0x9000)
    assert t.sent == ["00A4000002EF0500", "00C0000004", "00C0000002"]
    assert ch.apdu_count == 3


def test_61xx_on_a_command_without_le_is_success_without_get_response():
    t = Scripted("6114")
    resp = CardChannel(t).send(CommandAPDU(0x00, 0xA4, 4, 0, b"\x3f\x00"))
    assert resp.ok and t.sent == ["00A40400023F00"]


def test_6cxx_resends_with_the_right_le():
    t = Scripted("6C0B", "070941313233343536373839009000")
    resp = CardChannel(t).send(CommandAPDU(0x00, 0xB2, 7, 0x2C, le=256))
    assert resp.ok
    assert t.sent == ["00B2072C00", "00B2072C0B"]


def test_6cxx_twice_is_an_error_not_a_loop():
    t = Scripted("6C0B", "6C0C")
    with pytest.raises(errors.WrongLe):
        CardChannel(t).send(CommandAPDU(0x00, 0xB2, 7, 0x2C, le=256))


def test_endless_61xx_from_a_hostile_card_stops():
    class Endless:
        def transmit(self, apdu: bytes) -> bytes:
            return b"\x00" * 255 + b"\x61\xff"

    with pytest.raises(MalformedResponse):
        CardChannel(Endless()).send(CommandAPDU(0x00, 0xC0, 0, 0, le=256))


def test_channel_check_returns_data_or_raises():
    assert CardChannel(Scripted("01029000")).check(CommandAPDU(0, 0xB0, 0, 0, le=2)) == b"\x01\x02"
    with pytest.raises(errors.FileNotFound):
        CardChannel(Scripted("6A82")).check(CommandAPDU(0, 0xA4, 0, 0, b"\x00\x01"))
