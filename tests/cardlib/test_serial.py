"""The serial frame protocol and a serial reader against the simulated reader over socket://."""

from __future__ import annotations

import socket
import time

import pytest

from cardlib import errors
from cardlib.card import SocialSecurityCard
from cardlib.readers.serial import Cmd, Frame, SerialReader, Status, bcc, read_frame
from sim.faults import Fault
from sim.personalize import issue_sample
from sim.serial_reader import LineFault, SerialReaderServer


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


# ---- a noisy line: the reader resynchronises and stays usable -----------------------------------------------
# A counter's serial reader lives for days: one glitch must cost at most the command it hit, never shift every
# later answer by a frame (which is what an unflushed input did: every read after a stray frame failed).
def read_many(r: SerialReader, n: int = 3) -> None:
    for _ in range(n):
        card = SocialSecurityCard(r)
        assert card.read_basic().name == "张三"


@pytest.mark.parametrize("kind", ["stray", "noise", "corrupt", "cut"])
def test_a_glitch_on_a_read_costs_nothing_and_later_reads_work(server, kind):
    server.line_faults.append(LineFault(kind, after=4))  # POWER_ON, SELECT, 2 READ RECORDs, then the glitch
    r = SerialReader(server.url, timeout=2.0)
    try:
        t0 = time.monotonic()
        read_many(r)
        assert time.monotonic() - t0 < 1.5  # a cut frame is noticed by its silence, not by the whole timeout
        assert server.line_faults[0].fired == 1
    finally:
        r.close()


def test_a_garbled_answer_to_verify_is_not_resent(server):
    """VERIFY counts tries: resending it after a lost answer could spend a second one. The error says so."""
    r = SerialReader(server.url, timeout=2.0)
    try:
        card = SocialSecurityCard(r)
        card.select_ssse()
        server.line_faults.append(LineFault("corrupt"))
        with pytest.raises(errors.FrameError, match=r"VERIFY \(00 20 00 00\).*may have"):
            card.verify_pin("123456")
        assert server.card.pin.tries_left == 3
        card.verify_pin("123456")  # the line is in step again
        read_many(r, 1)
    finally:
        r.close()


def test_a_lost_answer_fails_within_the_timeout_and_the_reader_recovers(server):
    r = SerialReader(server.url, timeout=0.5)
    try:
        card = SocialSecurityCard(r)
        card.read_basic()
        server.line_faults.append(LineFault("mute"))  # the answer is lost; no time is left for a retry
        t0 = time.monotonic()
        with pytest.raises(errors.CardTimeout, match=r"READ RECORD"):
            card.read_basic()
        assert time.monotonic() - t0 < 0.9
        read_many(r, 1)
    finally:
        r.close()


def test_a_stray_frame_after_a_write_is_flushed_before_the_next_command(server):
    r = SerialReader(server.url, timeout=1.0)
    try:
        read_many(r, 1)
        server.line_faults.append(LineFault("stray", count=0))  # every answer comes twice
        read_many(r, 2)
    finally:
        r.close()


class ScriptedPort:
    """A serial port whose reader answers from a script: what a reader that refuses our frame sends."""

    def __init__(self, replies: list[bytes]) -> None:
        self.replies, self.written, self.timeout, self.buf = replies, [], 1.0, b""

    def reset_input_buffer(self) -> None:
        self.buf = b""

    def write(self, data: bytes) -> None:
        self.written.append(data)
        self.buf += self.replies.pop(0)

    def read(self, n: int) -> bytes:
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def test_a_frame_the_reader_refused_is_sent_again_even_for_verify():
    """Status 03 means the reader did not take our frame, so the card ran nothing: resending is safe."""
    port = ScriptedPort([Frame(Status.FRAME_ERROR).to_bytes(), Frame(Status.OK, b"\x90\x00").to_bytes()])
    r = SerialReader("socket://unused:1")
    r._port = port  # type: ignore[assignment]
    assert r.transmit(bytes.fromhex("0020000003123456")) == b"\x90\x00"
    assert len(port.written) == 2 and port.written[0] == port.written[1]
    port.replies = [Frame(Status.FRAME_ERROR).to_bytes()] * 2
    with pytest.raises(errors.FrameError, match="rejected our frame twice"):
        r.transmit(bytes.fromhex("00B2012C00"))
