"""The HSM serves only its clients (issue 12, finding 4: "any local process can generate a new PVK version,
delete a key with all its versions, compute cryptograms or session MACs for any card").

A client without a credential, with an unknown id, with another client's id, a guessed or revoked key, or
replaying, reordering or altering frames is refused with error 40 before any command runs, the connection is
closed, the refusal is audited, and the key store is unchanged. A client also refuses a reply that does not
verify (a forged "PIN verified"). No key appears in a log, the audit trail or an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import socket
import threading
from collections.abc import Iterator

import pytest

from hsm_client.auth import TAG_SIZE, Credential
from hsm_client.client import HsmClient
from hsm_client.errors import AuthenticationFailed, HsmError, RateLimited, VerificationFailed
from hsm_client.wire import HEADER_SIZE, encode_request, parse_reply
from hsm_mock.access import AccessPolicy
from hsm_mock.commands import LocalHsm
from hsm_mock.keystore import Lmk
from hsm_mock.server import ServerThread
from tests.hsm_mock.conftest import RawSession, raw_connect, read_payload, recv_exact
from tests.security.conftest import CARD_ID, PAN, FakeClock, ForgedSession, key_versions

# The finding's attacks, as a process on the same host sent them: plain host commands.
ATTACKS = [
    encode_request(b"ATK1", "KA", ["SSSE-SM4-PVK", "PVK", "SM4", ""]),  # a new PVK version: every PIN check fails
    encode_request(b"ATK2", "KG", ["SSSE-SM4-PVK"]),  # delete a key with all its versions
    encode_request(b"ATK3", "EA", ["SSSE-SM4-EAK", CARD_ID, bytes(16)]),  # a card's ext-auth cryptogram
    encode_request(b"ATK4", "ME", ["SSSE-SM4-MAK_DF04", CARD_ID, bytes(8), b"\x04\xdc\x01\x0c\x0b", 4]),  # a MAC
    encode_request(b"ATK5", "BA", ["SSSE-SM4-PIK", "123456", PAN]),  # the PIN oracle
]


def closed(sock: socket.socket) -> bool:
    sock.settimeout(5)
    return sock.recv(1) == b""


def test_a_client_without_a_credential_is_refused_and_changes_nothing(hsm: LocalHsm, server: ServerThread) -> None:
    before = key_versions(hsm)
    for payload in ATTACKS:
        with RawSession(server.address, None) as attacker:
            header, code, error, fields = attacker.roundtrip(payload)
            assert (header, error) == (payload[:HEADER_SIZE], "40"), (payload[:6], error)
            assert b"open a session (A0) with a client credential" in fields[0]
            assert closed(attacker.sock)
    assert key_versions(hsm) == before
    refused = hsm.audit.entries(command="auth")
    assert [(e.result, e.client) for e in refused] == [("40", "")] * len(ATTACKS)
    assert not [e for e in hsm.audit.entries() if e.command != "auth" and e.client != "local"]  # none ran
    with pytest.raises(AuthenticationFailed), HsmClient(*server.address, timeout=5) as anonymous:
        anonymous.ping()


@pytest.mark.parametrize("claim, key_of", [
    ("T0009", "T0001"),  # an id not in the client list
    ("T0002", "T0001"),  # another terminal's id with this terminal's key
    ("ops", "T0001"),  # the console's id with a terminal's key: key management
    ("ops", None),  # the console's id with a guessed key
])
def test_another_clients_id_or_a_guessed_key_is_refused(claim: str, key_of: str | None, hsm: LocalHsm,
                                                        server: ServerThread, access: AccessPolicy) -> None:
    key = access.credential(key_of).key if key_of else hashlib.sha256(b"a guess").digest()
    before = key_versions(hsm)
    # A polite client with that credential notices at the opening: the HSM's answer does not verify.
    with pytest.raises(AuthenticationFailed) as err, \
            HsmClient(*server.address, credential=Credential(claim, key), timeout=5) as client:
        client.generate_key("SSSE-SM4-PVK", "PVK", "SM4")
    assert claim not in access.clients or "does not verify" in str(err.value)
    # A hostile one that ignores it and tags its frames anyway is refused by the HSM.
    if claim in access.clients:
        for payload in ATTACKS:
            with ForgedSession(server.address, claim, key) as forger:
                assert forger.roundtrip(payload)[2] == "40"
                assert closed(forger.sock)
    assert key_versions(hsm) == before
    assert {e.command for e in hsm.audit.entries() if e.client != "local"} <= {"auth"}


def test_replayed_reordered_and_altered_frames_are_refused(hsm: LocalHsm, server: ServerThread,
                                                           access: AccessPolicy) -> None:
    ops = access.credential("ops")
    generate = encode_request(b"GEN1", "KA", ["replay.mak", "MAK", "3DES", ""])
    with RawSession(server.address, ops) as console:  # the console's real session, recorded on the wire
        opening = console.opening
        sent = console.send(generate)
        assert console.reply()[2] == "00"
        console.sock.sendall(sent)  # the same frame again, on the same connection
        assert console.reply()[2] == "40" and closed(console.sock)
    with RawSession(server.address, ops) as other:  # on another connection, after its own opening
        other.sock.sendall(sent)
        assert other.reply()[2] == "40" and closed(other.sock)
    with raw_connect(server.address) as replay:  # the whole recorded conversation, byte for byte
        replay.sendall(opening + sent)
        read_payload(replay)  # a fresh answer: a new HSM nonce, so the recorded frame's tag is stale
        assert parse_reply(read_payload(replay)[:-TAG_SIZE])[2] == "40" and closed(replay)
    with RawSession(server.address, ops) as console:  # two frames swapped
        first = console.channel.seal(encode_request(b"ORD1", "KE", [""]))
        second = console.channel.seal(encode_request(b"ORD2", "KE", [""]))
        console.sock.sendall(len(second).to_bytes(2) + second + len(first).to_bytes(2) + first)
        assert console.reply()[2] == "40" and closed(console.sock)
    with RawSession(server.address, ops) as console:  # one bit flipped: delete becomes... nothing
        sealed = bytearray(console.channel.seal(encode_request(b"ALT1", "KG", ["replay.mak@2"])))
        sealed[-TAG_SIZE - 1] ^= 0x01  # "@2" -> "@3"
        console.sock.sendall(len(sealed).to_bytes(2) + sealed)
        assert console.reply()[2] == "40" and closed(console.sock)
    assert [k.version for k in hsm.keystore.list("replay.mak")] == [1]  # generated once, deleted never
    assert [e.result for e in hsm.audit.entries(command="auth")] == ["40"] * 5


@pytest.fixture
def forging_proxy(server: ServerThread) -> Iterator[tuple[str, int]]:
    """A man in the middle that turns the HSM's answer to verify_pin from "01" (not verified) into "00"."""
    lsock = socket.create_server(("127.0.0.1", 0))
    lsock.settimeout(10)
    threads: list[threading.Thread] = []

    def pipe(src: socket.socket, dst: socket.socket, forge: bool) -> None:
        try:
            while True:
                size = recv_exact(src, 2)
                payload = bytearray(recv_exact(src, int.from_bytes(size)))
                if forge and payload[HEADER_SIZE : HEADER_SIZE + 4] == b"PD01":
                    payload[HEADER_SIZE + 2 : HEADER_SIZE + 4] = b"00"
                dst.sendall(size + bytes(payload))
        except OSError:
            pass
        finally:  # shutdown, not only close: it wakes the other direction's thread blocked reading dst
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_RDWR)
            dst.close()

    def accept() -> None:
        try:
            client, _ = lsock.accept()
        except OSError:
            return
        upstream = socket.create_connection(server.address)
        for src, dst, forge in ((client, upstream, False), (upstream, client, True)):
            t = threading.Thread(target=pipe, args=(src, dst, forge), daemon=True)
            t.start()
            threads.append(t)

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    yield lsock.getsockname()[:2]
    lsock.close()
    acceptor.join(10)
    for t in threads:
        t.join(10)


