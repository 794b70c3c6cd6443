"""The national reader interface (terminal/reader_bridge.py) as a page calls it, over HTTP and WebSocket, with
in-process simulated cards: basic data, PIN, the HSM two-step, and every bad call answered with its national
code and nothing done to the card.

Message and answer shapes come from public pages and bridges (cited in terminal/reader_bridge.py): a page sends
`{"function": "iReadCardBas", "iType": 3}` and reads `success`/`pOutInfo`; pKey for Step2 is "hex|hex|".
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from sscard.stack import start_counter
from terminal.config import hash_token

V3_IMAGE = Path(__file__).resolve().parents[1] / "cards" / "v3_auth_before_ef06.toml"
PAGE_TOKEN = "page-token-for-the-reader-bridge-only"
PAGE_ORIGIN = "https://his.example.org"
BRIDGE = {"tokens_sha256": [hash_token(PAGE_TOKEN)]}


def sim_card(counter):
    return next(iter(counter.terminal.sessions.values())).reader.card


def call(counter, function: str, token: str | None = None, **args) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else counter.headers()
    r = httpx.post(f"{counter.url}/v1/bridge", json={"function": function, **args}, headers=headers, timeout=15)
    assert r.status_code == 200, r.text
    return r.json()


def ws_url(counter, token: str = PAGE_TOKEN) -> str:
    return f"ws://127.0.0.1:{counter.http.port}/v1/bridge/ws?access_token={token}"


def hsm_answer(hsm, step1: str) -> str:
    """What the centre's HSM answers a step 1 (as a page's back end would ask it): the card's expected
    internal-authentication answer to the random, and the external-authentication cryptogram."""
    f = step1.split("|")
    suite = "SM4" if f[2] == "03" else "3DES"
    pieces = [p for p in f[4:8] if p]
    half = len(pieces) // 2
    random, challenge = bytes.fromhex("".join(pieces[:half])), bytes.fromhex("".join(pieces[half:]))
    card_id = bytes.fromhex(f[3])
    ia = hsm.ext_auth_cryptogram(f"SSSE-{suite}-IAK", card_id, random)
    ea = hsm.ext_auth_cryptogram(f"SSSE-{suite}-EAK", card_id, challenge)
    return f"{ia.hex().upper()}|{ea.hex().upper()}|"


@pytest.fixture
def bridge_counter(centre):
    k = start_counter(centre, reader_bridge=BRIDGE, cors={"allow_origins": [PAGE_ORIGIN]})
    yield k
    k.stop()


@pytest.fixture
def v3_without_psam(centre):
    """A counter with neither PSAM nor HSM of its own, and a third-generation card: pages use the centre's HSM."""
    k = start_counter(centre, f"memory:{V3_IMAGE}", "", hsm={"host": ""}, reader_bridge=BRIDGE)
    yield k
    k.stop()


# ---- iReadCardBas ---------------------------------------------------------------------------------------------
def test_read_basic_gives_the_national_string(bridge_counter):
    out = call(bridge_counter, "iReadCardBas", iType=3)
    assert (out["result"], out["success"], out["functionName"]) == (0, 1, "iReadCardBas"), out
    fields = out["pOutInfo"].split("|")
    assert len(fields) == 12 and fields[-1] == ""  # 11 fields, each followed by |
    assert fields[1] == "110105198001010016" and fields[4] == "张三" and fields[2] == "B10238475"
    assert fields[0] == fields[3][:6]  # region code = the first 6 digits of the card identification code
    assert fields[9] == bridge_counter.terminal.terminal_number and fields[10] == "T0001"
    card = httpx.get(f"{bridge_counter.url}/v1/card", params={"national": True}, headers=bridge_counter.headers())
    assert card.json()["national"] == out["pOutInfo"]


@pytest.mark.parametrize("message", [
    {"function": "iReadCardBas", "args": [3]},
    {"function": "iReadCardBas", "args": {"iType": 1}},
    {"function": "iReadCardBas", "iType": "4"},  # some bridges pass every argument as a string
])
def test_arguments_as_keys_a_list_or_an_object(bridge_counter, message):
    r = httpx.post(f"{bridge_counter.url}/v1/bridge", json=message, headers=bridge_counter.headers())
    assert r.json()["result"] == 0 and r.json()["pOutInfo"].count("|") == 11


