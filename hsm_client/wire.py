"""The host-command wire format, shared by `hsm_client.client` and the mock HSM's server (`hsm_mock.server`).

Frame:    length (2 bytes, big-endian, 1..MAX_PAYLOAD) || payload
Request:  header (4 bytes, any value, echoed) || command code (2 ASCII) || fields
Reply:    header || response code (2 ASCII) || error code (2 ASCII) || fields
Field:    length (2 bytes, big-endian) || value; values are bytes (b), ASCII text (s) or a decimal
          integer in ASCII (i). An optional field is sent empty. The fields of each command are fixed
          in order and number (`COMMANDS`); missing, extra or malformed fields give error 15.

The response code is the command code with its second character incremented ("MC" -> "MD"); a reply to
a payload too short to hold a command code uses "ZZ". An error reply (code other than "00") carries one
field, a short ASCII message that never contains key, PIN or message material. A length prefix of 0 gets
an error reply ("ZZ", "80"); one above MAX_PAYLOAD gets an error reply and the connection is closed.

The commands, their fields and replies are tabled in hsm_mock/README.md; `COMMANDS` is the authority.
On an authenticated connection (`hsm_client.auth`) an opening comes first and every payload after it ends
with a 16-byte tag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hsm_client.api import KeyInfo, KeyType, Suite
from hsm_client.errors import FrameError, InvalidInput, UnknownCommand

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1500
MAX_PAYLOAD = 16 * 1024
HEADER_SIZE = 4
NO_CODE = "ZZ"
MAX_INT_DIGITS = 9

Value = bytes | str | int


@dataclass(frozen=True, slots=True)
class CommandSpec:
    code: str
    method: str
    kinds: str  # one letter per request field: b bytes, s ASCII text, i decimal integer
    idempotent: bool = True  # safe for the client to resend after a lost connection

    @property
    def reply_code(self) -> str:
        return reply_code(self.code)


COMMANDS: dict[str, CommandSpec] = {
    spec.code: spec
    for spec in (
        CommandSpec("NC", "ping", ""),
        CommandSpec("KA", "generate_key", "ssss", idempotent=False),
        CommandSpec("KC", "import_key", "ssssbbs", idempotent=False),
        CommandSpec("KE", "list_keys", "s"),
        CommandSpec("KG", "delete_key", "s", idempotent=False),
        CommandSpec("DA", "diversify", "sbs"),
        CommandSpec("EA", "ext_auth_cryptogram", "sbb"),
        CommandSpec("EC", "verify_ext_auth", "sbbb"),
        CommandSpec("IA", "verify_int_auth", "sbbb"),
        CommandSpec("ME", "session_mac", "sbbbi"),
        CommandSpec("MG", "verify_session_mac", "sbbbb"),
        CommandSpec("MA", "generate_mac", "sbbi"),
        CommandSpec("MC", "verify_mac", "sbbb"),
        CommandSpec("BA", "encrypt_pin", "sss"),
        CommandSpec("PA", "pin_reference", "ssbs"),
        CommandSpec("PC", "verify_pin", "ssbsb"),
        CommandSpec("PE", "translate_pin", "ssbs"),
    )
}
BY_METHOD = {spec.method: spec for spec in COMMANDS.values()}


def reply_code(code: str) -> str:
    """The response code for a command code: second character incremented; "ZZ" if that is impossible."""
    if len(code) == 2 and code.isascii() and code.isalnum() and code[1] not in "9Zz":
        return code[0] + chr(ord(code[1]) + 1)
    return NO_CODE


# ---- fields -----------------------------------------------------------------------------------------------
def encode_fields(values: Sequence[Value]) -> bytes:
    """Length-prefixed fields; str as ASCII, int as ASCII decimal."""
    out = bytearray()
    for v in values:
        try:
            raw = v if isinstance(v, bytes) else str(v).encode("ascii")
        except UnicodeEncodeError:
            raise InvalidInput("text fields are ASCII") from None
        if len(raw) > 0xFFFF:
            raise InvalidInput("field too long")
        out += len(raw).to_bytes(2) + raw
    return bytes(out)


def split_fields(data: bytes | memoryview) -> list[bytes]:
    """The raw field values; InvalidInput if a length runs past the end."""
    fields: list[bytes] = []
    pos, end = 0, len(data)
    while pos < end:
        if pos + 2 > end:
            raise InvalidInput("truncated field length")
        n = int.from_bytes(data[pos : pos + 2])
        pos += 2
        if pos + n > end:
            raise InvalidInput("truncated field")
        fields.append(bytes(data[pos : pos + n]))
        pos += n
    return fields


def _text(raw: bytes) -> str:
    text = raw.decode("latin-1")
    if not (raw.isascii() and text.isprintable()):
        raise InvalidInput("text fields are printable ASCII")
    return text


def _int(raw: bytes) -> int:
    if not raw.isdigit() or len(raw) > MAX_INT_DIGITS:
        raise InvalidInput("integer fields are 1..9 decimal digits")
    return int(raw)


_DECODERS = {"b": bytes, "s": _text, "i": _int}


def decode_fields(kinds: str, fields: Sequence[bytes]) -> list[Value]:
    """Typed values for a field-kind string; InvalidInput on a wrong count or a malformed value."""
    if len(fields) != len(kinds):
        raise InvalidInput(f"expected {len(kinds)} fields, got {len(fields)}")
    return [_DECODERS[k](f) for k, f in zip(kinds, fields, strict=True)]


# ---- requests and replies ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Request:
    header: bytes
    spec: CommandSpec
    args: list[Value]


def parse_request(payload: bytes | memoryview) -> Request:
    """A request payload to a typed Request; FrameError, UnknownCommand or InvalidInput otherwise."""
    if len(payload) < HEADER_SIZE + 2:
        raise FrameError("payload shorter than header and command code")
    code = bytes(payload[HEADER_SIZE : HEADER_SIZE + 2]).decode("latin-1")
    spec = COMMANDS.get(code)
    if spec is None:
        raise UnknownCommand(f"unknown command {ascii(code)}")
    fields = split_fields(payload[HEADER_SIZE + 2 :])
    return Request(bytes(payload[:HEADER_SIZE]), spec, decode_fields(spec.kinds, fields))


def encode_request(header: bytes, code: str, values: Sequence[Value]) -> bytes:
    return header + code.encode("ascii") + encode_fields(values)


def encode_reply(header: bytes, code: str, error: str, values: Sequence[Value] = ()) -> bytes:
    return header + code.encode("ascii") + error.encode("ascii") + encode_fields(values)


def frame(payload: bytes) -> bytes:
    """Length prefix + payload."""
    if not 0 < len(payload) <= MAX_PAYLOAD:
        raise FrameError(f"payload must be 1..{MAX_PAYLOAD} bytes")
    return len(payload).to_bytes(2) + payload


def parse_reply(payload: bytes) -> tuple[bytes, str, str, list[bytes]]:
    """(header, response code, error code, raw fields); FrameError if malformed."""
    if len(payload) < HEADER_SIZE + 4:
        raise FrameError("reply too short")
    try:
        code = payload[HEADER_SIZE : HEADER_SIZE + 2].decode("ascii")
        error = payload[HEADER_SIZE + 2 : HEADER_SIZE + 4].decode("ascii")
        return payload[:HEADER_SIZE], code, error, split_fields(payload[HEADER_SIZE + 4 :])
    except (UnicodeDecodeError, InvalidInput):
        raise FrameError("malformed reply") from None


class FrameDecoder:
    """Splits a byte stream into payloads; a length prefix above the maximum ends the stream."""

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self._buf = bytearray()
        self._max = max_payload
        self.error: FrameError | None = None

    @property
    def pending(self) -> bool:
        """True while part of a frame is buffered."""
        return bool(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """The complete payloads now available (b"" for a zero-length frame). After an oversized length
        prefix, `error` is set, the payloads before it are still returned and all later input is ignored."""
        if self.error is not None:
            return []
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        while len(buf) - pos >= 2:
            n = int.from_bytes(buf[pos : pos + 2])
            if n > self._max:
                self.error = FrameError(f"frame length {n} above {self._max}")
                buf.clear()
                return out
            if len(buf) - pos - 2 < n:
                break
            out.append(bytes(buf[pos + 2 : pos + 2 + n]))
            pos += 2 + n
        del buf[:pos]
        return out


# ---- key info on the wire ---------------------------------------------------------------------------------
def key_info_fields(info: KeyInfo) -> list[Value]:
    return [info.label, info.version, info.key_type.value, info.suite.value, info.kcv, info.div_rule,
            repr(info.created)]


KEY_INFO_SIZE = 7


def key_info_from(fields: Sequence[bytes]) -> KeyInfo:
    try:
        label, version, kt, suite, kcv, rule, created = fields
        return KeyInfo(label.decode(), int(version), KeyType(kt.decode()), Suite(suite.decode()), kcv,
                       rule.decode(), float(created))
    except ValueError:
        raise FrameError("malformed key info") from None
