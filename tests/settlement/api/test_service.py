"""The HTTP service through FastAPI's TestClient and the typed client: auth, error bodies, idempotent
repeats, roles, OpenAPI."""

from __future__ import annotations

import datetime as dt
import warnings

import httpx
import pytest

from settlement import errors
from settlement.api.auth import KeyRing, TerminalKey, hash_key, load_terminal_keys
from settlement.api.client import SettlementClient
from settlement.api.service import create_app
from settlement.wire import FeeLineIn
from tests.settlement.flows_helpers import Clock, Y, make_engine

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

COUNTER, OPERATOR = "counter-key-1", "operator-key-1"
TERMINALS = [TerminalKey("T1", hash_key(COUNTER), institution="BJ3"),
             TerminalKey("OPS", hash_key(OPERATOR), operator=True)]
LINES = [FeeLineIn(feedetl_sn="1", med_list_codg="X01", chrgitm_lv="01", det_item_fee_sumamt=45_000 * Y),
         FeeLineIn(feedetl_sn="2", chrgitm_lv="02", det_item_fee_sumamt=3_000 * Y),
         FeeLineIn(feedetl_sn="3", chrgitm_lv="03", det_item_fee_sumamt=2_000 * Y)]


@pytest.fixture
def app(store):
    return create_app(make_engine(store, Clock()), terminals=TERMINALS)


@pytest.fixture
def http(app):
    with TestClient(app) as c:
        yield c


@pytest.fixture
def svc(http):
    return SettlementClient("http://testserver", COUNTER, http=http)


def raw(http, method, path, key=COUNTER, **kw):
    return http.request(method, path, headers={"X-Terminal-Key": key} if key else {}, **kw)


def test_health_needs_no_key_but_everything_else_does(http):
    assert http.get("/v1/health").json() == {"status": "ok"}
    for key in (None, "wrong"):
        r = raw(http, "GET", "/v1/persons/EMP", key=key)
        assert r.status_code == 401
        assert r.json()["code"] == "UNAUTHORIZED" and r.json()["message"]


def test_visit_settle_refund_void_through_the_client(svc):
    visit = svc.register_visit(serial="0001", person_id="EMP", institution="BJ3", care="inpatient", card_no="C0000001")
    pre = svc.presettle(mdtrt_id=visit.mdtrt_id, lines=LINES)
    s = svc.settle(serial="0002", mdtrt_id=visit.mdtrt_id, lines=LINES)
    assert s.setl_id == "T1:0002" and s.breakdown == pre.breakdown
    assert (s.breakdown.hifp_pay, s.breakdown.acct_pay, s.breakdown.psn_cash_pay) == (40_710 * Y, 5_000 * Y, 4_290 * Y)
    again = svc.settle(serial="0002", mdtrt_id=visit.mdtrt_id, lines=LINES)
    assert again.replayed and again.model_copy(update={"replayed": False}) == s
    assert svc.posting("T1:0002").kind == "medical.settle"
    assert svc.accumulators("EMP", 2024, card_no="C0000001").admissions == 1
    r = svc.refund(serial="0003", setl_id=s.setl_id, amount=10_000 * Y)
    assert r.refundable_after == 40_000 * Y
    v = svc.void(serial="0004", setl_id=s.setl_id)
    assert v.status == "voided" and v.reversed.medfee_sumamt == 40_000 * Y
    assert svc.settlement(s.setl_id).status == "voided"
    assert svc.person_balances("EMP", card_no="C0000001").personal_account == 5_000 * Y


def test_typed_errors_reach_the_client(svc, app):
    visit = svc.register_visit(serial="0001", person_id="EMP", institution="BJ3", care="inpatient", card_no="C0000001")
    s = svc.settle(serial="0002", mdtrt_id=visit.mdtrt_id, lines=LINES)
    with pytest.raises(errors.RefundTooLarge) as e:
        svc.refund(serial="0003", setl_id=s.setl_id, amount=60_000 * Y)
    assert e.value.details["refundable"] == 50_000 * Y
    with pytest.raises(errors.IdempotencyConflict):
        svc.settle(serial="0002", mdtrt_id=visit.mdtrt_id, lines=LINES[:1])
    with pytest.raises(errors.UnknownVisit):
        svc.presettle(mdtrt_id="MDNOPE", lines=LINES)
    app.state.engine.pensions.enrol("RET", 3_000 * Y, "2024-01")
    with pytest.raises(errors.NotCertified):
        svc.collect_pension(serial="0004", person_id="RET", amount=1, institution="BJ3", card_no="C0000002")


