"""Operator commands' output (`wide_console`), and hostile clients of the mock HSM (issue 12, finding 4): a
server with the issuer's keys and a client list (two terminals, the settlement service, the console), small
limits, and a clock the tests move (the server's sweep of timeouts is run by the test, so nothing waits for the
wall clock)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from hsm_client.auth import HELLO_REPLY, NONCE_SIZE, TAG_SIZE, Channel, Credential, hello, session_keys
from hsm_client.client import HsmClient
from hsm_client.wire import frame, parse_reply
from hsm_mock import KeyStore, Lmk, LocalHsm
from hsm_mock.access import AccessPolicy
from hsm_mock.server import ServerThread
from sim.issuer import DEFAULT_ISSUER, install_into_hsm
from tests.hsm_mock.conftest import RawSession, raw_connect, read_payload
from tests.security import centre as hostile_terminals


@pytest.fixture
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Operator tables as wide as their keys (CliRunner's terminal is 80 columns: rich would fold them)."""
    from sscard.ops_cmd import console

    monkeypatch.setattr(console, "width", 220)


LIMITS = {"max_connections": 24, "max_connections_per_client": 4, "idle_timeout": 30.0, "frame_timeout": 2.0}
centre, make_store, store, store_kind = (hostile_terminals.centre, hostile_terminals.make_store,
                                         hostile_terminals.store, hostile_terminals.store_kind)  # their fixtures
CLIENTS = {"T0001": "terminal", "T0002": "terminal", "centre": "settlement", "ops": "console"}
CARD_ID = bytes.fromhex("110100D156000005" "0000000012345678")
PAN = "4000001234562"


class FakeClock:
    """The server's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def lmk() -> Lmk:
    return Lmk.ephemeral()


@pytest.fixture
def hsm(lmk: Lmk) -> Iterator[LocalHsm]:
    store = KeyStore(lmk)
    local = LocalHsm(store)
    install_into_hsm(DEFAULT_ISSUER, local, lambda *a: store.load_components(a[0], "KEK", *a[1:]))
    yield local
    local.close()


@pytest.fixture
def access(lmk: Lmk) -> AccessPolicy:
    return AccessPolicy.from_dict({"server": LIMITS, "clients": {c: {"role": r} for c, r in CLIENTS.items()}}, lmk)


@pytest.fixture
def server(hsm: LocalHsm, access: AccessPolicy, clock: FakeClock) -> Iterator[ServerThread]:
    with ServerThread(hsm, access=access, clock=clock) as srv:
        yield srv


@pytest.fixture
def connect(server: ServerThread, access: AccessPolicy) -> Iterator[Callable[..., HsmClient]]:
    """`connect("T0001")`: an HsmClient with that client's credential (closed after the test)."""
    made: list[HsmClient] = []

    def make(who: str, **kw: object) -> HsmClient:
        client = HsmClient(*server.address, credential=access.credential(who), timeout=5.0, **kw)  # type: ignore[arg-type]
        made.append(client)
        return client

    yield make
    for c in made:
        c.close()


def key_versions(hsm: LocalHsm) -> list[tuple[str, int, bytes]]:
    return [(k.label, k.version, k.kcv) for k in hsm.keystore.list()]


class ForgedSession(RawSession):
    """A hostile client that claims `client` with a key of its choosing and ignores that the HSM's answer does
    not verify: it derives its session keys anyway and tags its frames with them."""

    def __init__(self, address: tuple[str, int], client: str, key: bytes) -> None:
        self.sock = raw_connect(address)
        nonce = os.urandom(NONCE_SIZE)
        self.sock.sendall(frame(hello(Credential(client, key), nonce)))
        answer = read_payload(self.sock)
        _, code, error, fields = parse_reply(answer[:-TAG_SIZE])
        assert (code, error) == (HELLO_REPLY, "00"), (code, error)
        c2s, s2c = session_keys(key, nonce, fields[0])
        self.channel = Channel(c2s, s2c)

    def reply(self) -> tuple[bytes, str, str, list[bytes]]:
        """The HSM's reply, read without checking its tag (a forger cannot)."""
        return parse_reply(read_payload(self.sock)[:-TAG_SIZE])
