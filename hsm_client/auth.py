"""Client authentication on the host-command link: a key per client, a session per connection, a tag on
every frame (the HSM's side is `hsm_mock.access` and `hsm_mock.server`).

Each client of the HSM (a terminal, the settlement service, an operator's console) holds a `Credential`:
its client id and a 32-byte key (`sscard hsm clients issue`). A connection opens with one exchange:

    client -> HSM   header || "A0" || fields: protocol "1", client id s, client nonce b (16 bytes)
    HSM -> client   header || "A1" || "00" || fields: HSM nonce b (16 bytes) || tag

Both sides derive one key per direction from the client key K and both nonces:

    K_c2s = HMAC-SHA-256(K, "sscard-hsm c2s" || client nonce || HSM nonce), K_s2c the same with "s2c"

and from then on every payload, both ways, ends with a 16-byte tag:

    tag = BLAKE2b(key = K_dir, digest size 16, message = n || payload)

where n (8 bytes, big-endian) counts the frames already sent that way on this connection (the HSM's
answer to the opening is its frame 0, the client's first request is the client's frame 0). A frame
replayed, dropped, reordered, moved to another connection or altered fails its tag: the HSM answers error
40 and closes; the client drops the connection. An opening the HSM refuses (unknown client, no opening)
is answered untagged, with the error code, and the connection is closed. The tags authenticate the
frames; they do not hide them (see hsm_mock/README.md, "Client authentication").

The tag is BLAKE2b in its keyed mode (RFC 7693: a MAC by design, as WireGuard uses it), not HMAC-SHA-256,
for speed: a tag costs about 0.5 us against 1.8 us here, and a request takes four (bench/README.md, "HSM").
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from hsm_client.errors import OK, AuthenticationFailed, FrameError, HsmError, error_for_code
from hsm_client.wire import HEADER_SIZE, decode_fields, encode_reply, encode_request, parse_reply, split_fields

HELLO = "A0"  # the opening's command code
HELLO_REPLY = "A1"
PROTOCOL = "1"
KEY_SIZE = 32
NONCE_SIZE = 16
TAG_SIZE = 16
CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


class CredentialError(ValueError):
    """A credential file that is missing, unreadable or malformed; the message names the file and field."""


@dataclass(frozen=True, slots=True)
class Credential:
    """A client's id and key. The key never appears in its repr, in logs or in error messages."""

    client: str
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not CLIENT_ID.fullmatch(self.client):
            raise CredentialError(f"client id {self.client!r}: letters, digits and ._:- (at most 64)")
        if len(self.key) != KEY_SIZE:
            raise CredentialError(f"the key of client {self.client} must be {KEY_SIZE} bytes")

    @classmethod
    def load(cls, path: str | Path) -> Credential:
        """From a credential file (TOML: `client = "T0001"`, `key = "<64 hex digits>"`)."""
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except OSError as e:
            raise CredentialError(f"cannot read the HSM credential {p}: {e.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            raise CredentialError(f"{p}: not a credential file (TOML with client and key)") from None
        client, key = data.get("client"), data.get("key")
        if not isinstance(client, str) or not isinstance(key, str):
            raise CredentialError(f"{p}: a credential file holds client = \"ID\" and key = \"HEX\"")
        try:
            raw = bytes.fromhex(key)
        except ValueError:
            raise CredentialError(f"{p}: key is not hex") from None
        try:
            return cls(client, raw)
        except CredentialError as e:
            raise CredentialError(f"{p}: {e}") from None

    def save(self, path: str | Path) -> None:
        """Write a new credential file, mode 0600; an existing file is never overwritten."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"# sscard HSM client credential: keep it secret\nclient = \"{self.client}\"\n"
                    f"key = \"{self.key.hex()}\"\n")


class Channel:
    """One connection's session: `seal` tags what this side sends, `open` checks what it receives."""

    __slots__ = ("_send", "_recv", "_sent", "_received")

    def __init__(self, send_key: bytes, recv_key: bytes) -> None:
        self._send = hashlib.blake2b(key=send_key, digest_size=TAG_SIZE)  # keyed once, copied per frame
        self._recv = hashlib.blake2b(key=recv_key, digest_size=TAG_SIZE)
        self._sent = self._received = 0

    def seal(self, payload: bytes) -> bytes:
        mac = self._send.copy()
        mac.update(self._sent.to_bytes(8))
        mac.update(payload)
        self._sent += 1
        return payload + mac.digest()

    def open(self, data: bytes) -> bytes:
        """The payload without its tag; AuthenticationFailed if the tag does not verify."""
        payload, tag = data[:-TAG_SIZE], data[-TAG_SIZE:]
        mac = self._recv.copy()
        mac.update(self._received.to_bytes(8))
        mac.update(payload)
        if len(tag) < TAG_SIZE or not hmac.compare_digest(mac.digest(), tag):
            raise AuthenticationFailed("frame tag does not verify (replayed, reordered or altered frame)")
        self._received += 1
        return payload


def session_keys(key: bytes, client_nonce: bytes, server_nonce: bytes) -> tuple[bytes, bytes]:
    nonces = client_nonce + server_nonce
    return (hmac.digest(key, b"sscard-hsm c2s" + nonces, "sha256"),
            hmac.digest(key, b"sscard-hsm s2c" + nonces, "sha256"))


# ---- the client's side ------------------------------------------------------------------------------------
def hello(credential: Credential, nonce: bytes) -> bytes:
    """The opening request's payload."""
    return encode_request(bytes(HEADER_SIZE), HELLO, [PROTOCOL, credential.client, nonce])


def client_channel(credential: Credential, nonce: bytes, reply: bytes) -> Channel:
    """The session from the HSM's answer to the opening; the HSM's refusal as its typed error, and
    AuthenticationFailed if the answer's tag does not verify (another key, or not this HSM)."""
    if reply[HEADER_SIZE + 2 : HEADER_SIZE + 4] != OK.encode():  # refused before any session: untagged
        _, _, error, fields = parse_reply(reply)
        raise error_for_code(error, fields[0].decode("ascii", "replace") if fields else None)
    _, code, _, fields = parse_reply(reply[:-TAG_SIZE])
    if code != HELLO_REPLY or len(fields) != 1 or len(fields[0]) != NONCE_SIZE:
        raise FrameError("malformed answer to the opening")
    c2s, s2c = session_keys(credential.key, nonce, fields[0])
    channel = Channel(c2s, s2c)
    try:
        channel.open(reply)
    except AuthenticationFailed:
        raise AuthenticationFailed(f"the HSM's answer to client {credential.client} does not verify: "
                                   "a wrong credential, or not the HSM it was issued by") from None
    return channel


# ---- the HSM's side ---------------------------------------------------------------------------------------
def parse_hello(payload: bytes) -> tuple[str, bytes]:
    """(client id, client nonce) from an opening; AuthenticationFailed if the frame is not one."""
    if payload[HEADER_SIZE : HEADER_SIZE + 2] != HELLO.encode():
        raise AuthenticationFailed("the HSM authenticates its clients: open a session (A0) with a client "
                                   "credential first")
    try:
        protocol, client, nonce = decode_fields("ssb", split_fields(payload[HEADER_SIZE + 2 :]))
    except HsmError:
        raise AuthenticationFailed("malformed opening (A0: protocol, client id, nonce)") from None
    if protocol != PROTOCOL:
        raise AuthenticationFailed(f"protocol {str(protocol)[:8]!r} not supported (this HSM speaks {PROTOCOL})")
    if not isinstance(client, str) or not CLIENT_ID.fullmatch(client) or len(nonce) != NONCE_SIZE:
        raise AuthenticationFailed("malformed opening (client id or nonce)")
    return client, bytes(nonce)  # type: ignore[arg-type]


def server_channel(key: bytes, header: bytes, client_nonce: bytes, server_nonce: bytes) -> tuple[Channel, bytes]:
    """The HSM's session for a client key, and its sealed answer to the opening."""
    c2s, s2c = session_keys(key, client_nonce, server_nonce)
    channel = Channel(s2c, c2s)
    return channel, channel.seal(encode_reply(header, HELLO_REPLY, OK, [server_nonce]))