@pytest.mark.parametrize(
    ("amount", "code"),
    [(-100, "INVALID_AMOUNT"), (12.5, "INVALID_AMOUNT"), ("100", "INVALID_AMOUNT"), (0, "INVALID_AMOUNT")],
)
def test_bad_amounts_get_error_bodies_and_post_nothing(http, amount, code):
    visit = raw(http, "POST", "/v1/medical/visits", json={
        "terminal_serial": "1", "person_id": "EMP", "institution": "BJ3", "care": "outpatient",
        "card_no": "C0000001"}).json()
    body = {"terminal_serial": "2", "mdtrt_id": visit["mdtrt_id"],
            "lines": [{"chrgitm_lv": "A", "det_item_fee_sumamt": amount}]}
    r = raw(http, "POST", "/v1/medical/settle", json=body)
    assert r.status_code == 422
    assert r.json()["code"] == code and r.json()["message"]
    assert raw(http, "GET", "/v1/postings/T1:2").json()["code"] == "UNKNOWN_TRANSACTION"


def test_other_error_statuses(http):
    r = raw(http, "POST", "/v1/medical/visits", key=OPERATOR, json={
        "terminal_serial": "1", "person_id": "NOBODY", "institution": "BJ3", "care": "outpatient"})
    assert (r.status_code, r.json()["code"]) == (404, "UNKNOWN_PERSON")
    assert r.json()["details"] == {"person_id": "NOBODY"}
    r = raw(http, "POST", "/v1/medical/visits", json={
        "terminal_serial": "bad serial!", "person_id": "EMP", "institution": "BJ3", "care": "outpatient"})
    assert (r.status_code, r.json()["code"]) == (422, "INVALID_REQUEST")
    r = raw(http, "POST", "/v1/medical/visits", json={"terminal_serial": "1", "person_id": "EMP"})
    assert r.json()["code"] == "INVALID_REQUEST" and "institution" in r.json()["message"]


def test_roles_and_institution_binding(http):
    r = raw(http, "POST", "/v1/medical/visits", json={
        "terminal_serial": "1", "person_id": "EMP", "institution": "BJ1", "care": "outpatient"})
    assert (r.status_code, r.json()["code"]) == (403, "OTHER_INSTITUTION")
    for method, path, body in [("POST", "/v1/pension/issue", {"region": "110000", "month": "2024-03"}),
                               ("GET", "/v1/balances?code=110000/fund/hifp", None),
                               ("GET", "/v1/fraud/flags", None),
                               ("POST", "/v1/persons/RET/death-report", {"death_date": "2024-02-01"})]:
        r = raw(http, method, path, json=body)
        assert (r.status_code, r.json()["code"]) == (403, "FORBIDDEN"), path
    assert raw(http, "GET", "/v1/postings/OPS:1").json()["code"] == "NOT_OWN_KEY"
    # a settlement at BJ1 (made by the operator) cannot be refunded or voided by BJ3's terminal
    ops = SettlementClient("http://testserver", OPERATOR, http=TestClient(http.app))
    visit = ops.register_visit(serial="1", person_id="EMP", institution="BJ1", care="outpatient")
    s = ops.settle(serial="2", mdtrt_id=visit.mdtrt_id, lines=LINES[:1])
    for path, refusal in (("/v1/medical/refund", "OTHER_INSTITUTION"), ("/v1/medical/void", "NOT_OWN_KEY")):
        r = raw(http, "POST", path, json={"terminal_serial": "9", "setl_id": s.setl_id})
        assert r.json()["code"] == refusal, path


