"""The daemon's contract for browsers and code generators, tried as a HIS developer and a hostile page would:
OpenAPI (stable operationIds, typed answers, examples that fit), one error shape for every status, messages
in Chinese and English, CORS with Private Network Access, the events token in the URL, Idempotency-Key.

Sources for the rules tested: WICG Private Network Access ("CORS preflight": `Access-Control-Request-
Private-Network` / `Access-Control-Allow-Private-Network`); IETF draft-ietf-httpapi-idempotency-key-header
(422 for a key reused with another payload, 409 while the first is in flight); the WHATWG HTML standard's
EventSource (no request headers, hence the token in the URL).
"""

from __future__ import annotations

import re
import sqlite3
import tomllib
from pathlib import Path

import httpx
import pytest
from pydantic import TypeAdapter

from settlement import errors as settlement_errors
from sscard.stack import start_centre, start_counter
from terminal import i18n
from terminal.errors import CARD_ERRORS
from terminal.idempotency import IdempotencyStore, fingerprint
from terminal.routers import ALL
from tests.terminal.conftest import LINES

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = "https://his.example.org"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    centre = start_centre(tmp_path_factory.mktemp("contract-centre"))
    counter = start_counter(centre, cors={"allow_origins": [ALLOWED]})
    yield counter
    counter.stop()
    centre.stop()


@pytest.fixture
def api(daemon):
    with httpx.Client(base_url=daemon.url, headers=daemon.headers(), timeout=15) as c:
        yield c


def app_of(counter):
    return counter.http.server.config.app


# ---- OpenAPI -------------------------------------------------------------------------------------------------
def test_every_operation_has_a_stable_id_a_typed_answer_and_an_example_that_fits(daemon):
    spec = httpx.get(f"{daemon.url}/openapi.json").json()
    ids = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            ids.append(op["operationId"])
            assert re.fullmatch(r"[a-z][A-Za-z]+", op["operationId"]), where  # chosen, not generated
            ok = op["responses"]["200"]["content"]
            media, body = next(iter(ok.items()))
            assert "example" in body and body["example"] is not None, where
            if media == "application/json":
                assert "schema" in body and body["schema"] != {}, where  # typed, not "any object"
            assert op["responses"]["default"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorBody")
    assert len(ids) == len(set(ids)) >= 18
    # each example is an instance of its route's response model
    for router in ALL:
        for route in router.routes:
            model = getattr(route, "response_model", None)
            if model is None:
                continue
            example = route.responses[200]["content"]["application/json"]["example"]
            TypeAdapter(model).validate_python(example)


def test_amounts_are_documented_as_fen(daemon):
    schemas = httpx.get(f"{daemon.url}/openapi.json").json()["components"]["schemas"]

    def text(prop):
        return str(prop.get("description", "")) + str(prop.get("anyOf", ""))

    for name, field in (("RefundIn", "amount"), ("CollectIn", "amount"), ("FeeLineIn", "det_item_fee_sumamt"),
                        ("Receipt", "amount"), ("AmountLine", "amount")):
        assert "fen" in text(schemas[name]["properties"][field]), (name, field)


def test_docs_load_nothing_from_another_host(daemon):
    html = httpx.get(f"{daemon.url}/docs").text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), html
    for asset in re.findall(r"""(?:src|href)=["']([^"']+)""", html):
        assert httpx.get(f"{daemon.url}{asset}").status_code == 200, asset
    lic = httpx.get(f"{daemon.url}/static/vendor/swagger-ui/LICENSE").text
    assert "Apache License" in lic