def test_contactless_finds_no_card_at_a_contact_reader(bridge_counter):
    out = call(bridge_counter, "iReadCardBas", iType=2)
    assert out["result"] == out["success"] == -2 and out["message"] == "无卡"


def test_no_card_is_minus_2(bridge_counter):
    sim_card(bridge_counter).pull()
    assert call(bridge_counter, "iReadCardBas", iType=3)["result"] == -2


def test_a_blacklisted_card_is_answered_as_locked_before_its_pin(bridge_counter, centre):
    """The national interface has no code of its own for a card on the blacklist: it is answered as a locked
    card (-0x6A81), for a read and before a PIN is tried."""
    centre.engine.cards.report_lost("B10238475", actor="hall", reason="lost")
    bridge_counter.terminal.fetcher.step(force=True)
    tries = sim_card(bridge_counter).pin.tries_left
    for function, args in (("iReadCardBas", {}), ("iVerifyPIN", {"pPIN": "000000"}),
                           ("iChangePIN", {"pOldPIN": "123456", "pNewPIN": "654321"})):
        out = call(bridge_counter, function, iType=3, **args)
        assert out["result"] == -0x6A81 and "挂失" in out["pOutInfo"], out
    assert sim_card(bridge_counter).pin.tries_left == tries


def test_a_counterfeit_card_is_minus_21(bridge_counter):
    from sim.issuer import Issuer
    from sim.personalize import issue_sample

    fake = issue_sample("zhang_san", issuer=Issuer())
    next(iter(bridge_counter.terminal.sessions.values())).reader.insert(fake)
    out = call(bridge_counter, "iReadCardBas", iType=3)
    assert out["result"] == -21 and out["message"].startswith("内部认证失败")
    out = call(bridge_counter, "iVerifyPIN", iType=3, pPIN="999999")
    assert out["result"] == -21 and fake.pin.tries_left == fake.pin.max_tries  # the PIN never reached it


# ---- bad calls ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("body,code", [
    ({"function": "iReadCardBass", "iType": 3}, -13),
    ({"function": "iReadCard", "iType": 3}, -13),  # a real function this bridge does not offer
    ({"function": "iReadCardBas"}, -14),
    ({"function": "iReadCardBas", "iType": "three"}, -14),
    ({"function": "iReadCardBas", "iType": True}, -14),
    ({"function": "iReadCardBas", "iType": 7}, -14),
    ({"function": "iReadCardBas", "iType": 3, "pOutInfo": ""}, -14),
    ({"function": "iReadCardBas", "iType": 3, "args": {"iType": 3}}, -14),
    ({"function": "iReadCardBas", "args": [3, 4]}, -14),
    ({"function": "iReadCardBas", "args": "3"}, -14),
    ({"function": 5}, -14),
    ({"iType": 3}, -14),
    ([], -14),
    ({"function": "iVerifyPIN", "iType": 3, "pPIN": 123456}, -14),
    ({"function": "iVerifyPIN", "iType": 3, "pPIN": "12ab56"}, -23),
    ({"function": "iVerifyPIN", "iType": 3, "pPIN": "123"}, -33),
    ({"function": "iReadCardBas_HSM_Step2", "pKey": "00|00|"}, -14),  # no step 1 before it
    ({"function": "iReadCardBas_HSM_Step2", "pKey": "00|00|", "handle": "forged"}, -14),
])
def test_bad_calls_get_their_code_and_touch_no_card(bridge_counter, body, code):
    card = sim_card(bridge_counter)
    before = card.pin.tries_left
    r = httpx.post(f"{bridge_counter.url}/v1/bridge", json=body, headers=bridge_counter.headers())
    assert r.status_code == 200 and r.json()["result"] == code, r.text
    assert r.json()["success"] == code and r.json()["pOutInfo"]  # the description of what was wrong
    assert card.pin.tries_left == before


