"""`sscard hsm ...`: key management and client credentials through the CLI, and `serve` as its own process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hsm_client.auth import Credential
from hsm_client.client import HsmClient
from hsm_client.errors import NotAuthorised
from sscard.hsm_cmd import app, console

runner = CliRunner()
KEY = "0123456789ABCDEFFEDCBA9876543210"


def test_keys_commands(tmp_path: Path) -> None:
    lmk, store = tmp_path / "lmk.hex", tmp_path / "keys.db"
    opts = ["--keystore", str(store), "--lmk-file", str(lmk)]
    assert runner.invoke(app, ["new-lmk", str(lmk)]).exit_code == 0
    assert oct(lmk.stat().st_mode & 0o777) == "0o600"
    assert runner.invoke(app, ["new-lmk", str(lmk)]).exit_code == 1  # never overwritten
    result = runner.invoke(app, ["keys", "generate", "--label", "mk.ea", "--type", "MK", "--suite", "SM4", *opts])
    assert result.exit_code == 0 and "mk.ea@1 MK SM4 KCV" in result.output
    result = runner.invoke(app, ["keys", "load", "--label", "kek", "--type", "KEK", "--suite", "3DES", *opts],
                           input=f"{KEY}\n{'0' * 32}\n08D7B4\n")
    assert result.exit_code == 0 and "KCV 08D7B4" in result.output
    assert KEY not in result.output and KEY not in store.read_bytes().hex().upper()
    result = runner.invoke(app, ["keys", "load", "--label", "kek2", "--type", "KEK", "--suite", "3DES", *opts],
                           input=f"{KEY}\n{'0' * 32}\n000000\n")
    assert result.exit_code == 1 and "error 14" in result.output
    listing = runner.invoke(app, ["keys", "list", *opts]).output
    assert "mk.ea" in listing and "08D7B4" in listing and "last8" in listing
    assert runner.invoke(app, ["keys", "delete", "kek", *opts]).exit_code == 0
    assert "kek" not in runner.invoke(app, ["keys", "list", *opts]).output
    other = runner.invoke(app, ["keys", "list", "--keystore", str(store)], env={"SSCARD_HSM_LMK": "00" * 32})
    assert other.exit_code == 1 and "error 17" in other.output


CLIENTS = """
[server]
idle_timeout = 30
[limits]
encrypt_pin = { rate = 0.5, burst = 3 }
[clients.ops]
role = "console"
[clients.T0001]
role = "terminal"
[clients.centre]
role = "settlement"
generation = 2
limits = { verify_pin = { rate = 50, burst = 100 } }
"""


def test_clients_issue_and_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console, "width", 200)  # the console took its width from the environment at import
    clients = tmp_path / "clients.toml"
    clients.write_text(CLIENTS)
    env = {"SSCARD_HSM_LMK": "11" * 32, "SSCARD_HSM_CLIENTS": str(clients)}
    out = runner.invoke(app, ["clients", "issue", "T0001", "--out", str(tmp_path / "T0001.cred")], env=env)
    assert out.exit_code == 0 and "T0001 (terminal)" in out.output, out.output
    cred = Credential.load(tmp_path / "T0001.cred")
    assert cred.client == "T0001" and oct((tmp_path / "T0001.cred").stat().st_mode & 0o777) == "0o600"
    assert cred.key.hex() not in out.output and "key" not in repr(cred)
    again = runner.invoke(app, ["clients", "issue", "T0001", "--out", str(tmp_path / "T0001.cred")], env=env)
    assert again.exit_code == 1 and "cannot create" in again.output  # never overwritten
    unknown = runner.invoke(app, ["clients", "issue", "T0009", "--out", str(tmp_path / "x.cred")], env=env)
    assert unknown.exit_code == 1 and "not in the client list" in unknown.output
    assert not (tmp_path / "x.cred").exists()
    # The same LMK gives the same key; another generation or LMK another.
    out = runner.invoke(app, ["clients", "issue", "centre", "--out", str(tmp_path / "c.cred")],
                        env=env | {"SSCARD_HSM_LMK": "22" * 32})
    assert out.exit_code == 0 and Credential.load(tmp_path / "c.cred").key != cred.key
    listing = runner.invoke(app, ["clients", "list", "--clients", str(clients)])  # no LMK
    assert listing.exit_code == 0, listing.output
    assert "T0001" in listing.output and "encrypt_pin 0.5/s, burst 3" in listing.output
    assert "verify_pin 50/s, burst 100" in listing.output and "idle timeout 30 s" in listing.output
    clients.write_text('[clients.T1]\nrole = "termnal"\n')
    bad = runner.invoke(app, ["clients", "list", "--clients", str(clients)])
    assert bad.exit_code == 2 and "clients.T1.role: unknown role 'termnal'" in bad.output


def test_serve_needs_a_client_list(tmp_path: Path) -> None:
    out = runner.invoke(app, ["serve", "--ephemeral"], env={"SSCARD_HSM_CLIENTS": ""})
    assert out.exit_code == 2 and "--clients FILE" in out.output
    clients = tmp_path / "clients.toml"
    clients.write_text(CLIENTS)
    out = runner.invoke(app, ["serve", "--clients", str(clients), "--credentials-dir", str(tmp_path / "c"),
                              "--keystore", str(tmp_path / "k.db")], env={"SSCARD_HSM_LMK": "11" * 32})
    assert out.exit_code == 2 and "--credentials-dir is for --ephemeral" in out.output


def test_serve_in_its_own_process(tmp_path: Path) -> None:
    env = {**os.environ, "SSCARD_HSM_LMK": "11" * 32}
    clients = tmp_path / "clients.toml"
    clients.write_text(CLIENTS)
    for cid in ("ops", "T0001"):
        assert runner.invoke(app, ["clients", "issue", cid, "--clients", str(clients), "--out",
                                   str(tmp_path / f"{cid}.cred")], env=env).exit_code == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "sscard.hsm_cmd", "serve", "--port", "0", "--keystore", str(tmp_path / "k.db"),
         "--clients", str(clients)],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        with (HsmClient("127.0.0.1", port, credential=Credential.load(tmp_path / "ops.cred"), timeout=5) as ops,
              HsmClient("127.0.0.1", port, credential=Credential.load(tmp_path / "T0001.cred"), timeout=5) as t1):
            info = ops.generate_key("mak", "MAK", "3DES")
            t1.verify_mac("mak", b"x", t1.generate_mac("mak", b"x"))
            with pytest.raises(NotAuthorised):
                t1.delete_key("mak")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    # The key outlived the server, wrapped under the LMK.
    listing = runner.invoke(app, ["keys", "list", "--keystore", str(tmp_path / "k.db")], env=env).output
    assert info.kcv.hex().upper() in listing
