"""The card commands against a simulated serial reader (no PC/SC needed)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sim.personalize import issue_sample
from sim.serial_reader import SerialReaderServer
from sscard.cli import app

runner = CliRunner()


@pytest.fixture
def reader():
    srv = SerialReaderServer(issue_sample("zhang_san")).start()
    yield srv
    srv.stop()


def test_card_read_json_and_national(reader):
    out = runner.invoke(app, ["card", "read", "--reader", f"serial:{reader.url}", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["name"] == "张三"
    out = runner.invoke(app, ["card", "read", "--reader", f"serial:{reader.url}", "--national"])
    assert out.output.startswith("110100|110105198001010016|B10238475|")


def test_verify_and_change_pin(reader):
    r = f"serial:{reader.url}"
    out = runner.invoke(app, ["card", "verify-pin", "--reader", r, "--pin-stdin"], input="000000\n")
    assert out.exit_code == 1 and "2 tries left" in out.output
    out = runner.invoke(app, ["card", "change-pin", "--reader", r, "--pin-stdin"], input="123456\n987654\n")
    assert out.exit_code == 0 and "PIN changed" in out.output
    out = runner.invoke(app, ["card", "verify-pin", "--reader", r, "--pin-stdin"], input="987654\n")
    assert out.exit_code == 0 and "PIN ok" in out.output
    out = runner.invoke(app, ["card", "verify-pin", "--reader", r, "--pin-stdin"], input="12x\n")
    assert out.exit_code == 2


def test_unreachable_reader_is_one_line_and_exit_2():
    out = runner.invoke(app, ["card", "read", "--reader", "serial:socket://127.0.0.1:1"])
    assert out.exit_code == 2 and "TransportError" in out.output


@pytest.mark.parametrize("spec", ["socket://127.0.0.1:7816", "rfc2217://10.0.0.5:4001", "/dev/ttyUSB0"])
def test_a_serial_url_without_the_serial_prefix_is_named_as_such(spec):
    """Taken as a PC/SC name it used to fail as 'PC/SC service not available', which sent clerks to pcscd."""
    out = runner.invoke(app, ["card", "read", "--reader", spec])
    assert out.exit_code == 2
    assert f"serial:{spec}" in out.output and "PC/SC service" not in out.output


@pytest.fixture
def v3_reader():
    """A third-generation card that shows EF06 only to an authenticated terminal, in a serial reader."""
    srv = SerialReaderServer(issue_sample("li_si", ef06_requires_auth=True)).start()
    yield f"serial:{srv.url}"
    srv.stop()


def test_card_read_of_a_v3_card_needs_a_security_module(v3_reader):
    out = runner.invoke(app, ["card", "read", "--reader", v3_reader])
    assert out.exit_code == 2 and "AuthenticationRequired" in out.output and "PSAM" in out.output


def test_card_read_with_a_psam(v3_reader):
    from sim.psam import SimPsam

    psam = SerialReaderServer(SimPsam()).start()
    try:
        out = runner.invoke(app, ["card", "read", "--reader", v3_reader, "--psam", f"serial:{psam.url}", "--json"])
    finally:
        psam.stop()
    assert out.exit_code == 0, out.output
    assert json.loads(out.output[out.output.index("{"):])["name"] == "李四"


def test_card_read_with_the_hsm_over_tcp(v3_reader, tmp_path):
    from hsm_mock import KeyStore, Lmk, LocalHsm
    from hsm_mock.access import AccessPolicy
    from hsm_mock.server import ServerThread
    from sim.issuer import DEFAULT_ISSUER, install_into_hsm

    lmk = Lmk.ephemeral()
    store = KeyStore(lmk)
    hsm = LocalHsm(store)
    install_into_hsm(DEFAULT_ISSUER, hsm, lambda *a: store.load_components(a[0], "KEK", *a[1:]))
    access = AccessPolicy.of(lmk, {"T0001": "terminal"})
    access.credential("T0001").save(tmp_path / "T0001.cred")
    env = {"SSCARD_HSM_CREDENTIAL": str(tmp_path / "T0001.cred")}
    with ServerThread(hsm, access=access) as server:
        host, port = server.address
        out = runner.invoke(app, ["card", "read", "--reader", v3_reader, "--hsm", f"{host}:{port}", "--national"],
                            env=env)
        assert out.exit_code == 0, out.output
        assert "|李四|" in out.output
        out = runner.invoke(app, ["card", "read", "--reader", v3_reader, "--hsm", f"{host}:{port}",
                                  "--hsm-prefix", "OTHER"], env=env)
        assert out.exit_code == 2 and "SecurityModuleError" in out.output
        out = runner.invoke(app, ["card", "read", "--reader", v3_reader, "--hsm", f"{host}:{port}"],
                            env={"SSCARD_HSM_CREDENTIAL": ""})
        assert out.exit_code == 2 and "--hsm-credential" in out.output
    hsm.close()
    out = runner.invoke(app, ["card", "read", "--reader", v3_reader, "--hsm", "127.0.0.1:1"], env=env)
    assert out.exit_code == 2 and "SecurityModuleError" in out.output
    for bad in ("nohost", "h:x", ":15"):
        out = runner.invoke(app, ["card", "read", "--reader", v3_reader, "--hsm", bad], env=env)
        assert out.exit_code == 2 and "HOST:PORT" in out.output
    out = runner.invoke(app, ["card", "read", "--reader", v3_reader, "--hsm", "h:1", "--psam", "x"])
    assert out.exit_code == 2 and "not both" in out.output


def test_a_spinner_shows_only_when_the_card_is_slow():
    import io
    import time

    from rich.console import Console

    from sscard.card_cmd import slow_card_spinner

    quick = io.StringIO()
    with slow_card_spinner(Console(file=quick, force_terminal=True), after=60):
        pass
    assert quick.getvalue() == ""
    slow = io.StringIO()
    with slow_card_spinner(Console(file=slow, force_terminal=True), after=0, message="waiting for the card"):
        deadline = time.monotonic() + 5
        while "waiting for the card" not in slow.getvalue():
            assert time.monotonic() < deadline
            time.sleep(0.01)


def test_card_read_with_a_timeout_and_a_trace(reader, tmp_path):
    trace = tmp_path / "t.jsonl"
    out = runner.invoke(app, ["card", "read", "--reader", f"serial:{reader.url}", "--json", "--timeout", "2",
                              "--trace", str(trace)])
    assert out.exit_code == 0, out.output
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert records[0]["tool"] == "sscard card read" and records[1]["type"] == "connect"
    apdus = [r for r in records if r["type"] == "apdu"]
    assert apdus[0]["name"] == "SELECT" and all(r["r"].endswith("9000") for r in apdus)