def test_pension_day_over_http(http):
    ops = SettlementClient("http://testserver", OPERATOR, http=http)
    counter = SettlementClient("http://testserver", COUNTER, http=TestClient(http.app))
    http.app.state.engine.pensions.enrol("RET", 3_000 * Y, "2024-01")
    c = counter.certify(serial="c1", person_id="RET", method="card_pin", card_no="C0000002", pin_verified=True)
    assert c.passed and counter.certification_status("RET", card_no="C0000002").certified
    batch = ops.issue_pensions(region="110000", month="2024-03")
    assert batch.issued == ["RET"] and ops.issue_pensions(region="110000", month="2024-03").already_issued == ["RET"]
    got = counter.collect_pension(serial="p1", person_id="RET", amount=1_000 * Y, institution="BJ3",
                                  card_no="C0000002")
    assert got.balance_after == 2_000 * Y
    assert ops.balances(["inst/BJ3/cash"]) == {"inst/BJ3/cash": 1_000 * Y}
    assert [a.event for a in ops.audit_trail("RET")] == ["certified"]
    assert counter.pensioner("RET", card_no="C0000002").status == 1
    counter.collect_pension(serial="p2", person_id="RET", amount=500 * Y, institution="BJ3", card_no="C0000002")
    v = counter.void_collection(serial="v2", collection_key="T1:p2")  # the counter never got p2's answer
    assert (v.status, v.amount) == ("voided", 500 * Y)
    assert counter.void_collection(serial="v2", collection_key="T1:p2").replayed
    assert ops.balances(["inst/BJ3/cash"]) == {"inst/BJ3/cash": 1_000 * Y}
    early = counter.void_collection(serial="v3", collection_key="T1:p3")
    assert early.status == "voided_before_arrival"
    with pytest.raises(errors.AlreadyReversed):
        counter.collect_pension(serial="p3", person_id="RET", amount=500 * Y, institution="BJ3", card_no="C0000002")
    r = raw(http, "POST", "/v1/pension/void", json={"terminal_serial": "v4", "collection_key": "T2:p1"})
    assert (r.status_code, r.json()["code"]) == (403, "NOT_OWN_KEY")
    ops.report_death("RET", dt.date(2024, 2, 25), source="civil affairs")
    assert {f.detail["key"] for f in ops.fraud_flags(person_id="RET")} == {"pension:RET:2024-03", "T1:p1"}


def test_openapi_describes_the_contract(http):
    spec = http.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["APIKeyHeader"] == {
        "type": "apiKey", "in": "header", "name": "X-Terminal-Key", "description": "the terminal's API key"}
    breakdown = spec["components"]["schemas"]["Breakdown"]["properties"]
    for name in ("medfee_sumamt", "fulamt_ownpay_amt", "preselfpay_amt", "inscp_scp_amt", "act_pay_dedc", "hifp_pay",
                 "hifob_pay", "hifmi_pay", "maf_pay", "fund_pay_sumamt", "acct_pay", "psn_cash_pay", "balc"):
        assert name in breakdown
    settle = spec["paths"]["/v1/medical/settle"]["post"]
    assert settle["operationId"] == "settle"
    assert settle["responses"]["409"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")


def test_client_timeout_is_service_unreachable():
    def hang(request):
        raise httpx.ReadTimeout("slow", request=request)

    svc = SettlementClient("http://svc", COUNTER, transport=httpx.MockTransport(hang))
    with pytest.raises(errors.ServiceUnreachable) as e:
        svc.settle(serial="1", mdtrt_id="MD1", lines=LINES)
    assert e.value.details["outcome_unknown"] is True and e.value.http_status == 503


def test_keys_file_and_key_ring(tmp_path):
    path = tmp_path / "keys.toml"
    path.write_text(f'[terminal.T1]\nkey_sha256 = "{hash_key("k")}"\ninstitution = "BJ3"\n'
                    f'[terminal.OPS]\nkey_sha256 = "{hash_key("o")}"\noperator = true\n')
    ring = KeyRing(load_terminal_keys(path))
    assert ring.find("k").institution == "BJ3" and ring.find("o").operator
    assert ring.find("x") is None and ring.find("") is None
    with pytest.raises(ValueError, match="share a key"):
        KeyRing([TerminalKey("A", hash_key("k"), "BJ3"), TerminalKey("B", hash_key("k"), "BJ3")])
    with pytest.raises(ValueError, match="64 lowercase hex"):
        TerminalKey("A", "plaintext-key")
