"""The wire format: field codec, frame splitting, and the request handler fed with random bytes."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsm_client.errors import ERROR_CODES, OK, FrameError, HsmError, InvalidInput, UnknownCommand
from hsm_client.wire import (
    COMMANDS,
    MAX_PAYLOAD,
    FrameDecoder,
    decode_fields,
    encode_fields,
    encode_request,
    parse_reply,
    parse_request,
    reply_code,
    split_fields,
)
from hsm_mock.commands import LocalHsm
from hsm_mock.keystore import KeyStore, Lmk
from hsm_mock.server import CommandHandler

HANDLER = CommandHandler(LocalHsm(KeyStore(Lmk.ephemeral())))
HANDLER.hsm.generate_key("mak", "MAK", "3DES")


def test_codes() -> None:
    assert reply_code("MC") == "MD" and reply_code("NC") == "ND" and reply_code("A9") == "ZZ"
    assert len({spec.reply_code for spec in COMMANDS.values()} | set(COMMANDS)) == 2 * len(COMMANDS)
    assert all(len(code) == 2 and code not in ("00", OK) for code in ERROR_CODES)


def test_fields_round_trip() -> None:
    raw = encode_fields([b"\x00\x01", "abc", 42, b""])
    assert raw == b"\x00\x02\x00\x01\x00\x03abc\x00\x0242\x00\x00"
    assert decode_fields("bsib", split_fields(raw)) == [b"\x00\x01", "abc", 42, b""]


@pytest.mark.parametrize(
    ("kinds", "raw"),
    [
        ("s", b"\x00\x01"),
        ("s", b"\x00\x05ab"),
        ("ss", b"\x00\x01a"),
        ("i", b"\x00\x01x"),
        ("s", b"\x00\x01\xff"),
        ("i", b"\x00\x0a1234567890"),
    ],
)
def test_bad_fields(kinds: str, raw: bytes) -> None:
    with pytest.raises(InvalidInput):
        decode_fields(kinds, split_fields(raw))


def test_parse_request() -> None:
    req = parse_request(encode_request(b"ABCD", "MC", ["mak", b"data", b"\x01\x02\x03\x04", b""]))
    assert req.header == b"ABCD" and req.spec.method == "verify_mac"
    assert req.args == ["mak", b"data", b"\x01\x02\x03\x04", b""]
    with pytest.raises(UnknownCommand):
        parse_request(b"ABCDQQ")
    with pytest.raises(FrameError):
        parse_request(b"ABC")
    with pytest.raises(InvalidInput):
        parse_request(b"ABCDMC\x00\x03ma")


@settings(deadline=None)
@given(st.binary(max_size=300))
def test_parse_request_random_bytes_typed_errors_only(payload: bytes) -> None:
    with contextlib.suppress(HsmError):
        parse_request(payload)


@settings(deadline=None)
@given(st.sampled_from(sorted(COMMANDS)), st.binary(max_size=200))
def test_parse_request_random_fields(code: str, tail: bytes) -> None:
    try:
        req = parse_request(b"HDR0" + code.encode() + tail)
    except HsmError as err:
        assert err.code in ("15", "80")
    else:
        assert len(req.args) == len(req.spec.kinds)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_handler_answers_any_payload(payload: bytes) -> None:
    reply = HANDLER.handle(payload)
    header, code, error, fields = parse_reply(reply)
    assert len(header) == 4 and len(code) == 2
    assert error in ERROR_CODES or error == OK


@settings(deadline=None)
@given(st.lists(st.binary(max_size=50), max_size=10), st.lists(st.integers(1, 40), max_size=20))
def test_frame_decoder_reassembles_any_split(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(len(p).to_bytes(2) + p for p in payloads)
    dec, out, pos = FrameDecoder(), [], 0
    for cut in cuts:
        out += dec.feed(stream[pos : pos + cut])
        pos += cut
    out += dec.feed(stream[pos:])
    assert out == payloads and dec.error is None


@settings(deadline=None)
@given(st.binary(max_size=400))
def test_frame_decoder_random_bytes_never_raises(data: bytes) -> None:
    dec = FrameDecoder(max_payload=100)
    for payload in dec.feed(data):
        assert len(payload) <= 100
    assert dec.error is None or isinstance(dec.error, FrameError)


def test_frame_decoder_oversize_keeps_earlier_frames() -> None:
    dec = FrameDecoder()
    out = dec.feed(b"\x00\x02ok" + (MAX_PAYLOAD + 1).to_bytes(2) + b"rest")
    assert out == [b"ok"] and isinstance(dec.error, FrameError)
    assert dec.feed(b"\x00\x01x") == []  # the stream is dead


def test_readme_tables_match_the_code() -> None:
    readme = (Path(__file__).parents[2] / "hsm_mock" / "README.md").read_text()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in readme.splitlines()
            if line.startswith("| ") and not line.startswith("| code")]
    commands = {r[0]: r for r in rows if len(r) == 5}
    assert set(commands) == set(COMMANDS)
    for code, (_, reply, method, fields, _) in commands.items():
        spec = COMMANDS[code]
        kinds = "".join(f.split()[-1] for f in fields.split(", ")) if fields != "-" else ""
        assert (reply, method, kinds) == (spec.reply_code, spec.method, spec.kinds)
    errors = {r[0]: r[1] for r in rows if len(r) == 3 and r[0].isdigit()}
    assert errors == {"00": "-", **{code: cls.__name__ for code, cls in ERROR_CODES.items()}}