def test_not_json_and_oversized_calls(bridge_counter):
    r = httpx.post(f"{bridge_counter.url}/v1/bridge", content=b"iReadCardBas(3)", headers=bridge_counter.headers())
    assert r.json()["result"] == -14
    big = json.dumps({"function": "iReadCardBas", "iType": 3, "pad": "x" * 5000})
    r = httpx.post(f"{bridge_counter.url}/v1/bridge", content=big, headers=bridge_counter.headers())
    assert r.status_code == 413 and r.json()["result"] == -14 and "4096" in r.json()["pOutInfo"]


# ---- PIN ------------------------------------------------------------------------------------------------------
def test_verify_pin_tries_left_then_blocked_and_no_pin_in_the_logs(bridge_counter, caplog):
    card = sim_card(bridge_counter)
    with caplog.at_level(logging.DEBUG):
        assert call(bridge_counter, "iVerifyPIN", iType=3, pPIN="123456")["result"] == 0
        for left in (2, 1):
            out = call(bridge_counter, "iVerifyPIN", iType=3, pPIN="654321")
            assert (out["result"], out["tries_left"]) == (-51, left) and str(left) in out["pOutInfo"]
        assert call(bridge_counter, "iVerifyPIN", iType=3, pPIN="654321")["result"] == -52
        assert call(bridge_counter, "iVerifyPIN", iType=3, pPIN="123456")["result"] == -52
    assert card.pin.tries_left == 0
    text = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "654321" not in text and "123456" not in text
    assert any(getattr(r, "event", "") == "bridge.call" and r.result == -51 for r in caplog.records)


def test_change_pin(bridge_counter):
    assert call(bridge_counter, "iChangePIN", iType=3, pOldPIN="000000", pNewPIN="246810")["result"] == -51
    assert call(bridge_counter, "iChangePIN", iType=3, pOldPIN="123456", pNewPIN="246810")["result"] == 0
    assert call(bridge_counter, "iVerifyPIN", iType=3, pPIN="246810")["result"] == 0
    assert call(bridge_counter, "iVerifyPIN", iType=3, pPIN="123456")["tries_left"] == 2


# ---- a third-generation card, and the HSM two-step --------------------------------------------------------------
def test_v3_card_is_read_with_the_counters_psam(centre):
    k = start_counter(centre, f"memory:{V3_IMAGE}")
    try:
        out = call(k, "iReadCardBas", iType=1)
        assert out["result"] == 0 and out["pOutInfo"].startswith("440300|440304197511200019|E44021893|")
    finally:
        k.stop()


def test_v3_card_without_psam_goes_through_the_centres_hsm(v3_without_psam, centre):
    k = v3_without_psam
    out = call(k, "iReadCardBas", iType=3)
    assert out["result"] == -2201, out  # a page's cue to use the HSM two-step
    step1 = call(k, "iReadCardBas_HSM_Step1", iType=3)
    assert step1["result"] == 0 and step1["handle"]
    f = step1["pOutInfo"].split("|")
    assert len(f) == 10 and f[0] == "440300" and f[2] == "03" and f[3] == "440300D1560000053A5B6C7D8E9F0011"
    assert f[1] == "0086535A33303034"  # the ATR's historical bytes
    assert all(len(p) == 16 for p in f[4:8])  # SM4: random and challenge, 16 bytes each, in 8-byte pieces
    out = call(k, "iReadCardBas_HSM_Step2", pKey=hsm_answer(centre.hsm, step1["pOutInfo"]), handle=step1["handle"])
    assert out["result"] == 0, out
    assert out["pOutInfo"].split("|")[:5] == ["440300", "440304197511200019", "E44021893",
                                              "440300D1560000053A5B6C7D8E9F0011", "林志明"]
    # good once
    again = call(k, "iReadCardBas_HSM_Step2", pKey=hsm_answer(centre.hsm, step1["pOutInfo"]), handle=step1["handle"])
    assert again["result"] == -14 and "已使用过" in again["pOutInfo"]


def test_step2_without_a_handle_takes_the_callers_own_step1(v3_without_psam, centre):
    step1 = call(v3_without_psam, "iReadCardBas_HSM_Step1", iType=3)
    out = call(v3_without_psam, "iReadCardBas_HSM_Step2", pKey=hsm_answer(centre.hsm, step1["pOutInfo"]))
    assert out["result"] == 0, out


