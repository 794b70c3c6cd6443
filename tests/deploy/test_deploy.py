"""The deployment files in deploy/ are tried, not only written: the systemd units pass `systemd-analyze
verify`; the centre's unit runs its ExecStart with the example environment against a temporary
PostgreSQL; the centre's Dockerfile is checked (pinned bases, every package copied, non-root, the port
and the settings the CLI reads) and what the image runs (its entrypoint, environment and health check)
runs against a temporary PostgreSQL. Building and running the image itself needs Docker:
deploy/check-centre-image.sh."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import httpx
import pytest
import typer

from settlement.api.auth import hash_key
from sscard.stack import listening_socket

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PREFIX = "/opt/sscard/.venv/bin/"
BIN = Path(sys.executable).parent


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail("systemd-analyze is missing (Debian package systemd; scripts/install-system-deps.sh installs it)")
    return found


def unit_settings(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


def env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


@pytest.mark.parametrize("unit", sorted(p.name for p in (DEPLOY / "systemd").glob("*.service")))
def test_systemd_units_verify(tmp_path, unit):
    """`systemd-analyze verify` with the install prefix pointed at this checkout's virtualenv (it checks that
    ExecStart's program exists)."""
    text = (DEPLOY / "systemd" / unit).read_text().replace(PREFIX, f"{BIN}/")
    (tmp_path / unit).write_text(text)
    out = subprocess.run([systemd_analyze(), "verify", "--man=no", str(tmp_path / unit)], capture_output=True,
                         text=True, timeout=60)
    ours = [line for line in (out.stdout + out.stderr).splitlines() if unit in line]
    assert out.returncode == 0 and not ours, out.stdout + out.stderr


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            out = proc.stdout.read().decode() if proc.stdout else ""
            pytest.fail(f"the centre did not come up (exit {proc.poll()}):\n{out[-3000:]}")
        time.sleep(0.1)


def free_port() -> int:
    s = listening_socket()
    port = s.getsockname()[1]
    s.close()  # the centre binds it itself, as under systemd and in the container
    return port


def keys_file(tmp_path: Path) -> tuple[Path, str]:
    key = "deploy-test-key-0123456789abcdef"
    f = tmp_path / "terminal-keys.toml"
    f.write_text(f'[terminal.T0001]\nkey_sha256 = "{hash_key(key)}"\ninstitution = "H11000301"\noperator = false\n')
    return f, key