def test_a_forged_reply_is_refused_by_the_client(forging_proxy: tuple[str, int], hsm: LocalHsm,
                                                 access: AccessPolicy) -> None:
    """A wrong PIN that a man in the middle reports as verified: the settlement service must not believe it."""
    block = hsm.encrypt_pin("SSSE-SM4-PIK", "654321", PAN)
    reference = hsm.pin_reference("SSSE-SM4-PIK", "SSSE-SM4-PVK", hsm.encrypt_pin("SSSE-SM4-PIK", "123456", PAN), PAN)
    with HsmClient(*forging_proxy, credential=access.credential("centre"), timeout=5, retries=0) as centre, \
            pytest.raises(AuthenticationFailed, match="does not verify"):
        centre.verify_pin("SSSE-SM4-PIK", "SSSE-SM4-PVK", block, PAN, reference)
    with pytest.raises(VerificationFailed):  # what the HSM really said
        hsm.verify_pin("SSSE-SM4-PIK", "SSSE-SM4-PVK", block, PAN, reference)


def test_no_key_or_pin_in_logs_audit_or_errors(hsm: LocalHsm, server: ServerThread, access: AccessPolicy,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    creds = [access.credential(c) for c in access.clients]
    for cred in creds:  # each client at work, and each with a wrong key
        with HsmClient(*server.address, credential=cred, timeout=5) as client:
            client.ping()
        with HsmClient(*server.address, credential=Credential(cred.client, hashlib.sha256(cred.key).digest()),
                       timeout=5) as wrong:
            with pytest.raises(AuthenticationFailed) as e:
                wrong.ping()
            errors.append(str(e.value))
        errors.append(repr(cred))
    with HsmClient(*server.address, credential=access.credential("T0001"), timeout=5) as terminal:
        for _ in range(12):  # over the rate limit: refusals and an alarm
            try:
                terminal.encrypt_pin("SSSE-SM4-PIK", "123456", PAN)
            except RateLimited as e:
                errors.append(str(e))
        with pytest.raises(HsmError) as e:
            terminal.delete_key("SSSE-SM4-PVK")
        errors.append(str(e.value))
    assert any("ALARM" in r.getMessage() for r in caplog.records)
    text = "\n".join([caplog.text, *errors, repr(hsm.audit.entries())])
    for cred in creds:
        assert cred.key.hex() not in text.lower()
    assert "123456" not in text and PAN not in text


def test_a_revoked_credential_is_refused(hsm: LocalHsm, lmk: Lmk, access: AccessPolicy, clock: FakeClock) -> None:
    """Raising a client's generation in the client list revokes the credential issued before it."""
    old = access.credential("T0001")
    revoked = AccessPolicy.from_dict({"clients": {"T0001": {"role": "terminal", "generation": 2}}}, lmk)
    new = revoked.credential("T0001")
    assert new.key != old.key
    with ServerThread(hsm, access=revoked, clock=clock) as server:
        with HsmClient(*server.address, credential=old, timeout=5) as client, \
                pytest.raises(AuthenticationFailed, match="does not verify"):
            client.ping()
        with HsmClient(*server.address, credential=new, timeout=5) as client:
            assert client.ping()