def test_an_hsm_answer_that_disagrees_with_the_card_is_minus_25_and_goes_no_further(v3_without_psam, centre):
    k = v3_without_psam
    card = sim_card(k)
    step1 = call(k, "iReadCardBas_HSM_Step1", iType=3)
    ia, ea, _ = hsm_answer(centre.hsm, step1["pOutInfo"]).split("|")
    wrong = ("00" if ia[:2] != "00" else "11") + ia[2:]
    tries = dict(card.key_tries)
    out = call(k, "iReadCardBas_HSM_Step2", pKey=f"{wrong}|{ea}|", handle=step1["handle"])
    assert out["result"] == -25 and out["message"] == "内部认证结果与加密机不一致"
    assert card.key_tries == tries and not card.ext_auth  # no EXTERNAL AUTHENTICATE was sent


@pytest.mark.parametrize("pkey,code", [("ZZ|ZZ|", -41), ("0011|2233|", -42), ("just one value", -23)])
def test_a_malformed_pkey(v3_without_psam, pkey, code):
    step1 = call(v3_without_psam, "iReadCardBas_HSM_Step1", iType=3)
    assert call(v3_without_psam, "iReadCardBas_HSM_Step2", pKey=pkey, handle=step1["handle"])["result"] == code


def test_a_wrong_cryptogram_is_the_cards_status_word(v3_without_psam, centre):
    step1 = call(v3_without_psam, "iReadCardBas_HSM_Step1", iType=3)
    ia, _ea, _ = hsm_answer(centre.hsm, step1["pOutInfo"]).split("|")
    out = call(v3_without_psam, "iReadCardBas_HSM_Step2", pKey=f"{ia}|{'00' * 16}|", handle=step1["handle"])
    assert out["result"] == -0x63C4  # 63C4: the card counts a wrong external authentication, 4 tries left


def test_step1_holds_the_reader_until_step2_or_expiry(v3_without_psam, centre):
    k = v3_without_psam
    bridge = k.http.server.config.app.state.bridge
    step1 = call(k, "iReadCardBas_HSM_Step1", iType=3)
    r = httpx.post(f"{k.url}/v1/visits", json={"care": "outpatient"}, headers=k.headers())
    assert r.status_code == 409 and r.json()["code"] == "READER_BUSY"  # the card's challenge is kept for step 2
    assert call(k, "iReadCardBas", iType=3)["result"] == -11
    now = [0.0]
    bridge.pending.clock = lambda: now[0]
    bridge.pending._pending[step1["handle"]].expires = 60.0
    assert bridge.pending.sweep() == 0
    now[0] = 60.0
    assert bridge.pending.sweep() == 1
    out = call(k, "iReadCardBas_HSM_Step2", pKey=hsm_answer(centre.hsm, step1["pOutInfo"]), handle=step1["handle"])
    assert out["result"] == -14 and "已过期" in out["pOutInfo"]
    assert call(k, "iReadCardBas", iType=3)["result"] == -2201  # the reader is free again


def test_another_callers_handle_is_refused(v3_without_psam, centre):
    step1 = call(v3_without_psam, "iReadCardBas_HSM_Step1", iType=3)
    out = call(v3_without_psam, "iReadCardBas_HSM_Step2", token=PAGE_TOKEN, handle=step1["handle"],
               pKey=hsm_answer(centre.hsm, step1["pOutInfo"]))
    assert out["result"] == -14
    out = call(v3_without_psam, "iReadCardBas_HSM_Step2", handle=step1["handle"],
               pKey=hsm_answer(centre.hsm, step1["pOutInfo"]))
    assert out["result"] == 0  # still good for its own caller


