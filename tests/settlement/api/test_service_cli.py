"""`sscard settlement serve` starts uvicorn on 127.0.0.1 with a keys file and an SQLite store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
from typer.testing import CliRunner

from settlement.api.auth import hash_key
from sscard.settlement_cmd import app
from sscard.stack import listening_socket


def start_service(args: list[str]) -> tuple[subprocess.Popen, int]:
    """`sscard settlement serve ARGS` on a listening socket the OS assigned, handed over by fd."""
    with listening_socket() as sock:
        cmd = [sys.executable, "-c", "from sscard.settlement_cmd import app; app()", "serve", "--log-level",
               "warning", *args, "--fd", str(sock.fileno())]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, pass_fds=[sock.fileno()])
        return proc, sock.getsockname()[1]


def wait_until_serving(proc: subprocess.Popen, port: int) -> str:
    """The service's base URL once /v1/health answers; fails with the process's output if it never does."""
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{url}/v1/health", timeout=0.5).status_code == 200:
                return url
        except httpx.TransportError:
            time.sleep(0.05)
        if proc.poll() is not None:
            break
    proc.kill()
    out = proc.stdout.read().decode() if proc.stdout else ""
    raise AssertionError(f"service did not start: {out}")


def test_serve_answers_with_auth(tmp_path):
    keys = tmp_path / "keys.toml"
    keys.write_text(f'[terminal.T1]\nkey_sha256 = "{hash_key("secret")}"\ninstitution = "BJ3"\n')
    proc, port = start_service(["--db", str(tmp_path / "s.db"), "--init", "--keys", str(keys)])
    try:
        url = wait_until_serving(proc, port)
        assert httpx.get(f"{url}/v1/persons/X", timeout=2).json()["code"] == "UNAUTHORIZED"
        r = httpx.get(f"{url}/v1/persons/X", headers={"X-Terminal-Key": "secret"}, timeout=2)
        assert (r.status_code, r.json()["code"]) == (403, "CARD_PROOF_REQUIRED")
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


def test_serve_with_an_hsm_checks_pin_blocks_online(tmp_path):
    from hsm_mock import KeyStore, Lmk, LocalHsm
    from hsm_mock.access import AccessPolicy
    from hsm_mock.server import ServerThread
    from settlement.ledger.store.sqlite import SqliteStore
    from settlement.schemes.engine import Engine
    from settlement.wire import pin_pan

    lmk = Lmk.ephemeral()
    hsm = LocalHsm(KeyStore(lmk))
    access = AccessPolicy.of(lmk, {"centre": "settlement"})
    access.credential("centre").save(tmp_path / "centre.cred")
    hsm.generate_key("SSSE-SM4-PIK", "PIK", "SM4")
    hsm.generate_key("SSSE-SM4-PVK", "PVK", "SM4")
    pid, card, pan = "310115195707230033", "S31000077", pin_pan("310115195707230033")
    with SqliteStore(tmp_path / "s.db") as store:  # issuance: the person and the PIN reference
        eng = Engine(store)
        eng.registry.add_person(pid, "Wang", "110000", "retiree", card_no=card)
        ref = hsm.pin_reference("SSSE-SM4-PIK", "SSSE-SM4-PVK", hsm.encrypt_pin("SSSE-SM4-PIK", "111111", pan), pan)
        eng.registry.set_pin_reference(pid, card, ref, actor="issuance")
    keys = tmp_path / "keys.toml"
    keys.write_text(f'[terminal.T1]\nkey_sha256 = "{hash_key("secret")}"\ninstitution = "BJ3"\n')
    server = ServerThread(hsm, access=access).start()
    host, hsm_port = server.address
    proc, port = start_service(["--db", str(tmp_path / "s.db"), "--keys", str(keys), "--hsm", f"{host}:{hsm_port}",
                                "--hsm-credential", str(tmp_path / "centre.cred"), "--hsm-timeout", "1"])
    try:
        url = wait_until_serving(proc, port)

        def certify(serial: str, pin: str) -> httpx.Response:
            return httpx.post(f"{url}/v1/identity/certify", headers={"X-Terminal-Key": "secret"}, timeout=5, json={
                "terminal_serial": serial, "person_id": pid, "method": "card_pin", "card_no": card,
                "pin_block": hsm.encrypt_pin("SSSE-SM4-PIK", pin, pan).hex()})

        ok = certify("c1", "111111").json()
        assert ok["passed"] and ok["failure"] is None
        wrong = certify("c2", "111112").json()
        assert (wrong["passed"], wrong["failure"]) == (False, "pin_wrong")
        server.stop()
        down = certify("c3", "111111")
        assert (down.status_code, down.json()["code"]) == (503, "PIN_CHECK_UNAVAILABLE")
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        hsm.close()
    assert b"111111" not in (proc.stdout.read() if proc.stdout else b"")


def test_serve_refuses_a_malformed_hsm_address_or_credential(tmp_path):
    keys = tmp_path / "keys.toml"
    keys.write_text("")
    serve = ["serve", "--keys", str(keys), "--db", str(tmp_path / "s.db")]
    result = CliRunner().invoke(app, [*serve, "--hsm", "nohost"])
    assert result.exit_code != 0 and "HOST:PORT" in result.output
    result = CliRunner().invoke(app, [*serve, "--hsm", "127.0.0.1:1500"], env={"SSCARD_HSM_CREDENTIAL": ""})
    assert result.exit_code != 0 and "--hsm-credential" in result.output
    (tmp_path / "bad.cred").write_text('client = "centre"\nkey = "00"\n')
    result = CliRunner().invoke(app, [*serve, "--hsm", "127.0.0.1:1500", "--hsm-credential",
                                      str(tmp_path / "bad.cred")])
    assert result.exit_code != 0 and "must be 32 bytes" in result.output
    assert not (tmp_path / "s.db").exists()


def test_serve_speaks_the_national_platform_interface_with_its_catalogue(tmp_path):
    """`serve` also answers the national platform interface, with the medical list --national-catalogue gives."""
    from decimal import Decimal

    from settlement.ledger.store.sqlite import SqliteStore
    from settlement.schemes.engine import Engine
    from testing.his import His, fen

    db, keys, catalogue = tmp_path / "s.db", tmp_path / "keys.toml", tmp_path / "list.toml"
    store = SqliteStore(db)
    eng = Engine(store)
    eng.registry.add_institution("H11010500001", "北京示例医院", "110000", "3")
    eng.registry.add_person("110105198001011234", "张伟", "110000", "employee", card_no="A00000001")
    store.close()
    keys.write_text(f'[terminal.HIS01]\nkey_sha256 = "{hash_key("his")}"\ninstitution = "H11010500001"\n')
    catalogue.write_text('[item."X-1"]\nname = "试验药"\nchrgitm_lv = "02"\nmed_chrgitm_type = "09"\n')
    bad = tmp_path / "bad.toml"
    bad.write_text('[item."X-1"]\nname = "试验药"\nchrgitm_lv = "07"\nmed_chrgitm_type = "09"\n')
    result = CliRunner().invoke(app, ["serve", "--keys", str(keys), "--db", str(db), "--national-catalogue", str(bad)])
    assert result.exit_code == 2 and "X-1" in result.output
    proc, port = start_service(["--db", str(db), "--keys", str(keys), "--national-catalogue", str(catalogue)])
    try:
        url = wait_until_serving(proc, port)
        with httpx.Client(base_url=url, timeout=5) as http:
            his = His(http, key="his", fixmedins_code="H11010500001", fixmedins_name="北京示例医院",
                      mdtrtarea_admvs="110000")
            his.sign_in()
            visit = his.ok("2201", {"data": {
                "psn_no": "110105198001011234", "insutype": "310", "begntime": "2024-03-01 10:00:00",
                "mdtrt_cert_type": "02", "mdtrt_cert_no": "110105198001011234", "ipt_otp_no": "1", "atddr_no": "1",
                "dr_name": "李", "dept_code": "1", "dept_name": "内科", "caty": "A03"}}, insuplc_admdvs="110000")
            line = {"feedetl_sn": "1", "mdtrt_id": visit["data"]["mdtrt_id"], "psn_no": "110105198001011234",
                    "chrg_bchno": "1", "fee_ocur_time": "2024-03-01 10:00:00", "med_list_codg": "X-1",
                    "medins_list_codg": "X-1", "det_item_fee_sumamt": Decimal("10.00"), "cnt": 1,
                    "pric": Decimal("10.00"), "bilg_dept_codg": "1", "bilg_dept_name": "内科", "bilg_dr_codg": "1",
                    "bilg_dr_name": "李"}
            result = his.ok("2204", {"feedetail": [line]}, insuplc_admdvs="110000")["result"][0]
            assert (result["chrgitm_lv"], fen(result["preselfpay_amt"])) == ("02", 1_00)  # Beijing: 10% first
            refused = his.call("2204", {"feedetail": [line | {"feedetl_sn": "2", "med_list_codg": "DEMO-XY-0001"}]},
                               insuplc_admdvs="110000")
            assert refused["infcode"] == -1 and "医疗目录编码(med_list_codg)" in refused["err_msg"]
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def test_serve_with_several_workers_shares_the_socket_and_the_store(tmp_path):
    """`--workers 2`: two processes answer on one socket, each with its own store writer; JSON log lines, no
    access log; SIGTERM stops them all."""
    keys = tmp_path / "keys.toml"
    keys.write_text(f'[terminal.OPS]\nkey_sha256 = "{hash_key("secret")}"\noperator = true\n')
    proc, port = start_service(["--db", str(tmp_path / "s.db"), "--init", "--keys", str(keys), "--workers", "2",
                                "--log-level", "info"])
    try:
        url = wait_until_serving(proc, port)
        for _ in range(20):
            r = httpx.get(f"{url}/v1/persons/X", headers={"X-Terminal-Key": "secret"}, timeout=5)
            assert (r.status_code, r.json()["code"]) == (404, "UNKNOWN_PERSON")
        children = [int(p) for p in os.listdir("/proc") if p.isdigit() and _parent(int(p)) == proc.pid]
        assert len(children) >= 2
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    out = proc.stdout.read().decode() if proc.stdout else ""
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert lines and all("level" in x and "message" in x for x in lines)  # structured
    assert "GET /v1/persons/X" not in out  # no access log by default


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None
