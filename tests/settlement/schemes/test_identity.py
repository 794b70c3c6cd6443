"""Certification by method, the biometric threshold, validity, idempotency and the audit trail."""

from __future__ import annotations

import datetime as dt

import pytest

from settlement import errors
from settlement.schemes.identity import add_months
from tests.settlement.flows_helpers import make_engine


@pytest.fixture
def eng(store, clock):
    return make_engine(store, clock, biometric_threshold=0.85)


def test_card_and_pin(eng):
    ok = eng.identity.certify("T1:1", "RET", "card_pin", actor="T1", card_no="C0000002", pin_verified=True)
    assert ok.passed and ok.valid_until == dt.date(2025, 3, 1)
    with pytest.raises(errors.CardNotPersons):  # another person's card: refused, nothing recorded
        eng.identity.certify("T1:2", "RET", "card_pin", actor="T1", card_no="C0000001", pin_verified=True)
    eng.cards.report_lost("C0000002", actor="op", reason="lost")
    with pytest.raises(errors.CardReportedLost):
        eng.identity.certify("T1:2", "RET", "card_pin", actor="T1", card_no="C0000002", pin_verified=True)
    assert [e.event for e in eng.registry.audit_trail("RET")][-2:] == ["certified", "card_reported_lost"]
    eng.cards.unlock("C0000002", actor="op", reason="found")
    no_pin = eng.identity.certify("T1:3", "RET", "card_pin", actor="T1", card_no="C0000002", pin_verified=False)
    assert not no_pin.passed and no_pin.valid_until is None


@pytest.mark.parametrize(("score", "passed"), [(0.85, True), (0.849, False), (1, True), (0, False)])
def test_biometric_threshold_is_configurable(eng, score, passed):
    c = eng.identity.certify("T1:1", "RET", "biometric", actor="T1", score=score, modality="fingerprint",
                             device_id="FP-1")
    assert c.passed is passed
    assert "0.85" in c.reason


def test_assisted(eng):
    c = eng.identity.certify("T1:1", "RET", "assisted", actor="T1", agent_id="A-9", agent_region="990100",
                             note="lives with daughter in Example City")
    assert c.passed and "A-9" in c.reason


@pytest.mark.parametrize(
    "kw",
    [
        {"method": "card_pin", "card_no": "C0000002"},
        {"method": "card_pin", "card_no": "C0000002", "pin_verified": "yes"},
        {"method": "biometric", "score": 1.2, "modality": "face", "device_id": "F"},
        {"method": "biometric", "score": True, "modality": "face", "device_id": "F"},
        {"method": "biometric", "score": 0.9, "modality": "iris", "device_id": "F"},
        {"method": "assisted", "agent_id": "A-9"},
        {"method": "telepathy"},
    ],
)
def test_incomplete_evidence_is_refused_and_not_recorded(eng, kw):
    with pytest.raises(errors.InvalidRequest):
        eng.identity.certify("T1:1", "RET", actor="T1", **kw)
    assert eng.registry.audit_trail("RET") == []


def test_unknown_person(eng):
    with pytest.raises(errors.UnknownPerson):
        eng.identity.certify("T1:1", "NOBODY", "assisted", actor="T1", agent_id="A", agent_region="110000")


def test_repeat_and_conflict(eng):
    first = eng.identity.certify("T1:1", "RET", "card_pin", actor="T1", card_no="C0000002", pin_verified=True)
    again = eng.identity.certify("T1:1", "RET", "card_pin", actor="T1", card_no="C0000002", pin_verified=True)
    assert again.replayed and again.model_copy(update={"replayed": False}) == first
    with pytest.raises(errors.IdempotencyConflict):
        eng.identity.certify("T1:1", "RET", "card_pin", actor="T1", card_no="C0000002", pin_verified=False)
    assert len(eng.registry.audit_trail("RET")) == 1


def test_status_and_audit_trail(eng, clock):
    assert not eng.identity.status("RET").certified
    eng.identity.certify("T1:1", "RET", "biometric", actor="T1", score=0.5, modality="face", device_id="F")
    eng.identity.certify("T1:2", "RET", "biometric", actor="T1", score=0.9, modality="face", device_id="F")
    s = eng.identity.status("RET")
    assert (s.certified, s.method, s.valid_until) == (True, "biometric", dt.date(2025, 3, 1))
    clock.t = dt.datetime(2025, 3, 2, 2, 0, tzinfo=dt.UTC)
    assert not eng.identity.status("RET").certified
    trail = eng.registry.audit_trail("RET")
    assert [(a.event, a.actor, a.detail["score"]) for a in trail] == [
        ("certification_failed", "T1", 0.5), ("certified", "T1", 0.9)]


def test_add_months_keeps_the_calendar_day():
    assert add_months(dt.date(2024, 3, 1), 12) == dt.date(2025, 3, 1)
    assert add_months(dt.date(2024, 2, 29), 12) == dt.date(2025, 2, 28)
    assert add_months(dt.date(2024, 8, 31), 1) == dt.date(2024, 9, 30)
    assert add_months(dt.date(2024, 11, 30), 3) == dt.date(2025, 2, 28)
