"""Fixtures: an HSM with known test keys (loaded as clear components, as at a key ceremony)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from hsm_client.auth import NONCE_SIZE, Channel, Credential, client_channel, hello
from hsm_client.client import HsmClient
from hsm_client.wire import frame, parse_reply
from hsm_mock.access import AccessPolicy
from hsm_mock.commands import LocalHsm
from hsm_mock.keystore import KeyStore, Lmk
from hsm_mock.server import ServerThread
from hsm_mock.suites import get_suite

# Test keys (never real ones). Loaded from two components, the second all zero, so the key is the first.
TEST_KEYS = {
    # label: (type, suite, clear key hex)
    "mk.ea.3des": ("MK", "3DES", "0123456789ABCDEFFEDCBA9876543210"),
    "mk.ia.3des": ("MK", "3DES", "1111111111111111222222222222222F"),
    "mk.mt.3des": ("MK", "3DES", "404142434445464748494A4B4C4D4E4F"),
    "mk.ea.sm4": ("MK", "SM4", "0123456789ABCDEFFEDCBA9876543210"),
    "mk.mt.sm4": ("MK", "SM4", "00112233445566778899AABBCCDDEEFF"),
    "mak.3des": ("MAK", "3DES", "7962D9ECE03D1ACD4C76089DCE131543"),
    "mak.sm4": ("MAK", "SM4", "F1CB1F1FB5ADF208806B89DC579DC1F8"),
    "pik.3des": ("PIK", "3DES", "A1A2A3A4A5A6A7A8B1B2B3B4B5B6B7B8"),
    "pik2.3des": ("PIK", "3DES", "C1C2C3C4C5C6C7C8D1D2D3D4D5D6D7D8"),
    "pik.sm4": ("PIK", "SM4", "0F0E0D0C0B0A09080706050403020100"),
    "pvk.3des": ("PVK", "3DES", "E1E2E3E4E5E6E7E8F1F2F3F4F5F6F7F8"),
    "pvk.sm4": ("PVK", "SM4", "E1E2E3E4E5E6E7E8F1F2F3F4F5F6F7F8"),
    "kek.3des": ("KEK", "3DES", "2B7E151628AED2A6ABF7158809CF4F3C"),
    "kek.sm4": ("KEK", "SM4", "2B7E151628AED2A6ABF7158809CF4F3C"),
}

CARD_ID = bytes.fromhex("110100D156000005" "0000000012345678")  # region 110100, RID, serial


def load_test_keys(store: KeyStore) -> None:
    for label, (kt, suite, hexkey) in TEST_KEYS.items():
        key = bytes.fromhex(hexkey)
        store.load_components(label, kt, suite, [key, bytes(16)], get_suite(suite).kcv(key))


@pytest.fixture
def lmk() -> Lmk:
    return Lmk.ephemeral()


@pytest.fixture
def access(lmk: Lmk) -> AccessPolicy:
    """One client with every role ("all"), so protocol tests can reach every command; roles are tested in
    tests/security/test_hsm_roles.py."""
    return AccessPolicy.from_dict({"clients": {"all": {"roles": ["terminal", "settlement", "console"]}}}, lmk)


@pytest.fixture
def hsm(lmk: Lmk) -> Iterator[LocalHsm]:
    store = KeyStore(lmk)
    load_test_keys(store)
    local = LocalHsm(store)
    yield local
    local.close()


@pytest.fixture
def server(hsm: LocalHsm, access: AccessPolicy) -> Iterator[ServerThread]:
    with ServerThread(hsm, access=access) as srv:
        yield srv


@pytest.fixture
def client(server: ServerThread, access: AccessPolicy) -> Iterator[HsmClient]:
    with HsmClient(*server.address, credential=access.credential("all"), timeout=5.0) as c:
        yield c


# ---- raw sockets, for frames no polite client sends -------------------------------------------------------
def raw_connect(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address, timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def read_payload(sock: socket.socket) -> bytes:
    return recv_exact(sock, int.from_bytes(recv_exact(sock, 2)))


class RawSession:
    """A raw socket with an open session (`hsm_client.auth`): `roundtrip(payload)` seals a payload, sends it
    and opens the reply; `sock` and `channel` for anything else."""

    def __init__(self, address: tuple[str, int], credential: Credential | None) -> None:
        self.sock = raw_connect(address)
        self.channel: Channel | None = None
        self.opening = b""  # the opening frame as sent (to replay it)
        if credential is not None:
            nonce = os.urandom(NONCE_SIZE)
            self.opening = frame(hello(credential, nonce))
            self.sock.sendall(self.opening)
            self.channel = client_channel(credential, nonce, read_payload(self.sock))

    def send(self, payload: bytes) -> bytes:
        """Seal and send one payload; returns the frame as sent (to replay it)."""
        sealed = payload if self.channel is None else self.channel.seal(payload)
        data = len(sealed).to_bytes(2) + sealed
        self.sock.sendall(data)
        return data

    def reply(self) -> tuple[bytes, str, str, list[bytes]]:
        payload = read_payload(self.sock)
        return parse_reply(payload if self.channel is None else self.channel.open(payload))

    def roundtrip(self, payload: bytes) -> tuple[bytes, str, str, list[bytes]]:
        self.send(payload)
        return self.reply()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
