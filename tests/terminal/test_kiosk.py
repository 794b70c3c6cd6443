"""Self-service at a kiosk, tried as a holder and as a hostile client: the card in the reader and its PIN
decide whose data is shown; nothing in the request can name another person; another person's data never
appears; a kiosk answer is never replayed; the centre answers only for a person's active card."""

from __future__ import annotations

import pytest

from settlement import errors
from sscard.world import card_no
from tests.terminal.conftest import LINES

ZHANG, WANG = "110105198001010016", "310115195707230033"


@pytest.fixture
def day(api, counter, centre):
    """Zhang San settles a visit; Wang Xiuying (a pensioner) settles one and collects her pension elsewhere."""
    mdtrt = api.post("/v1/visits", json={"care": "outpatient"}).json()["mdtrt_id"]
    mine = api.post(f"/v1/visits/{mdtrt}/settle", json={"lines": LINES, "pin": "123456"}).json()["key"]
    other = centre.client()
    wang_card = card_no("wang_xiuying")  # what the other counter read from her card
    visit = other.register_visit(serial="900", person_id=WANG, institution="H11000301", care="outpatient",
                                 card_no=wang_card)
    from settlement.wire import FeeLineIn

    theirs = other.settle(serial="901", mdtrt_id=visit.mdtrt_id, lines=[FeeLineIn(chrgitm_lv="A",
                                                                                   det_item_fee_sumamt=50_00)])
    other.collect_pension(serial="902", person_id=WANG, amount=100_00, institution="H11000301", card_no=wang_card)
    other.close()
    return mine, theirs.setl_id


def test_the_holder_sees_their_own_account(api, day):
    mine, theirs = day
    r = api.post("/v1/kiosk/summary", json={"pin": "123456"})
    body = r.json()
    assert r.status_code == 200 and body["person_id"] == ZHANG and body["name"] == "张三"
    assert body["card"]["card_no"] == "B10238475" and body["card"]["status"] == "active"
    assert [s["setl_id"] for s in body["settlements"]] == [mine]
    assert body["settlements"][0]["medfee_sumamt"] == sum(x["det_item_fee_sumamt"] for x in LINES)
    assert body["accumulators"]["outpatient"]["inscp_cum"] > 0 and body["personal_account"] >= 0
    assert body["pension_payments"] == [] and body["pensioner"] is None
    assert theirs not in r.text and WANG not in r.text


def test_a_pensioner_sees_payments_and_certification(api, counter, day):
    from sim.personalize import issue_sample

    next(iter(counter.terminal.sessions.values())).reader.insert(issue_sample("wang_xiuying"))
    body = api.post("/v1/kiosk/summary", json={"pin": "111111"}).json()
    assert body["person_id"] == WANG and [p["kind"] for p in body["pension_payments"]] == ["collected", "issued"]
    assert body["pensioner"]["status"] == 1 and body["certification"]["certified"]
    assert [s["setl_id"] for s in body["settlements"]] == [day[1]]


def test_hostile_requests_see_nothing_of_anyone_else(api, counter, centre, day):
    for body in ({"pin": "123456", "person_id": WANG}, {"pin": "123456", "card_no": "S31000077"},
                 {"pin": "123456", "reader": "memory:wang_xiuying"}, {}):
        r = api.post("/v1/kiosk/summary", json=body)
        assert r.status_code in (404, 422) and WANG not in r.text, (body, r.text)
    r = api.post("/v1/kiosk/summary", params={"person_id": WANG}, json={"pin": "123456"})
    assert r.json()["person_id"] == ZHANG  # a query parameter names nobody
    wrong = api.post("/v1/kiosk/summary", json={"pin": "000000"})
    assert wrong.status_code == 403 and wrong.json()["code"] == "PIN_WRONG" and "settlements" not in wrong.text
    no_token = api.post("/v1/kiosk/summary", json={"pin": "123456"}, headers={"Authorization": "Bearer nope"})
    assert no_token.status_code == 401
    first = api.post("/v1/kiosk/summary", json={"pin": "123456"}, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 200 and "Idempotent-Replayed" not in first.headers
    again = api.post("/v1/kiosk/summary", json={"pin": "000000"}, headers={"Idempotency-Key": "k-1"})
    assert again.json()["code"] == "PIN_WRONG"  # never a replay of the first holder's answer
    centre.engine.cards.report_lost("B10238475", actor="hall", reason="lost")
    counter.terminal.fetcher.step(force=True)
    lost = api.post("/v1/kiosk/summary", json={"pin": "123456"})
    assert lost.json()["code"] == "CARD_REPORTED_LOST" and "settlements" not in lost.text


def test_the_centre_answers_only_for_the_persons_active_card(centre):
    client = centre.client()
    try:
        assert client.self_service(ZHANG, card_no="B10238475").person_id == ZHANG
        with pytest.raises(errors.CardNotPersons):
            client.self_service(WANG, card_no="B10238475")
        with pytest.raises(errors.UnknownCard):
            client.self_service(ZHANG, card_no="B10238475", card_id="310100D15600000511E2D3C4B5A69788")
        with pytest.raises(errors.InvalidRequest):
            client.self_service(ZHANG)
        centre.engine.cards.cancel("B10238475", actor="hall", reason="cancelled")
        with pytest.raises(errors.CardCancelled):
            client.self_service(ZHANG, card_no="B10238475")
    finally:
        client.close()
