"""The daemon as an operator runs it: `sscard terminal serve` in its own process, JSON logs with rotation that
never hold a PIN, a PIN block, a key or a token, /health part by part, paths from the config file's
directory, one-line start-up errors, `sscard --version`, several user-card readers per counter."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hsm_client.auth import Credential
from sscard.stack import listening_socket, start_counter
from terminal.config import hash_token, load_config
from terminal.daemon import StartupError, build_security
from tests.terminal.conftest import LINES, busy

TOKEN = "operator-test-token-0123456789"


def write_config(d: Path, centre_url: str, *, key_file: str = "terminal.key", port: int = 8600,
                 log: str = "log/terminal.log", user_card: str = '["memory:zhang_san", "memory:wang_xiuying"]',
                 hsm: str = "", psam: str = "memory:psam", extra: str = "") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    cfg = d / "terminal.toml"
    cfg.write_text(f"""
[terminal]
id = "T0001"
institution = "H11000301"
institution_name = "北京示例第三医院"
region = "110000"
journal = "var/journal.db"
port = {port}
[readers]
user_card = {user_card}
psam = "{psam}"
[settlement]
url = "{centre_url}"
key_file = "{key_file}"
timeout = 3.0
[hsm]
{hsm}
[auth]
tokens_sha256 = ["{hash_token(TOKEN)}"]
[log]
file = "{log}"
level = "debug"
max_bytes = 20000
backups = 3
{extra}
""", encoding="utf-8")
    return cfg


def sscard(*args: str, cwd: Path, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sscard", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, **kw)


def test_version_and_module_entry_point(tmp_path):
    out = sscard("--version", cwd=tmp_path)
    assert out.returncode == 0 and re.fullmatch(r"sscard \d+\.\d+\.\d+\S*\n", out.stdout), out


def test_paths_are_relative_to_the_config_file(tmp_path, centre):
    conf = write_config(tmp_path / "etc" / "counter", centre.service.url)
    (conf.parent / "terminal.key").write_text(centre.terminal_keys["T0001"] + "\n")
    cfg = load_config(conf)
    assert cfg.terminal.journal == str(conf.parent.resolve() / "var" / "journal.db")
    assert cfg.log.file == str(conf.parent.resolve() / "log" / "terminal.log")
    elsewhere = tmp_path / "somewhere-else"
    elsewhere.mkdir()
    out = sscard("terminal", "recover", "--config", os.path.relpath(conf, elsewhere), cwd=elsewhere)
    assert out.returncode == 0, out.stderr
    assert (conf.parent / "var" / "journal.db").exists() and not (elsewhere / "var").exists()


def one_line_error(out: subprocess.CompletedProcess, *needles: str) -> None:
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    for n in needles:
        assert n in lines[0], lines[0]


def test_a_missing_key_file_is_one_clear_line(tmp_path, centre):
    conf = write_config(tmp_path, centre.service.url, key_file="secrets/missing.key")
    one_line_error(sscard("terminal", "serve", "--config", str(conf), cwd=tmp_path),
                   "cannot read the settlement API key file", "missing.key", "No such file")


def test_a_taken_port_is_one_clear_line(tmp_path, centre):
    taken = listening_socket()
    try:
        conf = write_config(tmp_path, centre.service.url, port=taken.getsockname()[1])
        (tmp_path / "terminal.key").write_text(centre.terminal_keys["T0001"])
        one_line_error(sscard("terminal", "serve", "--config", str(conf), cwd=tmp_path),
                       f"127.0.0.1:{taken.getsockname()[1]} is already in use")
    finally:
        taken.close()


@pytest.mark.parametrize("reader,says", [('"/dev/ttyUSB0"', "write serial:/dev/ttyUSB0"),
                                         ('"memory:nobody_at_all"', "nobody_at_all")])
def test_a_reader_that_names_nothing_is_one_clear_line(tmp_path, centre, reader, says):
    conf = write_config(tmp_path, centre.service.url, user_card=reader)
    (tmp_path / "terminal.key").write_text(centre.terminal_keys["T0001"])
    one_line_error(sscard("terminal", "serve", "--config", str(conf), cwd=tmp_path), "user-card reader", says)


# ---- a working day of a daemon in its own process, and its logs -------------------------------------------------
class Daemon:
    def __init__(self, conf: Path) -> None:
        self.sock = listening_socket()
        self.port = self.sock.getsockname()[1]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sscard", "terminal", "serve", "--config", str(conf), "--fd",
             str(self.sock.fileno())], pass_fds=[self.sock.fileno()], cwd=conf.parent,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code in (200, 503):
                    break
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None and time.monotonic() < deadline, self.proc.stdout.read().decode()
            time.sleep(0.1)
        self.sock.close()

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=20)
        return out.decode()


def test_a_day_of_the_daemon_logs_every_transaction_and_no_secret(tmp_path, centre):
    # The daemon's process issues its own sample cards (each process has its own test issuer), so the PIN
    # blocks come from the centre's HSM (no PSAM) and cards are not authenticated (their keys are not the HSM's).
    conf = write_config(tmp_path / "counter", centre.service.url, psam="",
                        hsm=f'host = "{centre.hsm_address[0]}"\nport = {centre.hsm_address[1]}\n'
                            f'credential = "{centre.hsm_credential("T0001")}"',
                        extra="[policy]\nrequire_card_auth = false")
    key = centre.terminal_keys["T0001"]
    (conf.parent / "terminal.key").write_text(key)
    daemon = Daemon(conf)
    pins = ("123456", "111111", "864209")
    events_token = ""
    try:
        with httpx.Client(base_url=daemon.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=20) as api:
            readers = [r["reader"] for r in api.get("/v1/readers").json()]
            assert readers == ["memory:zhang_san", "memory:wang_xiuying"]
            health = api.get("/health").json()
            assert health["status"] == "ok", health
            assert set(health["components"]) == {"reader:memory:zhang_san", "reader:memory:wang_xiuying",
                                                 "security", "centre", "journal", "blacklist"}
            events_token = api.post("/v1/readers/events/token", json={}).json()["token"]
            httpx.get(f"{daemon.url}/v1/readers/events", params={"access_token": events_token, "timeout": 0})
            mdtrt = api.post("/v1/visits", json={}).json()["mdtrt_id"]
            mdtrt_lost = api.post("/v1/visits", json={}).json()["mdtrt_id"]
            wrong = api.post(f"/v1/visits/{mdtrt}/settle", json={"lines": LINES, "pin": pins[2]})
            assert wrong.json()["code"] == "PIN_WRONG"
            rec = api.post(f"/v1/visits/{mdtrt}/settle", json={"lines": LINES, "pin": pins[0]}).json()
            api.post(f"/v1/settlements/{rec['key']}/refund", json={"reason": "退药", "operator": "clerk-7"})
            pension = {"reader": "memory:wang_xiuying"}
            too_much = api.post("/v1/pension/collect", json=pension | {"pin": pins[1], "amount": 100_000_00})
            assert too_much.status_code == 409  # journaled as failed
            cert = api.post("/v1/pension/certify", json=pension | {"pin": pins[1]}).json()
            assert cert["passed"], cert
            paid = api.post("/v1/pension/collect", json=pension | {"pin": pins[1], "amount": 100_00})
            assert paid.status_code == 200, paid.text
            # the centre goes away: /health says so, a settlement is reversed, and the reversal waits
            centre.service.stop()
            health = api.get("/health").json()
            assert health["status"] == "degraded" and health["components"]["centre"]["status"] == "down"
            assert health["components"]["journal"]["status"] == "ok"
            r = api.post(f"/v1/visits/{mdtrt_lost}/settle", json={"lines": LINES, "pin": pins[0]})
            assert r.status_code == 503 and r.json()["details"]["reversal_state"] == "pending", r.text
            for _ in range(60):  # more requests: the log rotates
                api.get("/v1/transactions")
    finally:
        console = daemon.stop()
    logs = sorted((conf.parent / "log").glob("terminal.log*"))
    assert len(logs) >= 2, logs  # rotated at max_bytes
    assert "Traceback" not in console
    text = "".join(p.read_text(encoding="utf-8") for p in logs)
    records = [json.loads(line) for line in text.splitlines()]
    events = {r.get("event") for r in records}
    for e in ("daemon.start", "transaction.begin", "transaction.confirmed", "transaction.failed",
              "transaction.retry", "http.request", "daemon.stop"):
        assert e in events, (e, sorted(filter(None, events)))
    kinds = {r.get("kind") for r in records if r.get("event") == "transaction.confirmed"}
    assert {"register", "settle", "refund", "certify", "pension_collect"} <= kinds
    assert all({"time", "level", "message"} <= set(r) for r in records)
    # nothing secret, nothing that names the holder
    for secret in (*pins, key, TOKEN, events_token, "110105198001010016", "张三", "王秀英"):
        assert secret not in text, secret
    assert not re.search(r"\b[0-9A-Fa-f]{16}(?:[0-9A-Fa-f]{16})?\b", text)  # no PIN block, no key material
    assert '"pin' not in text


def test_health_reports_each_part(counter, centre):
    with httpx.Client(base_url=counter.url, timeout=15) as c:
        h = c.get("/health").json()
        assert h["status"] == "ok" and h["components"]["security"]["status"] == "ok"
        assert "PSAM" in h["components"]["security"]["detail"] and "HSM: ok" in h["components"]["security"]["detail"]
        centre.service.stop()
        h = c.get("/health").json()
        assert h["components"]["centre"]["status"] == "down" and h["status"] == "degraded"
        assert h["components"]["reader:memory:zhang_san"] == {"status": "ok", "detail": "card B10238475"}
    dead_hsm = start_counter(centre, hsm={"host": "127.0.0.1", "port": 1, "timeout": 0.5,
                                          "credential": str(centre.hsm_credential("T0001"))})
    try:
        h = httpx.get(f"{dead_hsm.url}/health", timeout=15).json()
        security = h["components"]["security"]
        assert security["status"] == "degraded"  # the PSAM still works, the HSM does not
        assert "HSM: " in security["detail"] and "HSM: ok" not in security["detail"]
    finally:
        dead_hsm.stop()


def test_several_user_card_readers_one_session_each(centre):
    k = start_counter(centre, ["memory:zhang_san", "memory:li_si"])
    try:
        with httpx.Client(base_url=k.url, headers=k.headers(), timeout=20) as api:
            assert [r["card_no"] for r in api.get("/v1/readers").json()] == ["B10238475", "G44012345"]
            visits = {reader: api.post("/v1/visits", json={"reader": reader}).json()
                      for reader in ("memory:zhang_san", "memory:li_si")}
            assert visits["memory:li_si"]["name"] == "李四"
            pins = {"memory:zhang_san": "123456", "memory:li_si": "654321"}
            with busy(k.terminal.sessions["memory:zhang_san"]):  # one reader busy does not stop the other
                r = api.post(f"/v1/visits/{visits['memory:zhang_san']['mdtrt_id']}/settle",
                             json={"lines": LINES, "pin": pins["memory:zhang_san"], "reader": "memory:zhang_san"})
                assert r.json()["code"] == "READER_BUSY"
                r = api.post(f"/v1/visits/{visits['memory:li_si']['mdtrt_id']}/settle",
                             json={"lines": LINES, "pin": pins["memory:li_si"], "reader": "memory:li_si"})
                assert r.status_code == 200 and r.json()["name"] == "李四", r.text
            # the card of one reader is not the patient of a visit registered on the other
            r = api.post(f"/v1/visits/{visits['memory:zhang_san']['mdtrt_id']}/settle",
                         json={"lines": LINES, "pin": "654321", "reader": "memory:li_si"})
            assert r.json()["code"] == "CARD_MISMATCH"
            tok = api.post("/v1/readers/events/token", json={"reader": "memory:li_si"}).json()
            assert tok["reader"] == "memory:li_si"
            r = httpx.get(f"{k.url}/v1/readers/events", params={"access_token": tok["token"], "timeout": 0})
            assert r.status_code == 401  # a token for li_si's reader does not open the default reader's stream
    finally:
        k.stop()


@pytest.mark.parametrize("names", ["[]", '["a", "a"]', '[""]'])
def test_reader_lists_that_make_no_sense_are_refused(tmp_path, names):
    from terminal.config import ConfigError

    conf = write_config(tmp_path, "http://127.0.0.1:1", user_card=names)
    with pytest.raises(ConfigError, match="readers.user_card"):
        load_config(conf)


def test_reader_events_are_logged(caplog):
    from cardlib.readers.memory import MemoryReader
    from terminal.session import ReaderSession

    s = ReaderSession("memory:x", MemoryReader(None, name="memory:x"))
    with caplog.at_level("INFO", logger="sscard.terminal"):
        s.publish("removed")
    (record,) = [r for r in caplog.records if getattr(r, "event", "") == "reader.removed"]
    assert record.reader == "memory:x"


def test_an_unknown_centre_dialect_is_refused_naming_the_field(tmp_path):
    from terminal.config import ConfigError

    conf = write_config(tmp_path, "http://127.0.0.1:1", extra='[centre]\ndialect = "hl7"')
    with pytest.raises(ConfigError, match="centre.dialect"):
        load_config(conf)
    conf = write_config(tmp_path, "http://127.0.0.1:1", extra='[centre]\ndialect = "native"')
    assert load_config(conf).centre.dialect == "native"


def test_the_hsm_credential_is_checked_at_start(tmp_path):
    """A counter that uses the HSM starts only with its own credential: none, an unreadable file or another
    terminal's file is one clear line naming `[hsm] credential` (the HSM would refuse the first two; the
    third would run under another counter's rate limits and audit)."""
    Credential("T0002", bytes(range(32))).save(tmp_path / "T0002.cred")
    Credential("T0001", bytes(range(32))).save(tmp_path / "T0001.cred")
    for credential, says in [("", "give this terminal's credential file (`sscard hsm clients issue T0001`"),
                             ("missing.cred", "cannot read the HSM credential"),
                             ("T0002.cred", "is the credential of client T0002, not of this terminal T0001")]:
        hsm = f'host = "127.0.0.1"\nport = 1\ncredential = "{credential}"'
        cfg = load_config(write_config(tmp_path, "http://127.0.0.1:1", hsm=hsm, psam=""))
        with pytest.raises(StartupError, match=re.escape(says)) as err:
            build_security(cfg)
        assert "[hsm] credential" in str(err.value)
    hsm = 'host = "127.0.0.1"\nport = 1\ncredential = "T0001.cred"'
    security, _ = build_security(load_config(write_config(tmp_path, "http://127.0.0.1:1", hsm=hsm, psam="")))
    assert security is not None
