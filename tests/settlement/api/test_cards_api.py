"""The card API: operators issue, report lost, unlock, replace and cancel; every terminal reads a card's status
and the blacklist and reports what it blocked; a counter terminal changes no card's status; bad input is a
typed error that changes nothing."""

from __future__ import annotations

import warnings

import pytest

from settlement import errors
from settlement.api.auth import TerminalKey, hash_key
from settlement.api.client import SettlementClient
from settlement.api.service import create_app
from settlement.wire import FeeLineIn
from tests.settlement.flows_helpers import Clock, make_engine

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

COUNTER, OPERATOR, OTHER = "counter-key-1", "operator-key-1", "counter-key-2"
TERMINALS = [TerminalKey("T1", hash_key(COUNTER), institution="BJ3"),
             TerminalKey("HALL", hash_key(OPERATOR), operator=True),
             TerminalKey("T2", hash_key(OTHER), institution="BJ1")]
CARD_ID = "110100D156000005B1A0C3D4E5F60701"
NEW_ID = "110100D156000005B1A0C3D4E5F60702"


@pytest.fixture
def eng(store):
    return make_engine(store, Clock())


@pytest.fixture
def app(eng):
    return create_app(eng, terminals=TERMINALS)


@pytest.fixture
def http(app):
    with TestClient(app) as c:
        yield c


@pytest.fixture
def hall(app):  # a client of its own: SettlementClient sets its key on the HTTP client
    with TestClient(app) as c:
        yield SettlementClient("http://testserver", OPERATOR, http=c)


@pytest.fixture
def counter(app):
    with TestClient(app) as c:
        yield SettlementClient("http://testserver", COUNTER, http=c)


def test_a_service_hall_day_through_the_api(hall, counter):
    card = hall.issue_card("EMP", card_no="C0000001", card_id=CARD_ID, spec_version="3.00", operator="王芳",
                           reason="identification code of the card of record")
    assert (card.card_id, card.status) == (CARD_ID, "active")
    assert hall.change_card("C0000001", "report-lost", operator="王芳", reason="lost on the bus").status == \
        "reported_lost"
    delta = counter.card_blacklist()
    assert delta.entries == [("C0000001", CARD_ID, "reported_lost", "")] and delta.version == 1
    assert counter.report_card_application("C0000001", CARD_ID, "DF04").application_blocked == "DF04"
    assert counter.card_blacklist(since=1).entries == [("C0000001", CARD_ID, "reported_lost", "DF04")]
    new = hall.replace_card("EMP", card_no="C0000011", card_id=NEW_ID, operator="王芳", reason="not found")
    assert new.status == "active" and counter.card("C0000001").status == "replaced"
    assert [c.card_no for c in hall.person_cards("EMP")] == ["C0000011", "C0000001"]
    history = hall.card_history("C0000001")
    assert [(e.event, e.actor) for e in history] == [
        ("card_identified", "HALL/王芳"), ("card_reported_lost", "HALL/王芳"), ("card_application_blocked", "T1"),
        ("card_replaced", "HALL/王芳")]
    assert history[1].detail["reason"] == "lost on the bus"
    assert hall.change_card("C0000011", "cancel", operator="王芳", reason="emigrated").status == "cancelled"


def test_a_counter_terminal_changes_no_card(counter, eng):
    for call in (lambda: counter.issue_card("EMP", card_no="C0000001", card_id=CARD_ID, operator="x", reason="xx"),
                 lambda: counter.replace_card("EMP", card_no="C0000011", card_id=NEW_ID, operator="x", reason="xx"),
                 lambda: counter.change_card("C0000001", "report-lost", operator="x", reason="xx"),
                 lambda: counter.change_card("C0000001", "cancel", operator="x", reason="xx"),
                 lambda: counter.person_cards("EMP"), lambda: counter.card_history("C0000001")):
        with pytest.raises(errors.Forbidden):
            call()
    assert eng.cards.card("C0000001").status == "active" and eng.cards.blacklist().version == 0


