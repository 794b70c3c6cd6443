"""Every centre transaction checks the card it is given: visits, settlements, refunds to the card, pension
certification and collection. A card that is not the person's active card is refused with its typed error,
and nothing is posted, recorded or counted."""

from __future__ import annotations

import pytest

from settlement import errors
from settlement.wire import FeeLine
from tests.settlement.flows_helpers import Y, make_engine

BILL = [FeeLine("A", 300 * Y), FeeLine("C", 20 * Y)]
OLD = "110100D156000005B1A0C3D4E5F60701"
NEW = "110100D156000005B1A0C3D4E5F60702"
OP = {"actor": "hall-1/clerk", "reason": "holder at the counter"}


@pytest.fixture
def eng(store, clock):
    eng = make_engine(store, clock)
    eng.cards.issue("EMP", "C0000001", OLD, **OP)  # the identification code of the card of record
    eng.pensions.enrol("RET", 2_000 * Y, "2024-01")
    eng.identity.certify("seed:c", "RET", "assisted", actor="seed", agent_id="A", agent_region="110000")
    eng.pensions.issue_month("110000", "2024-03")
    return eng


def state(eng) -> tuple:
    """What a refused transaction must leave as it was."""
    def q(tx):
        return tuple(tx.rows(f"SELECT * FROM {t} ORDER BY 1") for t in (
            "ledger_postings", "ledger_accounts", "med_visits", "med_settlements", "med_accumulators",
            "pen_collections", "id_certifications", "audit_trail"))
    return eng.store.read(q)


def test_a_card_reported_lost_mid_day_never_settles_again(eng):
    morning = eng.medical.register("T1:r1", "EMP", "BJ3", "outpatient", card_no="C0000001", card_id=OLD)
    first = eng.medical.settle("T1:s1", morning.mdtrt_id, BILL, card_no="C0000001", card_id=OLD)
    afternoon = eng.medical.register("T1:r2", "EMP", "BJ3", "outpatient", card_no="C0000001", card_id=OLD)
    eng.cards.report_lost("C0000001", actor="hall-1/clerk", reason="lost at the market")
    before = state(eng)
    with pytest.raises(errors.CardReportedLost):  # registered before the loss: the visit's card is checked
        eng.medical.settle("T1:s2", afternoon.mdtrt_id, BILL)
    with pytest.raises(errors.CardReportedLost):
        eng.medical.settle("T1:s2", afternoon.mdtrt_id, BILL, card_no="C0000001", card_id=OLD)
    with pytest.raises(errors.CardReportedLost):
        eng.medical.register("T1:r3", "EMP", "BJ3", "outpatient", card_no="C0000001", card_id=OLD)
    with pytest.raises(errors.CardReportedLost):
        eng.medical.refund("T1:f1", first.setl_id, 10 * Y, card_no="C0000001")
    assert state(eng) == before
    assert eng.medical.settle("T1:s1", morning.mdtrt_id, BILL).replayed  # what was settled before stays so
    eng.medical.refund("T1:f1", first.setl_id, 10 * Y)  # a refund at the counter without the card goes on


def test_a_replaced_card_works_and_the_old_one_does_not(eng):
    eng.cards.replace("EMP", "C0000011", NEW, **OP)
    visit = eng.medical.register("T1:r1", "EMP", "BJ3", "outpatient", card_no="C0000011", card_id=NEW)
    before = state(eng)
    with pytest.raises(errors.CardReplaced) as old:
        eng.medical.settle("T1:s1", visit.mdtrt_id, BILL, card_no="C0000001", card_id=OLD)
    assert old.value.details["replaced_by"] == "C0000011"
    with pytest.raises(errors.CardReplaced):
        eng.medical.register("T1:r2", "EMP", "BJ3", "outpatient", card_no="C0000001", card_id=OLD)
    assert state(eng) == before
    assert eng.medical.settle("T1:s1", visit.mdtrt_id, BILL, card_no="C0000011", card_id=NEW).breakdown


@pytest.mark.parametrize(("card", "error"), [
    ({"card_no": "C0000001", "card_id": NEW}, errors.UnknownCard),  # a copy: the number with another chip
    ({"card_no": "X0000404"}, errors.UnknownCard),
    ({"card_no": "C0000002"}, errors.CardNotPersons),
])
def test_a_card_that_is_not_the_persons_is_refused(eng, card, error):
    before = state(eng)
    with pytest.raises(error):
        eng.medical.register("T1:r1", "EMP", "BJ3", "outpatient", **card)
    assert state(eng) == before


def test_pension_certification_and_collection_check_the_card(eng, clock):
    eng.cards.cancel("C0000002", **OP)
    before = state(eng)
    with pytest.raises(errors.CardCancelled):
        eng.pensions.collect("T1:p1", "RET", 100 * Y, "BJHALL", card_no="C0000002")
    with pytest.raises(errors.CardCancelled):
        eng.identity.certify("T1:c1", "RET", "card_pin", actor="T1", card_no="C0000002", pin_verified=True)
    with pytest.raises(errors.CardCancelled):  # a card shown with a face match is checked all the same
        eng.identity.certify("T1:c1", "RET", "biometric", actor="T1", score=0.99, modality="face", device_id="F",
                             card_no="C0000002")
    assert state(eng) == before
    eng.cards.issue("RET", "C0000012", NEW, **OP)
    assert eng.identity.certify("T1:c1", "RET", "card_pin", actor="T1", card_no="C0000012", card_id=NEW,
                                pin_verified=True).passed
    assert eng.pensions.collect("T1:p1", "RET", 100 * Y, "BJHALL", card_no="C0000012", card_id=NEW).amount == 100 * Y


def test_an_expired_card_is_refused(eng, clock):
    eng.cards.issue("RES", "C0000003", NEW, expires_on=clock().date().replace(day=2), **OP)
    visit = eng.medical.register("T1:r1", "RES", "EX1", "outpatient", card_no="C0000003", card_id=NEW)
    clock.advance(days=2)
    with pytest.raises(errors.CardExpired) as e:
        eng.medical.settle("T1:s1", visit.mdtrt_id, BILL)
    assert e.value.details["expiry_date"] == "2024-03-02"