def run_centre(argv: list[str], env: dict[str, str], key: str) -> None:
    """Start `argv` with `env`, check it serves and reaches its store, stop it with SIGTERM (as systemd and
    docker stop do) and check it stopped cleanly."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{env['SSCARD_PORT']}"
        wait_healthy(f"{url}/v1/health", proc)
        r = httpx.get(f"{url}/v1/persons/110105198001010016", headers={"X-Terminal-Key": key, "X-Card-No": "C00000000"},
                      timeout=10)  # an unknown person answers like a wrong card, once the store was asked
        assert r.status_code == 403 and r.json()["code"] == "CARD_PROOF_MISMATCH", r.text
        assert httpx.get(f"{url}/v1/persons/x", timeout=10).status_code == 401  # keys file read
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode in (0, -signal.SIGTERM), out.decode()[-3000:]
    assert b"Traceback" not in out, out.decode()[-3000:]


def test_centre_unit_serves_on_postgresql(tmp_path, postgres):
    unit = unit_settings(DEPLOY / "systemd" / "sscard-settlement.service")
    assert unit["EnvironmentFile"] == "/etc/sscard/settlement.env" and unit["User"] != "root"
    env = env_file(DEPLOY / "systemd" / "settlement.env.example")
    assert set(env) <= serve_envvars()
    keys, key = keys_file(tmp_path)
    env |= {"SSCARD_POSTGRES_DSN": postgres.new_schema("unit"), "SSCARD_TERMINAL_KEYS": str(keys),
            "SSCARD_PORT": str(free_port())}
    argv = shlex.split(unit["ExecStart"].replace(PREFIX, f"{BIN}/"))
    run_centre(argv, {"PATH": os.environ["PATH"], "HOME": str(tmp_path)} | env, key)


# ---- the Dockerfile ---------------------------------------------------------------------------------------------
def instructions(path: Path) -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions by stage: [(INSTRUCTION, arguments)], continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, args = line.partition(" ")
        if word.upper() == "FROM":
            stages.append([])
        stages[-1].append((word.upper(), args.strip()))
    return stages


def serve_envvars() -> set[str]:
    from sscard.settlement_cmd import app

    command = typer.main.get_command(app).commands["serve"]
    return {p.envvar for p in command.params if getattr(p, "envvar", None)}


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, args in stage:
        if word == "ENV":
            env |= dict(tok.split("=", 1) for tok in shlex.split(args))
    return env


def test_dockerfile_is_sound():
    stages = instructions(DEPLOY / "centre" / "Dockerfile")
    assert len(stages) == 2
    for stage in stages:
        image = stage[0][1].split()[0]
        assert re.fullmatch(r"python:3\.1[1-9]-slim-[a-z]+", image), image  # a pinned Python and Debian
    build, run = stages
    copied = set()
    for word, args in build:
        if word == "COPY":
            src = args.split()[0]
            assert (ROOT / src).exists(), src
            copied.add(src)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= copied, packages - copied  # every package the wheel is built from
    assert "pyproject.toml" in copied
    run_args = " ".join(a for w, a in build if w == "RUN")
    assert "libpcsclite-dev" in run_args and "gcc" in run_args  # pyscard compiles (install-system-deps.sh)
    words = dict(run)  # the last of each instruction
    assert words["USER"] not in ("root", "0")
    env = env_of(run)
    assert set(env) - {"PYTHONUNBUFFERED"} <= serve_envvars()
    assert words["EXPOSE"] == env["SSCARD_PORT"] and env["SSCARD_BIND"] == "0.0.0.0"
    assert json.loads(words["ENTRYPOINT"]) == ["sscard", "settlement", "serve"]
    assert "CMD [" in words["HEALTHCHECK"]


def test_what_the_image_runs_serves_on_postgresql(tmp_path, postgres):
    """The image's ENTRYPOINT with its ENV (the DSN and keys file given as `docker run` would), then its
    HEALTHCHECK command, with this checkout's sscard in place of the image's."""
    run = instructions(DEPLOY / "centre" / "Dockerfile")[-1]
    words = dict(run)
    keys, key = keys_file(tmp_path)
    env = env_of(run) | {"SSCARD_POSTGRES_DSN": postgres.new_schema("image"), "SSCARD_TERMINAL_KEYS": str(keys),
                         "SSCARD_PORT": str(free_port()), "SSCARD_BIND": "127.0.0.1"}
    env |= {"PATH": f"{BIN}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    entry = json.loads(words["ENTRYPOINT"])
    health = json.loads(words["HEALTHCHECK"].split("CMD", 1)[1])
    proc = subprocess.Popen([str(BIN / entry[0]), *entry[1:]], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{env['SSCARD_PORT']}/v1/health", proc)
        check = subprocess.run([sys.executable if health[0] == "python" else health[0], *health[1:]], env=env,
                               capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    run_centre([str(BIN / entry[0]), *entry[1:]], env | {"SSCARD_PORT": str(free_port())}, key)


def test_the_wheel_carries_the_data_the_daemon_serves(tmp_path):
    """The image installs the wheel built from the tree: the counter page, /docs assets, messages and
    policies must be in it (package data), or an installed daemon serves blank pages."""
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    (wheel,) = tmp_path.glob("sscard-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("terminal/messages.toml", "terminal/labels.toml", "terminal/static/favicon.svg",
                   "terminal/static/counter/index.html", "terminal/static/counter/counter.js",
                   "terminal/static/vendor/swagger-ui/swagger-ui-bundle.js",
                   "terminal/static/vendor/swagger-ui/LICENSE"):
        assert needed in names, needed
    assert any(n.startswith("settlement/") and n.endswith(".toml") for n in names)
