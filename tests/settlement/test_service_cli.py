"""`sscard settlement serve` starts uvicorn on 127.0.0.1 with a keys file and an SQLite store."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
from typer.testing import CliRunner

from settlement.auth import hash_key
from sscard.settlement_cmd import app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_with_auth(tmp_path):
    keys = tmp_path / "keys.toml"
    keys.write_text(f'[terminal.T1]\nkey_sha256 = "{hash_key("secret")}"\n')
    port = free_port()
    cmd = [sys.executable, "-c", "from sscard.settlement_cmd import app; app()", "serve", "--db",
           str(tmp_path / "s.db"), "--keys", str(keys), "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if httpx.get(f"{url}/v1/health", timeout=0.5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            raise AssertionError("service did not start: " + proc.stdout.read().decode() if proc.stdout else "")
        assert httpx.get(f"{url}/v1/persons/X", timeout=2).json()["code"] == "UNAUTHORIZED"
        r = httpx.get(f"{url}/v1/persons/X", headers={"X-Terminal-Key": "secret"}, timeout=2)
        assert (r.status_code, r.json()["code"]) == (404, "UNKNOWN_PERSON")
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def test_serve_needs_exactly_one_store(tmp_path):
    keys = tmp_path / "keys.toml"
    keys.write_text("")
    result = CliRunner().invoke(app, ["serve", "--keys", str(keys)])
    assert result.exit_code != 0 and "exactly one of --db" in result.output


def test_new_key_prints_an_entry_for_the_keys_file():
    result = CliRunner().invoke(app, ["new-key", "T0009", "--institution", "BJ3"])
    assert result.exit_code == 0
    assert "[terminal.T0009]" in result.output and 'institution = "BJ3"' in result.output