# ---- one error shape, two languages ---------------------------------------------------------------------------
@pytest.mark.parametrize("method,path,status,code", [
    ("GET", "/v1/nowhere", 404, "NOT_FOUND"),
    ("DELETE", "/v1/readers", 405, "METHOD_NOT_ALLOWED"),
    ("POST", "/v1/visits", 422, "INVALID_REQUEST"),
    ("GET", "/v1/receipts/T0001:999", 404, "UNKNOWN_TRANSACTION"),
    ("GET", "/v1/readers?x", 401, "UNAUTHORIZED"),
])
def test_every_status_has_the_one_error_shape_in_both_languages(daemon, method, path, status, code):
    auth = {} if code == "UNAUTHORIZED" else daemon.headers()
    for lang, expect in (("zh-CN,zh;q=0.9,en;q=0.5", "zh"), ("en-US,en;q=0.9", "en"), (None, "en")):
        headers = auth | ({"Accept-Language": lang} if lang else {})
        r = httpx.request(method, f"{daemon.url}{path}", headers=headers, json=[] if method == "POST" else None)
        assert r.status_code == status, r.text
        body = r.json()
        assert set(body) == {"code", "message", "details"} and body["code"] == code
        assert r.headers["content-language"] == expect
        assert bool(re.search(r"[\u4e00-\u9fff]", body["message"])) == (expect == "zh"), body


def test_language_negotiation():
    assert i18n.language("en;q=0.5, zh-CN;q=0.8") == "zh"
    assert i18n.language("zh;q=0, en") == "en"
    assert i18n.language("fr, de") == "en" and i18n.language("") == "en"
    assert i18n.language("zh-Hans-CN") == "zh"


def test_every_error_code_has_a_chinese_and_an_english_message():
    """Codes the terminal raises (in its source), the card errors and every code the centre defines."""
    codes = {code for _, code, _ in CARD_ERRORS}
    codes |= {v.code for v in vars(settlement_errors).values()
              if isinstance(v, type) and issubclass(v, settlement_errors.SettlementError)}
    for f in (ROOT / "terminal").rglob("*.py"):
        codes |= set(re.findall(r'TerminalError\(\s*f?"([A-Z_]+)"', f.read_text()))
        codes |= set(re.findall(r'^\s+code = "([A-Z_]+)"', f.read_text(), re.M))
    table = tomllib.loads((ROOT / "terminal" / "messages.toml").read_text())
    missing = sorted(c for c in codes if c not in table)
    assert not missing, missing
    for code, entry in table.items():
        assert set(entry) == {"zh", "en"}, code
        assert re.search(r"[\u4e00-\u9fff]", entry["zh"]), code


