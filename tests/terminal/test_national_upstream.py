"""The terminal on the national platform interface (`[centre] dialect = "national"`, terminal/national.py): what is
particular to it. Every flow, reversal and recovery test also runs on it (DIALECTS in the flow modules).

The platform side is sscard's own (settlement/api/national.py); where a test needs an answer the centre never
gives (amounts with a fraction of a fen, no answer at all), httpx's MockTransport plays the platform.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import httpx
import pytest

from settlement.errors import AlreadyReversed, InvalidRequest, ServiceUnreachable, UnknownTransaction
from settlement.wire import FeeLineIn
from sscard.stack import start_counter
from sscard.world import person_id
from terminal.journal import REVERSED
from terminal.national import CST, MalformedAnswer, NationalCentre, NationalRefusal, fen_of, msgid_serial, refusal
from terminal.recovery import recover
from tests.terminal.conftest import LINES, agree

NATIONAL = {"dialect": "national"}


def at(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=CST)


# ---- the edge: serials, amounts, refusals ---------------------------------------------------------------------
def test_journal_serials_are_msgid_tails():
    now = at("2024-05-01 10:30:00")
    first = msgid_serial(0, now)
    assert first == 202405011030000000
    assert msgid_serial(first, now) == first + 1  # the sequence counts within a second
    assert msgid_serial(first + 1, at("2024-05-01 10:30:07")) == 202405011030070000  # a new second starts at 0000
    assert msgid_serial(202405011030079999, at("2024-05-01 10:30:07")) == 202405011030080000  # spent: next second
    assert msgid_serial(202405011030599999, now) == 202405011031000000  # 59 s + 1 is the next minute, not "60"
    assert msgid_serial(first + 5, at("2024-05-01 10:29:00")) == first + 6  # a clock set back keeps counting
    assert msgid_serial(17, now) == first  # a journal that was native before


@pytest.mark.parametrize("value,fen", [(Decimal("12.3"), 1230), (Decimal("0.01"), 1), ("215", 21500),
                                       (Decimal("-50.00"), -5000), (Decimal("99999999999999.99"), 9999999999999999)])
def test_yuan_in_answers_become_exact_fen(value, fen):
    assert fen_of(value, "x") == fen


@pytest.mark.parametrize("value", [Decimal("12.345"), "abc", Decimal("0.001"), "NaN", None])
def test_an_amount_that_is_not_whole_fen_is_refused_not_rounded(value):
    with pytest.raises(MalformedAnswer, match="x"):
        fen_of(value, "x")


def test_refusals_become_the_typed_errors_they_name():
    assert isinstance(refusal("2208", "已撤销（ALREADY_REVERSED: T0001:1 was already voided）"), AlreadyReversed)
    assert isinstance(refusal("2207", "结算信息不存在（UNKNOWN_TRANSACTION: nope）"), UnknownTransaction)
    assert refusal("1101", "终端密钥缺失或无效（请求头 X-Terminal-Key）").code == "UNAUTHORIZED"
    plain = refusal("2204", "feedetail第1条：医疗目录编码(med_list_codg) 'X' 不在医保目录中")
    assert isinstance(plain, NationalRefusal) and plain.code == "INVALID_REQUEST" and "med_list_codg" in plain.message


# ---- against sscard's platform interface ------------------------------------------------------------------------
@pytest.fixture
def national(centre):
    k = start_counter(centre, upstream=NATIONAL)
    yield k
    k.stop()


@pytest.fixture
def napi(national):
    with httpx.Client(base_url=national.url, headers=national.headers(), timeout=15) as c:
        yield c


def test_the_same_bill_splits_to_the_same_fen_in_both_dialects(centre, napi):
    native = start_counter(centre, terminal_id="T0001")
    try:
        with httpx.Client(base_url=native.url, headers=native.headers(), timeout=15) as api:
            a = api.post("/v1/visits", json={"care": "outpatient"}).json()["mdtrt_id"]
            by_native = api.post(f"/v1/visits/{a}/presettle", json={"lines": LINES}).json()["breakdown"]
        b = napi.post("/v1/visits", json={"care": "outpatient"}).json()["mdtrt_id"]
        by_national = napi.post(f"/v1/visits/{b}/presettle", json={"lines": LINES}).json()["breakdown"]
    finally:
        native.stop()
    money = [k for k in by_native if k not in ("pieces", "notes")]
    assert {k: by_native[k] for k in money} == {k: by_national[k] for k in money}
    assert by_national["medfee_sumamt"] == 215_00


def test_a_settlement_made_through_the_platform_is_the_journals_key_at_the_centre(national, napi, centre):
    mdtrt = napi.post("/v1/visits", json={"care": "outpatient"}).json()["mdtrt_id"]
    r = napi.post(f"/v1/visits/{mdtrt}/settle", json={"lines": LINES, "pin": "123456"})
    assert r.status_code == 200, r.text
    key = r.json()["key"]
    serial = key.split(":")[1]
    assert len(serial) == 18 and dt.datetime.strptime(serial[:14], "%Y%m%d%H%M%S")  # the 2207's msgid tail
    rec = centre.client().settlement(key)  # the same settlement, seen natively under the same id
    assert rec.status == "settled" and rec.mdtrt_id == mdtrt
    # refunds are the native API's (the platform cancels whole settlements only)
    part = napi.post(f"/v1/settlements/{key}/refund", json={"amount": 15_00, "reason": "退药", "operator": "c1"})
    assert part.status_code == 200 and part.json()["amount"] == 15_00, part.text
    assert agree(national.terminal.journal, centre)["confirmed"] == 1


def test_an_inpatient_stay(napi, national, centre):
    mdtrt = napi.post("/v1/visits", json={"care": "inpatient"}).json()["mdtrt_id"]
    pre = napi.post(f"/v1/visits/{mdtrt}/presettle", json={"lines": LINES}).json()
    assert pre["breakdown"]["medfee_sumamt"] == 215_00, pre
    again = napi.post(f"/v1/visits/{mdtrt}/presettle", json={"lines": LINES[:1]}).json()  # a stay's fees replaced
    assert again["breakdown"]["medfee_sumamt"] == 120_00
    r = napi.post(f"/v1/visits/{mdtrt}/settle", json={"lines": LINES, "pin": "123456"})  # 2402 discharge, 2304
    assert r.status_code == 200, r.text
    assert r.json()["breakdown"] == pre["breakdown"] | {"balc": r.json()["breakdown"]["balc"]}
    assert centre.client().visit(mdtrt).status == "settled"
    # its void is the stay's cancellation (2305)
    v = national.terminal.centre.void(serial=national.terminal.journal.begin("void", {}).request["terminal_serial"],
                                      setl_id=r.json()["key"], mdtrt_id=mdtrt, person_id=r.json()["person_id"])
    assert v.status == "voided" and v.reversed.medfee_sumamt == 215_00
    assert centre.client().settlement(r.json()["key"]).status == "voided"


def test_a_fee_line_without_its_catalogue_code_is_refused_naming_it(napi):
    mdtrt = napi.post("/v1/visits", json={"care": "outpatient"}).json()["mdtrt_id"]
    lines = [{"chrgitm_lv": "A", "det_item_fee_sumamt": 10_00}]
    r = napi.post(f"/v1/visits/{mdtrt}/presettle", json={"lines": lines})
    assert r.status_code == 422 and r.json()["code"] == "INVALID_REQUEST" and "med_list_codg" in r.text
    lines = [{"med_list_codg": "NOT-IN-THE-LIST", "chrgitm_lv": "A", "det_item_fee_sumamt": 10_00}]
    r = napi.post(f"/v1/visits/{mdtrt}/presettle", json={"lines": lines})
    assert r.status_code == 422 and "医保目录" in r.json()["message"]  # the platform's own words


def test_a_refused_sign_no_is_renewed_once(national, napi):
    upstream = national.terminal.centre
    first = upstream.sign_in()
    upstream.sign_no = "SN00000000000000000000"  # as after the centre signed this terminal out
    assert napi.post("/v1/visits", json={"care": "outpatient"}).status_code == 200
    assert upstream.sign_no not in ("SN00000000000000000000", "") and upstream.sign_no.startswith("SN")
    assert first.startswith("SN")


def test_the_centre_card_check_reaches_the_terminal_as_its_code(national, napi, centre):
    """1101 with a card the registry holds as lost: refused there, and nothing registered."""
    centre.engine.cards.report_lost("B10238475", actor="test", reason="lost")
    r = napi.post("/v1/visits", json={"care": "outpatient"})
    assert r.status_code == 403 and r.json()["code"] == "CARD_REPORTED_LOST", r.text
    assert [e.state for e in national.terminal.journal.all()] == ["failed"]


# ---- what the platform has no transaction for ----------------------------------------------------------------
@pytest.fixture
def platform_only(centre):
    k = start_counter(centre, "memory:wang_xiuying", upstream=NATIONAL | {"others": "none"})
    yield k
    k.stop()


def test_without_the_native_api_what_the_platform_lacks_is_a_typed_refusal(platform_only, centre):
    with httpx.Client(base_url=platform_only.url, headers=platform_only.headers(), timeout=15) as api:
        r = api.get("/v1/pension/status")
        assert r.status_code == 501 and r.json()["code"] == "NOT_AVAILABLE_IN_DIALECT", r.text
        r = api.post("/v1/pension/certify", json={"pin": "111111"})
        assert r.status_code == 501 and r.json()["code"] == "NOT_AVAILABLE_IN_DIALECT"
        mdtrt = api.post("/v1/visits", json={"care": "outpatient"}).json()["mdtrt_id"]
        rec = api.post(f"/v1/visits/{mdtrt}/settle", json={"lines": LINES, "pin": "111111"}).json()
        r = api.post(f"/v1/settlements/{rec['key']}/refund", json={"reason": "退费", "operator": "c1"})
        assert r.status_code == 501 and r.json()["code"] == "NOT_AVAILABLE_IN_DIALECT"
        assert centre.client().settlement(rec["key"]).status == "settled"  # nothing changed


@pytest.mark.parametrize("applied", [True, False])
def test_without_a_settlement_query_recovery_cancels_what_was_in_flight(platform_only, centre, applied):
    """As a HIS on the platform does after a timeout: 2208, whether the centre applied it (cancelled) or not
    (a tombstone: the lost message is refused if it lands)."""
    t = platform_only.terminal
    platform_only.forwarder.stop()  # this test is the recovery pass: the daemon's own must not race it
    with httpx.Client(base_url=platform_only.url, headers=platform_only.headers(), timeout=15) as api:
        mdtrt = api.post("/v1/visits", json={"care": "outpatient"}).json()["mdtrt_id"]
    lines = [FeeLineIn(**x) for x in LINES]
    e = t.journal.begin("settle", {"mdtrt_id": mdtrt, "lines": LINES, "use_account": True},
                        person_id=person_id("wang_xiuying"), amount=215_00)
    serial = e.request["terminal_serial"]
    if applied:
        t.centre.settle(serial=serial, mdtrt_id=mdtrt, lines=lines)
    rep = recover(t)
    assert rep.reversed == [e.key] and t.journal.get(e.key).state == REVERSED
    status = centre.client().settlement(e.key).status
    assert status == ("voided" if applied else "void_before_arrival")
    if not applied:
        with pytest.raises(AlreadyReversed):  # the lost 2207, landing late
            t.centre.settle(serial=serial, mdtrt_id=mdtrt, lines=lines)
    centre.engine.ledger.check_invariants()


# ---- answers the centre never gives --------------------------------------------------------------------------------
def fake_platform(answer):
    """A platform that signs in, then answers every other message with `answer(infno, input)`."""

    def handle(request: httpx.Request) -> httpx.Response:
        env = json.loads(request.content)
        if env["infno"] == "9001":
            out = {"signinoutb": {"sign_no": "SN1", "sign_time": "2024-05-01 10:00:00"}}
            return httpx.Response(200, json={"infcode": 0, "output": out, "err_msg": None})
        return answer(env["infno"], env["input"])

    return NationalCentre(httpx.Client(base_url="http://platform", transport=httpx.MockTransport(handle)),
                          fixmedins_code="H11000301", fixmedins_name="x", region="110000", level="3", native=None)


PERSON = {"baseinfo": {"psn_no": "P1"}, "insuinfo": [{"insutype": "310", "insuplc_admdvs": "110000"}]}


def test_an_answer_with_a_fraction_of_a_fen_is_refused():
    def answer(infno, _input):
        if infno == "1101":
            return httpx.Response(200, json={"infcode": 0, "output": PERSON})
        if infno == "2201":
            return httpx.Response(200, json={"infcode": 0, "output": {"data": {"mdtrt_id": "M1"}}})
        if infno == "2204":
            row = {"fulamt_ownpay_amt": 0, "overlmt_amt": 0, "preselfpay_amt": 0, "inscp_scp_amt": 10}
            return httpx.Response(200, json={"infcode": 0, "output": {"result": [row]}})
        text = '{"infcode":0,"output":{"setlinfo":{"medfee_sumamt":10.005,"setl_time":"2024-05-01 10:00:00"}}}'
        return httpx.Response(200, content=text.encode())

    upstream = fake_platform(answer)
    upstream.register_visit(serial="202405011000000001", person_id="P1", institution="H11000301",
                            care="outpatient", card_no="C1", card_id="00" * 16)
    with pytest.raises(MalformedAnswer, match="medfee_sumamt"):
        upstream.settle(serial="202405011000000002", mdtrt_id="M1",
                        lines=[FeeLineIn(med_list_codg="X", chrgitm_lv="A", det_item_fee_sumamt=10_00)])


@pytest.mark.parametrize("response,error", [
    (httpx.Response(200, content=b"<html>gateway</html>"), MalformedAnswer),
    (httpx.Response(200, json={"infcode": 7}), MalformedAnswer),
    (httpx.Response(200, json={"infcode": -1, "err_msg": "人员编号(psn_no) 'P1' 不存在"}), InvalidRequest),
    (httpx.ReadTimeout("slow"), ServiceUnreachable),
])
def test_what_else_a_platform_may_answer(response, error):
    def answer(_infno, _input):
        if isinstance(response, Exception):
            raise response
        return response

    with pytest.raises(error):
        fake_platform(answer).register_visit(serial="202405011000000001", person_id="P1", institution="H11000301",
                                             care="outpatient")


def test_health_without_the_native_api_is_a_sign_in_that_records_nothing_new(platform_only, centre):
    def sign_ins() -> int:
        return centre.store.read(lambda tx: tx.value("SELECT COUNT(*) FROM nat_sign_ins"))

    h = httpx.get(f"{platform_only.url}/health").json()
    assert h["components"]["centre"]["status"] == "ok", h
    before = sign_ins()
    for _ in range(3):
        assert httpx.get(f"{platform_only.url}/health").json()["components"]["centre"]["status"] == "ok"
    assert sign_ins() == before
    centre.service.stop()
    assert httpx.get(f"{platform_only.url}/health").json()["components"]["centre"]["status"] == "down"