# ---- WebSocket --------------------------------------------------------------------------------------------------
def test_websocket_page_reads_the_card_and_verifies_the_pin(bridge_counter):
    with connect(ws_url(bridge_counter), origin=PAGE_ORIGIN) as ws:
        ws.send(json.dumps({"function": "iReadCardBas", "iType": 3}))
        out = json.loads(ws.recv(timeout=15))
        assert out["functionName"] == "iReadCardBas" and out["success"] == 1
        assert out["pOutInfo"].split("|")[4] == "张三"
        ws.send(json.dumps({"function": "iVerifyPIN", "iType": 3, "pPIN": "000000"}))
        assert json.loads(ws.recv(timeout=15))["result"] == -51
        ws.send("not json")
        assert json.loads(ws.recv(timeout=15))["result"] == -14
        ws.send(json.dumps({"function": "nope"}))
        assert json.loads(ws.recv(timeout=15))["result"] == -13


def test_websocket_two_step_and_a_page_that_leaves_frees_the_reader(v3_without_psam, centre):
    k = v3_without_psam
    with connect(ws_url(k)) as ws:
        ws.send(json.dumps({"function": "iReadCardBas_HSM_Step1", "iType": 3}))
        step1 = json.loads(ws.recv(timeout=15))
        ws.send(json.dumps({"function": "iReadCardBas_HSM_Step2", "pKey": hsm_answer(centre.hsm, step1["pOutInfo"])}))
        assert json.loads(ws.recv(timeout=15))["pOutInfo"].split("|")[4] == "林志明"
        ws.send(json.dumps({"function": "iReadCardBas_HSM_Step1", "iType": 3}))
        assert json.loads(ws.recv(timeout=15))["result"] == 0  # and the page goes away without step 2
    bridge = k.http.server.config.app.state.bridge
    for _ in range(100):
        if not bridge.pending._pending:
            break
        import time

        time.sleep(0.05)
    assert not bridge.pending._pending
    assert call(k, "iReadCardBas", iType=3)["result"] == -2201  # the reader is free


def test_websocket_refusals(bridge_counter):
    for url, origin in ((ws_url(bridge_counter, "wrong-token"), None),
                        (f"ws://127.0.0.1:{bridge_counter.http.port}/v1/bridge/ws", None),
                        (ws_url(bridge_counter), "https://evil.example.com")):
        with pytest.raises(InvalidStatus) as e:
            connect(url, origin=origin).close()
        assert e.value.response.status_code == 403
    with connect(ws_url(bridge_counter)) as ws:  # no Origin: not a browser page
        ws.send(json.dumps({"function": "iReadCardBas", "iType": 3, "pad": "x" * 5000}))
        assert json.loads(ws.recv(timeout=15))["result"] == -14
        with pytest.raises(Exception):  # noqa: B017 - closed by the server (1009)
            ws.recv(timeout=15)


def test_a_bridge_token_opens_the_bridge_and_nothing_else(bridge_counter):
    r = httpx.post(f"{bridge_counter.url}/v1/bridge", params={"access_token": PAGE_TOKEN},
                   json={"function": "iReadCardBas", "iType": 3})
    assert r.json()["result"] == 0
    for method, path in (("GET", "/v1/readers"), ("GET", "/v1/card"), ("POST", "/v1/visits")):
        r = httpx.request(method, f"{bridge_counter.url}{path}", headers={"Authorization": f"Bearer {PAGE_TOKEN}"},
                          json={"care": "outpatient"} if method == "POST" else None)
        assert r.status_code == 401, (path, r.text)
    r = httpx.post(f"{bridge_counter.url}/v1/bridge", json={"function": "iReadCardBas", "iType": 3})
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"
    r = httpx.post(f"{bridge_counter.url}/v1/bridge", headers={"Origin": "https://evil.example.com"},
                   params={"access_token": PAGE_TOKEN}, json={"function": "iReadCardBas", "iType": 3})
    assert r.status_code == 403 and r.json()["code"] == "CORS_ORIGIN_NOT_ALLOWED"


def test_only_pages_on_this_machine(bridge_counter):
    from starlette.datastructures import Headers

    from terminal.routers.bridge import _refusal

    t = bridge_counter.terminal
    headers = Headers({"authorization": f"Bearer {bridge_counter.token}"})
    assert _refusal({"client": ("192.168.1.20", 5000)}, headers, None, t)[0] == "BRIDGE_REMOTE_REFUSED"
    assert _refusal({"client": ("127.0.0.1", 5000)}, headers, None, t)[0] is None
