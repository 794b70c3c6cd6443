"""The terminal daemon over HTTP with in-process simulated cards: every flow, every refusal, every fault."""

from __future__ import annotations

import time

import httpx
import pytest

from sim.faults import Fault
from sscard.stack import UvicornThread, start_centre, start_counter
from sscard.world import card_no, person_id
from tests.terminal.conftest import DIALECTS, LINES, agree, busy

pytestmark = pytest.mark.parametrize("dialect", DIALECTS)


def sim_card(counter):
    return next(iter(counter.terminal.sessions.values())).reader.card


def visit(api) -> str:
    r = api.post("/v1/visits", json={"care": "outpatient"})
    assert r.status_code == 200, r.text
    return r.json()["mdtrt_id"]


def test_health_and_metrics_need_no_token(counter):
    assert httpx.get(f"{counter.url}/health").json()["status"] == "ok"
    m = httpx.get(f"{counter.url}/metrics").text
    assert "sscard_terminal_transactions" in m


def test_every_call_needs_the_bearer_token(counter):
    r = httpx.get(f"{counter.url}/v1/readers")
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"
    r = httpx.get(f"{counter.url}/v1/readers", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401


def test_read_card_and_readers(api):
    (reader,) = api.get("/v1/readers").json()
    assert reader["card_present"] and reader["card_no"] == "B10238475"
    card = api.get("/v1/card", params={"national": True}).json()
    assert card["name"] == "张三"
    assert card["national"].split("|")[9] == "110100000001"  # the PSAM's terminal number


def test_identity_check(api, counter):
    r = api.post("/v1/identity/check", json={"pin": "123456", "biometric_score": 0.93})
    assert r.status_code == 200
    assert r.json()["verified"] and r.json()["biometric_passed"] and r.json()["card_authenticated"]
    r = api.post("/v1/identity/check", json={"pin": "123456", "biometric_score": 0.2})
    assert r.json()["verified"] is False and r.json()["biometric_passed"] is False


def test_wrong_pin_reports_tries_left_then_blocked_and_posts_nothing(api, counter, centre):
    mdtrt = visit(api)
    for left in (2, 1):
        r = api.post(f"/v1/visits/{mdtrt}/settle", json={"lines": LINES, "pin": "999999"})
        assert r.status_code == 403 and r.json()["code"] == "PIN_WRONG"
        assert r.json()["details"]["tries_left"] == left
    r = api.post(f"/v1/visits/{mdtrt}/settle", json={"lines": LINES, "pin": "999999"})
    assert r.json()["code"] == "PIN_BLOCKED"
    r = api.post(f"/v1/visits/{mdtrt}/settle", json={"lines": LINES, "pin": "123456"})
    assert r.json()["code"] == "PIN_BLOCKED"
    assert [e.kind for e in counter.terminal.journal.all()] == ["register"]  # no settle ever journaled
    assert centre.client().visit(mdtrt).status == "registered"


def test_hospital_visit_with_partial_and_full_refund(api, counter, centre):
    mdtrt = visit(api)
    pre = api.post(f"/v1/visits/{mdtrt}/presettle", json={"lines": LINES}).json()
    r = api.post(f"/v1/visits/{mdtrt}/settle", json={"lines": LINES, "pin": "123456"})
    assert r.status_code == 200, r.text
    rec = r.json()
    assert rec["state"] == "confirmed" and rec["card_record"] == "written"
    b = rec["breakdown"]
    assert b["medfee_sumamt"] == 215_00 == pre["breakdown"]["medfee_sumamt"]
    assert b["fund_pay_sumamt"] + b["acct_pay"] + b["psn_cash_pay"] == b["medfee_sumamt"]
    # the card's DF04 holds the transaction record, newest first
    sim = sim_card(counter)
    records = sim.mf.children[0xDDF1].children[0xDF04].children[0xEF15].records
    assert records and records[0][0] == 0x01
    who = {"operator": "clerk-1"}
    part = api.post(f"/v1/settlements/{rec['key']}/refund", json={"amount": 50_00, "reason": "退药"} | who).json()
    assert part["state"] == "confirmed" and part["amount"] == 50_00
    assert part["reason"] == "退药" and part["operator"] == "clerk-1" and part["name"] == "张三"
    rest = api.post(f"/v1/settlements/{rec['key']}/refund", json={"reason": "检查取消"} | who).json()
    assert rest["amount"] == 165_00
    too_much = api.post(f"/v1/settlements/{rec['key']}/refund", json={"amount": 1, "reason": "多退"} | who)
    assert too_much.status_code == 409 and too_much.json()["code"] == "REFUND_TOO_LARGE"
    text = api.get(f"/v1/receipts/{rec['key']}", params={"format": "text"}).text
    assert "215.00 元" in text and "写卡" in text and "张三" in text
    hist = api.get("/v1/transactions", params={"card_no": "B10238475"}).json()
    assert [h["kind"] for h in hist][:4] == ["refund", "refund", "refund", "settle"]
    assert agree(counter.terminal.journal, centre)["confirmed"] == 1


def test_another_counter_of_the_hospital_refunds_with_the_card_in_its_reader(tmp_path, dialect):
    """The centre asks for the holder's card when a counter refunds another counter's settlement: the
    second counter reads the card in its reader and sends its number; with another person's card it is
    refused CARD_PROOF_MISMATCH and nothing is refunded."""
    centre = start_centre(tmp_path / "centre", terminals=("T0001", "T0002"))
    first = start_counter(centre, terminal_id="T0001", dialect=dialect)
    second = start_counter(centre, "memory:li_si", terminal_id="T0002", dialect=dialect)
    try:
        with httpx.Client(base_url=first.url, headers=first.headers(), timeout=15) as api:
            rec = api.post(f"/v1/visits/{visit(api)}/settle", json={"lines": LINES, "pin": "123456"}).json()
        with httpx.Client(base_url=second.url, headers=second.headers(), timeout=15) as api:
            body = {"amount": 10_00, "reason": "退药", "operator": "clerk-2"}
            r = api.post(f"/v1/settlements/{rec['key']}/refund", json=body)  # li_si's card is in its reader
            assert (r.status_code, r.json()["code"]) == (403, "CARD_PROOF_MISMATCH"), r.text
            second.terminal.sessions["memory:li_si"].reader.insert(sim_card(first))  # zhang_san comes over
            r = api.post(f"/v1/settlements/{rec['key']}/refund", json=body)
            assert r.status_code == 200, r.text
            assert (r.json()["response"]["actor"], r.json()["name"]) == ("T0002", "张三")
        assert centre.client("T0001").settlement(rec["key"]).refundable == 205_00
    finally:
        first.stop()
        second.stop()
        centre.stop()


def test_pension_certify_and_collect(centre, dialect):
    k = start_counter(centre, "memory:wang_xiuying", dialect=dialect)
    try:
        with httpx.Client(base_url=k.url, headers=k.headers(), timeout=15) as api:
            r = api.post("/v1/pension/collect", json={"pin": "111111", "amount": 100_000_00})
            assert r.status_code == 409 and r.json()["code"] == "INSUFFICIENT_FUNDS"
            c = api.post("/v1/pension/certify", json={"pin": "111111"})
            assert c.status_code == 200 and c.json()["passed"], c.text
            assert "PIN verified by the centre" in c.json()["reason"]  # the PIN block, checked online
            r = api.post("/v1/pension/collect", json={"pin": "111111", "amount": 1000_00})
            assert r.status_code == 200, r.text
            assert r.json()["response"]["balance_after"] == 4_200_00 - 1000_00
            status = api.get("/v1/pension/status").json()
            assert status["pensioner"]["status"] == 1 and status["certification"]
    finally:
        k.stop()


@pytest.mark.parametrize(
    "body,field",
    [
        ({"lines": [], "pin": "123456"}, "lines"),
        ({"lines": [{"chrgitm_lv": "A", "det_item_fee_sumamt": -5}], "pin": "123456"}, "det_item_fee_sumamt"),
        ({"lines": [{"chrgitm_lv": "A", "det_item_fee_sumamt": 1.5}], "pin": "123456"}, "det_item_fee_sumamt"),
        ({"lines": LINES}, "pin"),
        ({"lines": LINES, "pin": "123456", "extra": 1}, "extra"),
    ],
)
def test_malformed_requests_are_refused_with_nothing_journaled(api, counter, body, field):
    mdtrt = visit(api)
    r = api.post(f"/v1/visits/{mdtrt}/settle", json=body)
    assert r.status_code == 422 and r.json()["code"] in ("INVALID_REQUEST", "INVALID_AMOUNT")
    assert field in r.json()["message"] or field in str(r.json()["details"])
    assert [e.kind for e in counter.terminal.journal.all()] == ["register"]


def test_pin_that_is_not_digits(api):
    mdtrt = visit(api)
    r = api.post(f"/v1/visits/{mdtrt}/settle", json={"lines": LINES, "pin": "12ab56"})
    assert r.status_code == 422 and r.json()["code"] == "INVALID_PIN_FORMAT"


def test_unknown_reader_and_unknown_visit(api):
    r = api.post("/v1/visits", json={"care": "outpatient", "reader": "nope"})
    assert r.status_code == 404 and r.json()["code"] == "UNKNOWN_READER"
    r = api.post("/v1/visits/NOPE/settle", json={"lines": LINES, "pin": "123456"})
    assert r.status_code == 404


def test_second_flow_on_a_busy_reader_is_refused(api, counter):
    session = next(iter(counter.terminal.sessions.values()))
    with busy(session):
        r = api.post("/v1/visits", json={"care": "outpatient"})
        assert r.status_code == 409 and r.json()["code"] == "READER_BUSY"
    assert api.post("/v1/visits", json={"care": "outpatient"}).status_code == 200  # reader usable again


def test_expired_card_is_refused(centre, dialect):
    k = start_counter(centre, "memory:zhao_deming", dialect=dialect)
    try:
        with httpx.Client(base_url=k.url, headers=k.headers(), timeout=15) as api:
            sim = sim_card(k)
            ef05 = sim.mf.children[0xDDF1].children[0xEF05]
            ef05.records[5] = b"\x06\x04\x20\x20\x01\x01"  # expiry 2020-01-01
            r = api.post("/v1/visits", json={"care": "outpatient"})
            assert r.status_code == 403 and r.json()["code"] == "CARD_EXPIRED"
    finally:
        k.stop()


def test_card_for_another_patient_is_refused_before_its_pin_is_tried(api, centre, counter, dialect):
    k2 = start_counter(centre, "memory:li_si", terminal_id="T0001", dialect=dialect)
    try:
        mdtrt = visit(api)  # zhang_san's visit, on counter 1
        li_si = sim_card(k2)
        with httpx.Client(base_url=k2.url, headers=k2.headers(), timeout=15) as api2:
            for pin in ("654321", "000000"):  # li_si's own PIN, and a wrong one: neither reaches the card
                r = api2.post(f"/v1/visits/{mdtrt}/settle", json={"lines": LINES, "pin": pin})
                assert r.status_code == 409 and r.json()["code"] == "CARD_MISMATCH", r.text
        assert li_si.pin.tries_left == li_si.pin.max_tries
        assert "settle" not in [e.kind for e in k2.terminal.journal.all()]  # one journal: both counters are T0001
    finally:
        k2.stop()


def test_a_counterfeit_card_never_sees_the_pin(api, counter):
    """A card whose keys are not the issuer's fails authentication before VERIFY: the PIN typed at the counter
    is not handed to a card that could be recording it, and no try is used."""
    from cardlib.readers.memory import MemoryReader
    from sim.issuer import Issuer
    from sim.personalize import issue_sample

    mdtrt = visit(api)
    fake = issue_sample("zhang_san", issuer=Issuer())  # same holder data, keys of nobody's issuer
    session = next(iter(counter.terminal.sessions.values()))
    assert isinstance(session.reader, MemoryReader)
    session.reader.insert(fake)
    r = api.post(f"/v1/visits/{mdtrt}/settle", json={"lines": LINES, "pin": "999999"})
    assert r.status_code == 403 and r.json()["code"] == "COUNTERFEIT_CARD", r.text
    assert fake.pin.tries_left == fake.pin.max_tries
    r = api.post("/v1/identity/check", json={"pin": "999999"})
    assert r.json()["code"] == "COUNTERFEIT_CARD" and fake.pin.tries_left == fake.pin.max_tries


# ---- the card pulled at each step of a visit ------------------------------------------------------------------
@pytest.mark.parametrize(
    "ins,after,expect_code,posted",
    [
        (0xB2, 0, "NO_CARD", False),  # while the terminal checks it is the same card: gone
        (0x20, 0, "CARD_REMOVED", False),  # during PIN verification
        (0x88, 0, "CARD_REMOVED", False),  # during internal authentication
        (0x82, 0, "CARD_REMOVED", False),  # during external authentication
        (0xB2, 1, "CARD_REMOVED", False),  # the presence check just before sending: nothing sent
        (0xB2, 2, "CARD_REMOVED", False),  # the presence check after the answer: settled, then reversed
        (0xE2, 0, None, True),  # while the record is written: the settlement stands
    ],
)
def test_card_pulled_at_each_step(api, counter, centre, ins, after, expect_code, posted):
    mdtrt = visit(api)
    sim = sim_card(counter)
    sim.faults.arm(Fault("pull", ins=ins, after=after))
    r = api.post(f"/v1/visits/{mdtrt}/settle", json={"lines": LINES, "pin": "123456"})
    if expect_code:
        assert r.status_code == 409 and r.json()["code"] == expect_code, r.text
    else:
        assert r.status_code == 200 and r.json()["card_record"].startswith("failed"), r.text
    counts = agree(counter.terminal.journal, centre)
    assert counts["confirmed"] == (1 if posted else 0)
    sim.faults.clear()
    sim.reinsert()
    # the reader is usable again and the visit can be settled
    if not posted:
        r = api.post(f"/v1/visits/{mdtrt}/settle", json={"lines": LINES, "pin": "123456"})
        assert r.status_code == 200, r.text


def test_card_pulled_while_the_settlement_is_in_flight_is_reversed(api, counter, centre):
    mdtrt = visit(api)
    sim = sim_card(counter)
    real = counter.terminal.centre.settle

    def settle_and_pull(**kw):
        out = real(**kw)
        sim.pull()  # the holder walks off while the centre answers
        return out

    counter.terminal.centre.settle = settle_and_pull  # type: ignore[method-assign]
    r = api.post(f"/v1/visits/{mdtrt}/settle", json={"lines": LINES, "pin": "123456"})
    assert r.status_code == 409 and r.json()["details"]["reversal_state"] == "confirmed"
    counts = agree(counter.terminal.journal, centre)
    assert counts == {"confirmed": 0, "reversed": 1, "failed": 0}


# ---- the centre unreachable ---------------------------------------------------------------------------------
def test_centre_down_reversal_is_stored_and_forwarded(api, counter, centre):
    mdtrt = visit(api)
    port = centre.service.port
    real = counter.terminal.centre.settle

    def centre_goes_down(**kw):
        centre.service.stop()  # between the visit lookup and the settlement
        return real(**kw)

    counter.terminal.centre.settle = centre_goes_down  # type: ignore[method-assign]
    r = api.post(f"/v1/visits/{mdtrt}/settle", json={"lines": LINES, "pin": "123456"})
    assert r.status_code == 503 and r.json()["code"] == "SETTLEMENT_UNAVAILABLE"
    assert r.json()["details"]["reversal_state"] == "pending"
    assert counter.terminal.journal.counts()["pending"] == 2  # the settlement and its void
    from settlement.api.service import create_app

    centre.service = UvicornThread(create_app(centre.engine, terminals=_ring(centre)), port).start()
    deadline = time.monotonic() + 15
    while counter.terminal.journal.counts()["pending"] and time.monotonic() < deadline:
        time.sleep(0.2)  # the forwarder retries every 2 s
    counts = agree(counter.terminal.journal, centre)
    assert counts == {"confirmed": 0, "reversed": 1, "failed": 0}
    # the void's tombstone keeps the settlement out even if the lost request arrives now
    from settlement.errors import AlreadyReversed
    from settlement.wire import FeeLineIn

    (settle,) = [e for e in counter.terminal.journal.all() if e.kind == "settle"]
    with pytest.raises(AlreadyReversed):
        centre.client().settle(serial=settle.request["terminal_serial"], mdtrt_id=mdtrt,
                               lines=[FeeLineIn(**x) for x in LINES])


def _ring(centre):
    from settlement.api.auth import TerminalKey, hash_key

    return [TerminalKey(t, hash_key(k), "H11000301", False) for t, k in centre.terminal_keys.items()]


def test_response_lost_after_the_centre_applied_it(api, counter, centre):
    """The settle reaches the centre, the answer is lost: the terminal voids; nothing is posted twice."""
    mdtrt = visit(api)
    real = counter.terminal.centre.settle

    def applied_then_lost(**kw):
        real(**kw)
        from settlement.errors import ServiceUnreachable

        raise ServiceUnreachable("timed out", outcome_unknown=True)

    counter.terminal.centre.settle = applied_then_lost  # type: ignore[method-assign]
    r = api.post(f"/v1/visits/{mdtrt}/settle", json={"lines": LINES, "pin": "123456"})
    assert r.status_code == 503 and r.json()["details"]["reversal_state"] == "confirmed"
    assert agree(counter.terminal.journal, centre) == {"confirmed": 0, "reversed": 1, "failed": 0}
    assert centre.client().person_balances(person_id("zhang_san"), card_no=card_no("zhang_san")
                                           ).personal_account == 5_000_00
