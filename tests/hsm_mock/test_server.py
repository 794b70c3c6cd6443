"""The TCP server and client: one interface, concurrency with malformed frames, reconnection, timeouts.
(Hostile clients without credentials, with the wrong roles or too many connections: tests/security/.)"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from hsm_client.api import HsmApi
from hsm_client.auth import Credential
from hsm_client.client import HsmClient
from hsm_client.errors import HsmUnavailable, InvalidInput, KeyNotFound, VerificationFailed, WrongKeyType
from hsm_client.wire import MAX_PAYLOAD, encode_request
from hsm_mock.access import AccessPolicy
from hsm_mock.commands import LocalHsm
from hsm_mock.pinblock import encode_format0
from hsm_mock.server import ServerThread
from hsm_mock.suites import DES3
from tests.hsm_mock.conftest import CARD_ID, TEST_KEYS, RawSession, raw_connect

h = bytes.fromhex


def test_client_matches_local(hsm: LocalHsm, client: HsmClient) -> None:
    """Every HsmApi method gives the same answer over TCP as in process."""
    assert isinstance(client, HsmApi)
    assert client.ping() == hsm.ping()
    challenge, msg = bytes(range(8)), b"\x04\xdc\x01\x0c\x07\x01\x01A" + b"1234"
    for mk in ("mk.ea.3des", "mk.ea.sm4"):
        assert client.diversify(mk, CARD_ID) == hsm.diversify(mk, CARD_ID)
    wrapped = client.diversify("mk.ea.3des", CARD_ID, "kek.3des")
    assert wrapped == hsm.diversify("mk.ea.3des", CARD_ID, "kek.3des")
    crypt = client.ext_auth_cryptogram("mk.ea.3des", CARD_ID, challenge)
    assert crypt == hsm.ext_auth_cryptogram("mk.ea.3des", CARD_ID, challenge)
    client.verify_ext_auth("mk.ea.3des", CARD_ID, challenge, crypt)
    client.verify_int_auth("mk.ea.3des", CARD_ID, challenge, crypt)
    mac = client.session_mac("mk.mt.3des", CARD_ID, challenge, msg)
    assert mac == hsm.session_mac("mk.mt.3des", CARD_ID, challenge, msg)
    client.verify_session_mac("mk.mt.3des", CARD_ID, challenge, msg, mac)
    mac = client.generate_mac("mak.sm4", b"data", bytes(16), 8)
    assert mac == hsm.generate_mac("mak.sm4", b"data", bytes(16), 8)
    client.verify_mac("mak.sm4", b"data", mac, bytes(16))
    pan = "4000001234562"
    block = DES3.encrypt(h(TEST_KEYS["pik.3des"][2]), encode_format0("1234", pan))
    ref = client.pin_reference("pik.3des", "pvk.3des", block, pan)
    assert ref == hsm.pin_reference("pik.3des", "pvk.3des", block, pan)
    client.verify_pin("pik.3des", "pvk.3des", block, pan, ref)
    assert client.translate_pin("pik.3des", "pik2.3des", block, pan) == hsm.translate_pin(
        "pik.3des", "pik2.3des", block, pan)
    for pik in ("pik.3des", "pik.sm4"):  # encrypt a clear PIN (BA): ECB, so the same block either way
        assert client.encrypt_pin(pik, "1234", pan) == hsm.encrypt_pin(pik, "1234", pan)
    assert client.encrypt_pin("pik.3des", "1234", pan) == block
    client.verify_pin("pik.sm4", "pvk.3des", client.encrypt_pin("pik.sm4", "1234", pan), pan, ref)
    info = client.generate_key("new.kek", "KEK", "SM4")
    assert hsm.keystore.get("new.kek") == info
    assert client.list_keys("new.") == [info]
    clear = bytes(range(16))
    kek_clear = h(TEST_KEYS["kek.3des"][2])
    under_kek = DES3.encrypt(kek_clear, clear)
    imported = client.import_key("imp", "MAK", "3DES", "kek.3des", under_kek, DES3.kcv(clear))
    assert imported.kcv == DES3.kcv(clear)
    assert client.delete_key("new.kek") == 1 and client.delete_key("imp@1") == 1
    assert [i.label for i in client.list_keys()] == sorted(TEST_KEYS)


def test_client_raises_the_same_errors(client: HsmClient) -> None:
    with pytest.raises(VerificationFailed):
        client.verify_mac("mak.3des", b"data", bytes(4))
    with pytest.raises(WrongKeyType):
        client.generate_mac("pik.3des", b"data")
    with pytest.raises(KeyNotFound):
        client.generate_mac("missing", b"data")
    with pytest.raises(InvalidInput):
        client.generate_mac("mak.3des", b"data", b"iv-longer-than-a-block")
    with pytest.raises(InvalidInput):
        client.generate_mac("bad label", b"data")
    with pytest.raises(InvalidInput) as e:
        client.encrypt_pin("pik.sm4", "98765", "4000001234562X")
    assert "98765" not in str(e.value)
    with pytest.raises(WrongKeyType):
        client.encrypt_pin("pvk.sm4", "98765", "4000001234562")
    assert client.ping()  # the connection is still fine after errors


def test_concurrent_clients_with_malformed_frames(hsm: LocalHsm, server: ServerThread, access: AccessPolicy) -> None:
    """Eight sessions at once, each mixing good requests with malformed ones (well tagged: the client is who
    it says, its requests are wrong): each malformed one gets its error and the session goes on."""
    data = b"\x04\xdc\x01\x0c\x05hello"
    mac = hsm.generate_mac("mak.3des", data)
    bad_frames = [
        (b"HDR0QQ", "QR", "68"),  # unknown command
        (b"HDR0MC\x00\x08mak", "MD", "15"),  # truncated field
        (encode_request(b"HDR0", "MC", ["mak.3des", data]), "MD", "15"),  # missing fields
        (encode_request(b"HDR0", "MC", ["mak.3des", data, mac, b"", b"x"]), "MD", "15"),  # extra
        (b"HD", "ZZ", "80"),  # shorter than a header
        (b"", "ZZ", "80"),  # empty payload
        (encode_request(b"HDR0", "MA", ["mak.3des", data, b"", "x4"]), "MB", "15"),  # bad integer
    ]
    credential = access.credential("all")
    errors: list[str] = []
    counts = {"good": 0, "bad": 0}
    lock = threading.Lock()

    def worker(n: int) -> None:
        try:
            with RawSession(server.address, credential) as session:
                for i in range(60):
                    header = f"{n:02d}{i:02d}".encode()
                    if i % 4 == 3:
                        payload, code, err = bad_frames[(n + i) % len(bad_frames)]
                        _, rcode, rerr, fields = session.roundtrip(payload)
                        ok = (rcode, rerr) == (code, err) and len(fields) == 1
                        kind = "bad"
                    else:
                        good = i % 2 == 0
                        req = encode_request(header, "MC", ["mak.3des", data, mac if good else bytes(4), b""])
                        rheader, rcode, rerr, fields = session.roundtrip(req)
                        ok = (rheader, rcode, rerr, fields) == (header, "MD", "00" if good else "01",
                                                               [] if good else fields)
                        kind = "good"
                    with lock:
                        counts[kind] += 1
                    if not ok:
                        errors.append(f"worker {n} request {i}: {rcode} {rerr}")
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(f"worker {n}: {exc!r}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors[:5]
    assert counts == {"good": 8 * 45, "bad": 8 * 15}
    with HsmClient(*server.address, credential=credential) as c:  # still up
        c.verify_mac("mak.3des", data, mac)


def test_oversized_frame_gets_error_and_close(server: ServerThread, access: AccessPolicy) -> None:
    credential = access.credential("all")
    with RawSession(server.address, credential) as session:
        # A good request and an oversized prefix in one write: the first is answered, then the error.
        good = session.channel.seal(encode_request(b"GOOD", "NC", []))
        session.sock.sendall(len(good).to_bytes(2) + good + (MAX_PAYLOAD + 1).to_bytes(2) + b"x" * 10)
        assert session.reply()[:3] == (b"GOOD", "ND", "00")
        assert session.reply()[1:3] == ("ZZ", "80")
        assert session.sock.recv(10) == b""  # closed by the server
    with RawSession(server.address, credential) as session:
        assert session.roundtrip(encode_request(b"GOOD", "NC", []))[2] == "00"


def test_audit_records_bad_frames(hsm: LocalHsm, server: ServerThread, access: AccessPolicy) -> None:
    with RawSession(server.address, access.credential("all")) as session:
        session.roundtrip(b"HDR0QQ")
    assert [(e.command, e.result, e.client) for e in hsm.audit.entries()] == [("frame", "68", "all")]


# ---- client resilience ------------------------------------------------------------------------------------
def test_client_reconnects_after_server_restart(hsm: LocalHsm, access: AccessPolicy) -> None:
    srv = ServerThread(hsm, access=access).start()
    host, port = srv.address
    client = HsmClient(host, port, credential=access.credential("all"), timeout=2)
    assert client.ping()
    srv.stop()  # drops the pooled connection
    srv = ServerThread(hsm, host, port, access=access).start()
    try:
        assert client.ping()  # retried on a fresh connection
        assert client.generate_key("after.restart", "MAK", "SM4").version == 1  # stale check, no retry
    finally:
        client.close()
        srv.stop()


@pytest.fixture
def silent_server() -> Iterator[tuple[tuple[str, int], list[int]]]:
    """Accepts, reads, never answers; counts connections."""
    lsock = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []
    conns: list[socket.socket] = []
    stop = threading.Event()

    def loop() -> None:
        lsock.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except TimeoutError:
                continue
            accepted.append(1)
            conns.append(conn)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    yield lsock.getsockname()[:2], accepted
    stop.set()
    t.join()
    for c in conns:
        c.close()
    lsock.close()


def test_client_timeout_and_retry_policy(silent_server: tuple[tuple[str, int], list[int]]) -> None:
    address, accepted = silent_server
    client = HsmClient(*address, credential=Credential("T0001", bytes(32)), timeout=0.3, retries=1)
    t0 = time.monotonic()
    with pytest.raises(HsmUnavailable):
        client.verify_mac("mak", b"x", bytes(4))
    assert time.monotonic() - t0 < 2
    assert len(accepted) == 2  # one retry for a verification
    with pytest.raises(HsmUnavailable):
        client.generate_key("k", "MAK", "SM4")
    assert len(accepted) == 3  # no retry for a key change
    client.close()


def test_client_without_server() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(HsmUnavailable):
        HsmClient("127.0.0.1", port, timeout=0.5).ping()


def test_random_garbage_streams_do_not_hurt_the_server(server: ServerThread, access: AccessPolicy) -> None:
    rng = random.Random(3)
    for _ in range(20):
        with raw_connect(server.address) as sock:
            sock.settimeout(2)
            garbage = rng.randbytes(rng.randint(1, 3000))
            sock.sendall(garbage)
            sock.shutdown(socket.SHUT_WR)
            replies = b""
            while chunk := sock.recv(65536):  # error 40 to a first frame that opens no session, and closed
                replies += chunk
    with HsmClient(*server.address, credential=access.credential("all")) as c:
        assert c.ping()
