"""Connections to the HSM are limited (issue 12, finding 4: "no connection cap, no idle timeout (9,014 open
connections accepted)"): at most max_connections in all and max_connections_per_client per client (one more
is answered 43 and closed); a connection that opens no session, or holds half a frame, for frame_timeout is
answered and closed; one idle for idle_timeout is closed. The test moves the server's clock and runs its
sweep (which the server runs by itself every quarter of the shorter timeout).
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from hsm_client.client import HsmClient
from hsm_client.errors import ConnectionLimit
from hsm_client.wire import encode_request, parse_reply
from hsm_mock.access import AccessPolicy
from hsm_mock.commands import LocalHsm
from hsm_mock.server import ServerThread
from tests.hsm_mock.conftest import RawSession, raw_connect, read_payload
from tests.security.conftest import LIMITS, FakeClock

PING = encode_request(b"PING", "NC", [])


def closed(sock: socket.socket) -> bool:
    sock.settimeout(5)
    return sock.recv(1) == b""


def test_a_connection_flood_is_capped_and_drained(hsm: LocalHsm, server: ServerThread, clock: FakeClock,
                                                  connect: Callable[..., HsmClient]) -> None:
    cap = LIMITS["max_connections"]
    flood = [raw_connect(server.address) for _ in range(cap)]
    try:
        extra = [raw_connect(server.address) for _ in range(3 * cap)]
        for sock in extra:  # every one beyond the cap: answered 43 and closed
            _, code, error, fields = parse_reply(read_payload(sock))
            assert (code, error) == ("ZZ", "43") and b"max_connections" in fields[0]
            assert closed(sock)
            sock.close()
        with pytest.raises(ConnectionLimit):  # while the flood holds every slot, nobody gets in
            connect("T0001").ping()
        clock.advance(LIMITS["frame_timeout"] + 0.1)  # the flood never opens a session
        assert server.sweep() == cap
        for sock in flood:
            _, _, error, fields = parse_reply(read_payload(sock))
            assert error == "40" and b"not authenticated within 2 s" in fields[0]
            assert closed(sock)
        assert connect("T0001").ping()
    finally:
        for sock in flood:
            sock.close()
    assert [(e.result, e.client) for e in hsm.audit.entries(command="connect")] == [("43", "")] * (3 * cap + 1)
    assert [(e.result, e.client) for e in hsm.audit.entries(command="drop")] == [("40", "")] * cap


def test_connections_per_client_are_capped(server: ServerThread, access: AccessPolicy,
                                           connect: Callable[..., HsmClient]) -> None:
    per_client = LIMITS["max_connections_per_client"]
    sessions = [RawSession(server.address, access.credential("T0001")) for _ in range(per_client + 1)]
    try:
        for s in sessions[:per_client]:
            assert s.roundtrip(PING)[2] == "00"
        refused = sessions[-1].roundtrip(PING)
        assert refused[2] == "43" and b"already has 4 connections" in refused[3][0]
        assert closed(sessions[-1].sock)
        assert connect("T0002").ping()  # other clients are not affected
    finally:
        for s in sessions:
            s.close()


def test_an_idle_connection_is_closed(server: ServerThread, access: AccessPolicy, clock: FakeClock,
                                      connect: Callable[..., HsmClient]) -> None:
    idle = LIMITS["idle_timeout"]
    with RawSession(server.address, access.credential("T0001")) as session:
        assert session.roundtrip(PING)[2] == "00"
        clock.advance(idle - 1)
        assert server.sweep() == 0 and session.roundtrip(PING)[2] == "00"  # a request: no longer idle
        clock.advance(idle - 1)
        assert server.sweep() == 0
        clock.advance(2)
        assert server.sweep() == 1 and closed(session.sock)  # closed without a word
    pooled = connect("T0001", max_idle=3600)  # keeps its idle connection: the HSM closes it
    assert pooled.ping()
    clock.advance(idle + 1)
    assert server.sweep() == 1
    assert pooled.ping()  # the pool notices and opens a new session


@pytest.mark.parametrize("in_session", [True, False], ids=["in a session", "the opening"])
def test_a_half_sent_frame_is_dropped_within_the_frame_timeout(in_session: bool, server: ServerThread,
                                                               access: AccessPolicy, clock: FakeClock) -> None:
    """Slowloris: a byte now and then keeps the connection from being idle, but never finishes the frame."""
    with RawSession(server.address, access.credential("T0001") if in_session else None) as slow:
        if in_session:
            assert slow.roundtrip(PING)[2] == "00"  # a working client first
        payload = slow.channel.seal(PING) if slow.channel else b"\x00" * 40
        data = len(payload).to_bytes(2) + payload
        slow.sock.sendall(data[:3])
        assert server.sweep() == 0
        for i in range(3, 6):  # one byte every 0.6 s: 1.8 s after the first bytes, still below the timeout
            clock.advance(0.6)
            slow.sock.sendall(data[i : i + 1])
            assert server.sweep() == 0
        clock.advance(0.3)  # 2.1 s after the frame began
        assert server.sweep() == 1
        if in_session:
            _, _, error, fields = slow.reply()
            assert error == "80" and b"frame not finished within 2 s" in fields[0]
        else:
            assert parse_reply(read_payload(slow.sock))[2] in ("80", "40")
        assert closed(slow.sock)