def test_bad_input_is_typed_and_changes_nothing(http, hall, eng):
    hall.change_card("C0000002", "cancel", operator="王芳", reason="deceased")
    before = eng.cards.cards_of("RET"), eng.cards.blacklist(), eng.registry.audit_trail("RET")
    with pytest.raises(errors.UnknownCard):
        hall.change_card("NOSUCH", "report-lost", operator="王芳", reason="lost")
    with pytest.raises(errors.CardCancelled):
        hall.change_card("C0000002", "unlock", operator="王芳", reason="found")
    with pytest.raises(errors.NoCardOfRecord):
        hall.replace_card("RES", card_no="C0000033", card_id=NEW_ID, operator="王芳", reason="worn")
    card = {"card_no": "C1", "card_id": NEW_ID, "operator": "a", "reason": "ab"}
    for path, body in [("/v1/persons/RET/cards", card | {"card_no": "C 1"}),
                       ("/v1/persons/RET/cards", card | {"card_id": "00"}),
                       ("/v1/cards/C0000002/unlock", {"operator": "a", "reason": "x"}),
                       ("/v1/cards/C0000002/unlock", {"operator": "a", "reason": "ab", "extra": 1}),
                       ("/v1/cards/C0000002/application", {"application": "MF"})]:
        r = http.post(path, json=body, headers={"X-Terminal-Key": OPERATOR})
        assert r.status_code == 422 and r.json()["code"] == "INVALID_REQUEST", (path, r.json())
    for params in ({"since": -1}, {"limit": 0}, {"since": "x"}):
        r = http.get("/v1/cards/blacklist", params=params, headers={"X-Terminal-Key": COUNTER})
        assert r.status_code == 422
    assert (eng.cards.cards_of("RET"), eng.cards.blacklist(), eng.registry.audit_trail("RET")) == before


def test_transactions_carry_the_card_and_are_refused_with_its_status(hall, counter):
    visit = counter.register_visit(serial="1", person_id="EMP", institution="BJ3", care="outpatient",
                                   card_no="C0000001", card_id=CARD_ID)  # number of record, code not yet known
    hall.change_card("C0000001", "report-lost", operator="王芳", reason="lost")
    line = FeeLineIn(chrgitm_lv="01", det_item_fee_sumamt=100_00)
    with pytest.raises(errors.CardReportedLost) as e:
        counter.settle(serial="2", mdtrt_id=visit.mdtrt_id, lines=[line], card_no="C0000001", card_id=CARD_ID)
    assert e.value.details["card_no"] == "C0000001" and e.value.http_status == 403
    with pytest.raises(errors.CardReportedLost):
        counter.settle(serial="3", mdtrt_id=visit.mdtrt_id, lines=[line])  # the visit's card
    with pytest.raises(errors.CardReportedLost):
        counter.certify(serial="4", person_id="EMP", method="card_pin", card_no="C0000001", pin_verified=True)
    with pytest.raises(errors.CardProofMismatch):  # to a terminal, an unknown card answers like another's card
        counter.register_visit(serial="5", person_id="EMP", institution="BJ3", care="outpatient", card_no="Z1")
    with pytest.raises(errors.UnknownCard):  # the engine's own check, as an operator meets it
        hall.register_visit(serial="5", person_id="EMP", institution="BJ3", care="outpatient", card_no="Z1")


def test_an_identity_check_is_quoted_by_its_terminal_or_a_service_hall(app, hall, counter):
    c = counter.identity_check(serial="9", person_id="EMP", card_no="C0000001", pin_verified=True,
                               card_authenticated=True)
    assert c.verified and c.check_id == "T1:9"
    assert counter.identity_check_record("T1:9") == c == hall.identity_check_record("T1:9")
    with TestClient(app) as other, pytest.raises(errors.Forbidden):
        SettlementClient("http://testserver", OTHER, http=other).identity_check_record("T1:9")
    unknown = counter.identity_check(serial="10", person_id="110101190001010000", card_no="Z9", pin_verified=True,
                                     card_authenticated=False)
    assert (unknown.verified, unknown.reasons) == (False, ["UNKNOWN_PERSON"])
