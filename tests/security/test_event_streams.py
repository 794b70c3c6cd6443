"""Issue 12, finding 6: each `/v1/readers/events` stream held a worker thread; with 150 streams open a
settlement took 46 s, `/health` 30 s, and SIGTERM did not stop the daemon.

The daemon runs as `sscard terminal serve` in its own process (as an operator runs it), with 150 streams open
from 19 tokens (the cap is per token): a settlement and /health still answer at once, and SIGTERM ends the
process within a second with every stream closed and the journal intact. The cap itself is tried on a daemon
in this process.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sscard.stack import Centre, Counter, listening_socket, start_centre, start_counter
from terminal.config import hash_token
from terminal.journal import CONFIRMED, Journal
from tests.terminal.conftest import LINES

STREAMS, CAP = 150, 8
TOKENS = [f"front-end-{i:02d}-token" for i in range(-(-STREAMS // CAP))]


def open_stream(port: int, token: str) -> socket.socket:
    """An event stream of the daemon on `port`, read up to its first comment (the stream is open)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET /v1/readers/events HTTP/1.1\r\nHost: counter\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    head = b""
    while b": connected" not in head:
        chunk = s.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return s


def ended(s: socket.socket) -> bool:
    """Whether the server ended the stream (the chunked body's last chunk, then EOF)."""
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data.endswith(b"0\r\n\r\n") or data == b""


@pytest.fixture(scope="module")
def centre(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Centre]:
    c = start_centre(tmp_path_factory.mktemp("centre"))
    yield c
    c.stop()


def test_150_streams_hold_no_thread_and_sigterm_stops_the_daemon_within_a_second(tmp_path: Path, centre: Centre):
    journal = tmp_path / "journal.db"
    cfg = tmp_path / "terminal.toml"
    cfg.write_text(f"""
[terminal]
id = "T0001"
institution = "H11000301"
region = "110000"
journal = "{journal}"
[readers]
user_card = "memory:zhang_san"
psam = "memory:psam"
[settlement]
url = "{centre.service.url}"
timeout = 3.0
[auth]
tokens_sha256 = {[hash_token(t) for t in TOKENS]!r}
max_event_streams = {CAP}
""".replace("'", '"'))
    env = dict(os.environ, SSCARD_TERMINAL_KEY=centre.terminal_keys["T0001"])
    log = tmp_path / "daemon.log"
    with listening_socket() as sock, open(log, "wb") as console:
        port = sock.getsockname()[1]
        proc = subprocess.Popen([sys.executable, "-m", "sscard.cli", "terminal", "serve", "--config", str(cfg),
                                 "--fd", str(sock.fileno())], env=env, pass_fds=[sock.fileno()],
                                stdout=console, stderr=subprocess.STDOUT)
    streams: list[socket.socket] = []
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        streams = [open_stream(port, TOKENS[i // CAP]) for i in range(STREAMS)]
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKENS[0]}"}, timeout=60) as api:
            t0 = time.monotonic()
            assert api.get("/health").status_code == 200
            health = time.monotonic() - t0
            t0 = time.monotonic()
            visit = api.post("/v1/visits", json={"care": "outpatient"})
            assert visit.status_code == 200, visit.text
            settled = api.post(f"/v1/visits/{visit.json()['mdtrt_id']}/settle", json={"lines": LINES, "pin": "123456"})
            assert settled.status_code == 200, settled.text
            settlement = time.monotonic() - t0
        print(f"with {STREAMS} streams open: /health {health * 1e3:.0f} ms, register + settle {settlement:.2f} s")
        assert health < 2 and settlement < 5  # on main before the fix: 30 s and 46 s
        t0 = time.monotonic()
        proc.terminate()
        proc.wait(timeout=30)
        stopped = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = log.read_text()
    print(f"SIGTERM to exit: {stopped * 1e3:.0f} ms")
    assert proc.returncode == 0 and "Traceback" not in out, out[-3000:]
    assert stopped < 1.0, out[-3000:]  # on main before the fix it did not stop
    for s in streams:
        s.settimeout(5)
        assert ended(s)
        s.close()
    with sqlite3.connect(journal) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    j = Journal(str(journal), "T0001")
    try:
        states = {e.kind: e.state for e in j.all()}
        assert states["settle"] == CONFIRMED and set(states.values()) == {CONFIRMED}, states
    finally:
        j.close()


@pytest.fixture
def counter(centre: Centre) -> Iterator[Counter]:
    k = start_counter(centre)
    k.http.server.config.app.state.event_streams.max_per_client = 2  # [auth] max_event_streams = 2
    yield k
    k.stop()


def test_streams_are_capped_per_token_and_give_their_place_back(counter: Counter):
    port = counter.http.port
    streams = counter.http.server.config.app.state.event_streams
    first = [open_stream(port, counter.token) for _ in range(2)]
    with httpx.Client(base_url=counter.url, headers=counter.headers(), timeout=10) as api:
        r = api.get("/v1/readers/events", params={"timeout": 0})
        assert (r.status_code, r.json()["code"], r.json()["details"]) == (429, "TOO_MANY_STREAMS", {"limit": 2})
        token = api.post("/v1/readers/events/token", json={}).json()["token"]  # asked for by the same token
        r = httpx.get(f"{counter.url}/v1/readers/events", params={"access_token": token, "timeout": 0})
        assert r.status_code == 429
        first[0].close()
        deadline = time.monotonic() + 10  # the server notices the closed connection, then frees its place
        while streams.count() > 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert api.get("/v1/readers/events", params={"timeout": 0}).status_code == 200
    first[1].close()
