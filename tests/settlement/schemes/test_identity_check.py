"""Identity checks at the centre: verified only when the person is enrolled and alive, the card is their active
card and the PIN was verified; every outcome recorded under its key (idempotent), with the reasons."""

from __future__ import annotations

import datetime as dt

import pytest

from settlement import errors
from tests.settlement.flows_helpers import Clock, make_engine

ID = "110100D156000005B1A0C3D4E5F60702"
SEEN = {"actor": "T1", "pin_verified": True, "card_authenticated": True}


@pytest.fixture
def eng(store):
    eng = make_engine(store, Clock())
    eng.pensions.enrol("RET", 2_000_00, "2024-01")
    return eng


def test_verified_recorded_and_quoted_later(eng):
    c = eng.identity.check("T1:1", "EMP", "C0000001", **SEEN)
    assert (c.verified, c.reasons, c.card_status, c.enrolled_regions, c.name) == (
        True, [], "active", ["110000"], "Zhang Wei")
    assert c.certified is None and c.benefit_status is None  # not a pensioner
    assert eng.identity.check_record("T1:1") == c
    again = eng.identity.check("T1:1", "EMP", "C0000001", **SEEN)
    assert again.replayed and again.model_copy(update={"replayed": False}) == c
    with pytest.raises(errors.IdempotencyConflict):
        eng.identity.check("T1:1", "EMP", "C0000001", **SEEN | {"pin_verified": False})
    assert eng.registry.audit_trail("EMP")[-1].event == "identity_checked"


def test_a_pensioner_is_told_the_certification_state(eng):
    c = eng.identity.check("T1:1", "RET", "C0000002", **SEEN)
    assert c.verified and (c.certified, c.benefit_status) == (False, 1)
    eng.identity.certify("T1:2", "RET", "assisted", actor="T1", agent_id="A", agent_region="110000")
    c = eng.identity.check("T1:3", "RET", "C0000002", **SEEN)
    assert c.certified and c.certified_until == dt.date(2025, 3, 1)


@pytest.mark.parametrize(("person", "card", "change", "reasons", "status"), [
    ("NOBODY", "C0000001", None, ["UNKNOWN_PERSON"], None),
    ("EMP", "C0000002", None, ["CARD_NOT_PERSONS"], "another_persons"),
    ("EMP", "X1", None, ["UNKNOWN_CARD"], "unknown"),
    ("EMP", "C0000001", "lost", ["CARD_REPORTED_LOST"], "reported_lost"),
    ("EMP", "C0000001", "dead", ["DEATH_REPORTED"], "active"),
    ("EMP", "C0000001", "moved", ["NOT_ENROLLED"], "active"),
])
def test_refused_with_reasons_and_recorded(eng, person, card, change, reasons, status):
    if change == "lost":
        eng.cards.report_lost("C0000001", actor="op", reason="lost")
    elif change == "dead":
        eng.registry.report_death("EMP", dt.date(2024, 2, 1), actor="civil-affairs")
    elif change == "moved":
        eng.registry.enrol("EMP", "110000", "employee", active=False)
    c = eng.identity.check("T1:1", person, card, **SEEN)
    assert (c.verified, c.reasons, c.card_status) == (False, reasons, status)
    assert eng.identity.check_record("T1:1").reasons == reasons


def test_what_the_counter_saw_counts_too(eng):
    c = eng.identity.check("T1:1", "EMP", "C0000001", actor="T1", pin_verified=False, card_authenticated=False,
                           biometric_passed=False)
    assert c.reasons == ["PIN_NOT_VERIFIED", "BIOMETRIC_FAILED"] and not c.card_authenticated
    eng.cards.issue("EMP", "C0000001", ID, actor="op", reason="identified")
    assert eng.identity.check("T1:2", "EMP", "C0000001", card_id=ID, **SEEN).verified
    copy = eng.identity.check("T1:3", "EMP", "C0000001", card_id=ID.replace("02", "03"), **SEEN)
    assert copy.reasons == ["UNKNOWN_CARD"]


def test_bad_input_records_nothing(eng):
    for kw in ({"pin_verified": "yes"}, {"card_authenticated": None}, {"biometric_passed": 1}):
        with pytest.raises(errors.InvalidRequest):
            eng.identity.check("T1:1", "EMP", "C0000001", **SEEN | kw)
    with pytest.raises(errors.UnknownTransaction):
        eng.identity.check_record("T1:1")
