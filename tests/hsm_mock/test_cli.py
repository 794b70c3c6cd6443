"""`sscard hsm ...`: key management through the CLI, and `serve` as its own process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from hsm_client.client import HsmClient
from sscard.hsm_cmd import app

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


def test_serve_in_its_own_process(tmp_path: Path) -> None:
    env = {**os.environ, "SSCARD_HSM_LMK": "11" * 32}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sscard.hsm_cmd", "serve", "--port", "0", "--keystore", str(tmp_path / "k.db")],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        with HsmClient("127.0.0.1", port, timeout=5) as client:
            info = client.generate_key("mak", "MAK", "3DES")
            client.verify_mac("mak", b"x", client.generate_mac("mak", b"x"))
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    # The key outlived the server, wrapped under the LMK.
    listing = runner.invoke(app, ["keys", "list", "--keystore", str(tmp_path / "k.db")], env=env).output
    assert info.kcv.hex().upper() in listing
