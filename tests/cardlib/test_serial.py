"""The serial frame protocol and a serial reader against the simulated reader over socket://."""

from __future__ import annotations

import socket

import pytest

from cardlib import errors
from cardlib.card import SocialSecurityCard
from cardlib.readers.serial import Cmd, Frame, SerialReader, Status, bcc, read_frame
from sim.faults import Fault
from sim.personalize import issue_sample
from sim.serial_reader import SerialReaderServer


def test_frame_layout():
    f = Frame(Cmd.APDU, bytes.fromhex("00A40000023F00"))
    raw = f.to_bytes()
    assert raw.hex().upper() == "02000832" + "00A40000023F00" + f"{bcc(raw[1:-2]):02X}" + "03"
    assert Frame.from_bytes(raw) == f
    assert Frame(Cmd.POWER_ON).to_bytes().hex() == "020001303103"


@pytest.mark.parametrize(
    "raw",
    ["020001303003", "020001303102", "030001303103", "02000230313103", "0200", "020000003003"],
)
def test_bad_frames_are_refused(raw):
    with pytest.raises(errors.FrameError):
        Frame.from_bytes(bytes.fromhex(raw))


def test_read_frame_skips_noise_and_times_out():
    data = bytearray(b"\xff\xee" + Frame(Status.OK, b"\x01").to_bytes())

    def read(n):
        out = bytes(data[:n])
        del data[:n]
        return out

    assert read_frame(read) == Frame(Status.OK, b"\x01")
    with pytest.raises(errors.CardTimeout):
        read_frame(read)


@pytest.fixture
def server():
    srv = SerialReaderServer(issue_sample("zhang_san")).start()
    yield srv
    srv.stop()


def test_read_basic_over_a_serial_reader(server):
    r = SerialReader(server.url)
    try:
        card = SocialSecurityCard(r)
        info = card.read_basic()
        assert info.name == "张三" and card.apdu_count == 14
        assert r.card_present()
        card.verify_pin("123456")
    finally:
        r.close()


def test_serial_reader_without_card():
    srv = SerialReaderServer(None).start()
    try:
        r = SerialReader(srv.url)
        assert not r.card_present()
        with pytest.raises(errors.NoCard):
            r.connect()
        with pytest.raises(errors.NoCard):
            r.transmit(b"\x00\xa4\x00\x00")
        r.close()
    finally:
        srv.stop()


def test_card_pulled_on_a_serial_reader(server):
    server.card.faults.arm(Fault("pull", ins=0xB2, after=2))
    r = SerialReader(server.url)
    try:
        with pytest.raises(errors.CardRemoved):
            SocialSecurityCard(r).read_basic()
        with pytest.raises(errors.NoCard):
            r.connect()
    finally:
        r.close()


def test_reader_answers_a_corrupt_frame_with_frame_error_and_stays_up(server):
    host, port = server.server_address[:2]
    with socket.create_connection((host, port)) as s:
        bad = bytearray(Frame(Cmd.POWER_ON).to_bytes())
        bad[-2] ^= 0xFF  # break the BCC
        s.sendall(bytes(bad))
        assert Frame.from_bytes(s.recv(64)).code == Status.FRAME_ERROR
        s.sendall(Frame(0x7F).to_bytes())
        assert Frame.from_bytes(s.recv(64)).code == Status.UNKNOWN_COMMAND
        s.sendall(Frame(Cmd.POWER_ON).to_bytes())
        assert Frame.from_bytes(s.recv(64)).code == Status.OK


def test_unreachable_serial_reader_is_a_transport_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(errors.TransportError):
        SerialReader(f"socket://127.0.0.1:{port}", timeout=1).connect()