# ---- CORS and Private Network Access -------------------------------------------------------------------------
def preflight(daemon, origin, *, pna=True, method="POST", headers="authorization,content-type,idempotency-key"):
    h = {"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers}
    if pna:
        h["Access-Control-Request-Private-Network"] = "true"
    return httpx.options(f"{daemon.url}/v1/visits", headers=h)


def test_an_allowed_origin_passes_the_preflight_with_private_network_access(daemon):
    r = preflight(daemon, ALLOWED)
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ALLOWED
    assert r.headers["access-control-allow-private-network"] == "true"
    assert "idempotency-key" in r.headers["access-control-allow-headers"].lower()
    r = httpx.get(f"{daemon.url}/v1/readers", headers=daemon.headers() | {"Origin": ALLOWED})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ALLOWED
    assert "Idempotent-Replayed" in r.headers["access-control-expose-headers"]


def test_a_disallowed_origin_is_refused_clearly_and_gets_no_private_network_grant(daemon):
    r = preflight(daemon, "https://evil.example.com")
    assert r.status_code == 403 and r.json()["code"] == "CORS_ORIGIN_NOT_ALLOWED"
    assert "https://evil.example.com" in r.json()["message"]
    assert "access-control-allow-origin" not in r.headers
    assert "access-control-allow-private-network" not in r.headers
    # a request without preflight (an EventSource, a form) is refused before it does anything
    r = httpx.post(f"{daemon.url}/v1/visits", headers=daemon.headers() | {"Origin": "https://evil.example.com"},
                   json={"care": "outpatient"})
    assert r.status_code == 403 and r.json()["code"] == "CORS_ORIGIN_NOT_ALLOWED"
    # an allowed origin asking for a header the daemon does not take is told which part was refused
    r = preflight(daemon, ALLOWED, headers="x-weird")
    assert r.status_code == 403 and r.json()["code"] == "CORS_PREFLIGHT_REFUSED" and "headers" in r.json()["message"]


def test_the_counter_page_own_origin_needs_no_configuration(daemon):
    r = httpx.get(f"{daemon.url}/v1/readers", headers=daemon.headers() | {"Origin": daemon.url})
    assert r.status_code == 200


def test_cors_config_refuses_what_is_not_an_origin():
    from terminal.config import CorsSection

    with pytest.raises(ValueError, match="not an origin"):
        CorsSection(allow_origins=["https://his.example.org/path"])


# ---- the events token in the URL ------------------------------------------------------------------------------
def test_events_token_opens_the_stream_only_until_it_expires(daemon, api):
    tokens = app_of(daemon).state.event_tokens
    now = [1000.0]
    real_clock, tokens.clock = tokens.clock, lambda: now[0]
    try:
        r = api.post("/v1/readers/events/token", json={})
        assert r.status_code == 200, r.text
        grant = r.json()
        assert grant["expires_in"] == 60 and grant["token"] in grant["url"]
        with httpx.stream("GET", f"{daemon.url}{grant['url']}&timeout=0", timeout=10) as s:
            assert s.status_code == 200
            assert next(s.iter_lines()) == ": connected"
        # the token is for the event stream only
        r = httpx.get(f"{daemon.url}/v1/readers", params={"access_token": grant["token"]})
        assert r.status_code == 401
        r = httpx.get(f"{daemon.url}/v1/card", headers={"Authorization": f"Bearer {grant['token']}"})
        assert r.status_code == 401
        # and for its reader only
        r = httpx.get(f"{daemon.url}/v1/readers/events", params={"access_token": grant["token"], "reader": "nope"})
        assert r.status_code == 404
        # past its lifetime it opens nothing, however often it is shown
        now[0] += 61
        for _ in range(2):
            r = httpx.get(f"{daemon.url}{grant['url']}&timeout=0")
            assert r.status_code == 401 and r.json()["code"] == "EVENTS_TOKEN_INVALID"
        r = httpx.get(f"{daemon.url}/v1/readers/events", params={"access_token": "made-up", "timeout": 0})
        assert r.status_code == 401
    finally:
        tokens.clock = real_clock


def test_events_token_needs_the_bearer_token(daemon):
    r = httpx.post(f"{daemon.url}/v1/readers/events/token", json={})
    assert r.status_code == 401


# ---- Idempotency-Key ------------------------------------------------------------------------------------------
def test_a_retried_settle_gets_the_first_answer_and_settles_once(daemon, api):
    t = daemon.terminal
    mdtrt = api.post("/v1/visits", json={}, headers={"Idempotency-Key": "reg-1"}).json()["mdtrt_id"]
    again = api.post("/v1/visits", json={}, headers={"Idempotency-Key": "reg-1"})
    assert again.json()["mdtrt_id"] == mdtrt and again.headers["idempotent-replayed"] == "true"
    body = {"lines": LINES, "pin": "123456"}
    first = api.post(f"/v1/visits/{mdtrt}/settle", json=body, headers={"Idempotency-Key": "settle-1"})
    assert first.status_code == 200, first.text
    assert "idempotent-replayed" not in first.headers
    # kept before it was sent: a retry that follows the answer at once finds it (no IN_FLIGHT race)
    db = sqlite3.connect(t.journal.path)
    assert db.execute("SELECT state FROM idempotency WHERE key = 'settle-1'").fetchone() == ("done",)
    db.close()
    second = api.post(f"/v1/visits/{mdtrt}/settle", json=body, headers={"Idempotency-Key": "settle-1"})
    assert second.status_code == 200 and second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert [e.kind for e in t.journal.all() if e.kind == "settle" and e.request["mdtrt_id"] == mdtrt] == ["settle"]
    # without the key the same retry is what it always was: the visit is settled already
    third = api.post(f"/v1/visits/{mdtrt}/settle", json=body)
    assert third.status_code == 409
    # the same key with another request is refused, naming the key
    other = api.post(f"/v1/visits/{mdtrt}/settle", json={"lines": LINES[:1], "pin": "123456"},
                     headers={"Idempotency-Key": "settle-1", "Accept-Language": "zh-CN"})
    assert other.status_code == 422 and other.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert "settle-1" in other.json()["message"] and other.json()["details"]["key"] == "settle-1"
    refund = {"reason": "退药", "operator": "clerk-1", "amount": 10_00}
    key = first.json()["key"]
    r1 = api.post(f"/v1/settlements/{key}/refund", json=refund, headers={"Idempotency-Key": "refund-1"})
    r2 = api.post(f"/v1/settlements/{key}/refund", json=refund, headers={"Idempotency-Key": "refund-1"})
    assert r1.status_code == r2.status_code == 200 and r1.json()["key"] == r2.json()["key"]
    assert len([e for e in t.journal.all() if e.kind == "refund" and e.original_key == key]) == 1


def test_a_retried_wrong_pin_costs_no_second_try_and_no_pin_is_kept(daemon, api):
    mdtrt = api.post("/v1/visits", json={}).json()["mdtrt_id"]
    body = {"lines": LINES, "pin": "987654"}
    r1 = api.post(f"/v1/visits/{mdtrt}/settle", json=body, headers={"Idempotency-Key": "wrong-pin"})
    r2 = api.post(f"/v1/visits/{mdtrt}/settle", json=body, headers={"Idempotency-Key": "wrong-pin"})
    assert r1.json()["code"] == r2.json()["code"] == "PIN_WRONG"
    assert r1.json()["details"]["tries_left"] == r2.json()["details"]["tries_left"] == 2
    assert r2.headers["idempotent-replayed"] == "true"
    # the right PIN under a new key resets the counter and settles
    ok = api.post(f"/v1/visits/{mdtrt}/settle", json={"lines": LINES, "pin": "123456"},
                  headers={"Idempotency-Key": "right-pin"})
    assert ok.status_code == 200, ok.text
    data = b"".join(p.read_bytes() for p in Path(daemon.terminal.journal.path).parent.glob("*journal.db*"))
    assert b'"pin"' not in data and b'"987654"' not in data and b'"123456"' not in data


def test_a_malformed_or_busy_request_is_not_kept_so_its_retry_runs(daemon, api):
    r = api.post("/v1/visits", json={"care": "dental"}, headers={"Idempotency-Key": "fix-me"})
    assert r.status_code == 422
    r = api.post("/v1/visits", json={"care": "outpatient"}, headers={"Idempotency-Key": "fix-me"})
    assert r.status_code == 200 and "idempotent-replayed" not in r.headers
    r = api.post("/v1/visits", json={}, headers={"Idempotency-Key": "has space"})
    assert r.status_code == 422 and r.json()["details"]["where"] == "Idempotency-Key"


def test_keys_are_per_client(daemon, api, tmp_path):
    """Another front end's key is its own: the same string from two tokens is two requests."""
    store = IdempotencyStore(tmp_path / "idem.db")
    fp = fingerprint("POST", "/v1/visits", b"{}")
    assert store.claim("client-a", "k", "POST", "/v1/visits", fp)[0] == "new"
    assert store.claim("client-b", "k", "POST", "/v1/visits", fp)[0] == "new"
    assert store.claim("client-a", "k", "POST", "/v1/visits", fp)[0] == "in_flight"
    store.close()
    # a restart while the first was running: its retry is told so, not run again
    store = IdempotencyStore(tmp_path / "idem.db")
    assert store.claim("client-a", "k", "POST", "/v1/visits", fp)[0] == "interrupted"
    store.close()


def test_the_fingerprint_leaves_the_pin_out():
    a = fingerprint("POST", "/p", b'{"pin": "111111", "lines": [1]}')
    b = fingerprint("POST", "/p", b'{"lines": [1], "pin": "222222"}')
    assert a == b != fingerprint("POST", "/p", b'{"lines": [2], "pin": "111111"}')


def test_idempotency_rows_hold_no_pin(daemon, api):
    api.post("/v1/identity/check", json={"pin": "123456"}, headers={"Idempotency-Key": "id-1"})
    db = sqlite3.connect(daemon.terminal.journal.path)
    rows = db.execute("SELECT * FROM idempotency").fetchall()
    db.close()
    assert rows and not any("123456" in str(r) for r in rows)
