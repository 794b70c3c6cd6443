"""Issue 12, findings 1-3: who may do what at the centre, tried by hostile terminals.

T1 and T2 belong to hospital BJ3, T9 to hospital BJ1; OPS is the operator (see conftest.py). Each rule is
checked from both sides: the terminal it protects still works, the other one gets a typed refusal that
names the rule, and nothing is written.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from settlement.api.auth import TerminalKey, hash_key, load_terminal_keys
from sscard.settlement_cmd import app as settlement_cli
from tests.security.centre import CARD, LINE, code

PERSON_ROUTES = ["/v1/persons/{p}", "/v1/persons/{p}/certification", "/v1/persons/{p}/accumulators",
                 "/v1/persons/{p}/balances", "/v1/pension/pensioners/{p}"]


# -- finding 1: a void names a key its own terminal issued ------------------------------------------------
def test_another_terminal_cannot_block_a_future_settlement_with_a_void(centre):
    """On main before the fix, T9's void of T1's next serial left a tombstone and T1's settlement was then
    refused ALREADY_REVERSED."""
    for who in ("T9", "T2"):  # another hospital's terminal, and another terminal of the same hospital
        r = centre.call(who, "POST", "/v1/medical/void", json={"terminal_serial": "v1", "setl_id": "T1:0002"})
        assert code(r) == (403, "NOT_OWN_KEY"), r.text
        assert r.json()["details"]["rule"] == "own_key"
    assert centre.tombstones() == 0
    assert centre.settled("T1", "0002")["setl_id"] == "T1:0002"


def test_a_terminal_voids_its_own_keys_also_before_they_arrive(centre):
    early = centre.ok("T1", "POST", "/v1/medical/void", json={"terminal_serial": "v1", "setl_id": "T1:0009"})
    assert early["status"] == "voided_before_arrival"
    s = centre.settled("T1", "0002")
    assert centre.ok("T1", "POST", "/v1/medical/void", json={"terminal_serial": "v2", "setl_id": s["setl_id"]}
                     )["status"] == "voided"


def test_pension_void_of_another_terminals_key_leaves_no_tombstone(centre):
    r = centre.call("T9", "POST", "/v1/pension/void", json={"terminal_serial": "v1", "collection_key": "T1:p1"})
    assert code(r) == (403, "NOT_OWN_KEY")
    assert centre.tombstones() == 0


def test_operator_voids_only_with_a_reason_and_is_audited(centre):
    s = centre.settled("T1", "0002")
    before = centre.postings()
    r = centre.call("OPS", "POST", "/v1/medical/void", json={"terminal_serial": "v1", "setl_id": s["setl_id"]})
    assert code(r) == (422, "REASON_REQUIRED")
    assert centre.postings() == before
    v = centre.ok("OPS", "POST", "/v1/medical/void",
                  json={"terminal_serial": "v1", "setl_id": s["setl_id"], "reason": "duplicate bill, ticket 4711"})
    assert (v["status"], v["actor"], v["reason"]) == ("voided", "OPS", "duplicate bill, ticket 4711")
    trail = centre.ok("OPS", "GET", "/v1/persons/EMP/audit")
    assert [(a["event"], a["actor"], a["detail"]["reason"]) for a in trail if a["event"] == "settlement_voided"] == [
        ("settlement_voided", "OPS", "duplicate bill, ticket 4711")]


# -- finding 2: a terminal key belongs to an institution ------------------------------------------------------
def test_a_terminal_key_without_an_institution_cannot_be_made():
    """On main before the fix, `new-key T0009` printed a key that acted for every hospital."""
    r = CliRunner().invoke(settlement_cli, ["new-key", "T0009"])
    assert r.exit_code != 0 and "--institution" in r.output
    r = CliRunner().invoke(settlement_cli, ["new-key", "HALL1", "--institution", "BJ3", "--operator"])
    assert r.exit_code == 0 and 'institution = "BJ3"\noperator = true' in r.output  # where it sits; acts for all
    r = CliRunner().invoke(settlement_cli, ["new-key", "OPS1", "--operator"])
    assert r.exit_code == 0 and "operator = true" in r.output and "institution" not in r.output
    with pytest.raises(ValueError, match="T1.*institution"):
        TerminalKey("T1", hash_key("k"))
    with pytest.raises(ValueError, match="T1.*institution"):
        TerminalKey("T1", hash_key("k"), "", operator=True)


def test_a_keys_file_entry_without_an_institution_is_refused(tmp_path):
    path = tmp_path / "keys.toml"
    path.write_text(f'[terminal.T1]\nkey_sha256 = "{hash_key("k")}"\n')
    with pytest.raises(ValueError, match="T1.*institution"):
        load_terminal_keys(path)


def test_a_terminal_acts_only_for_its_own_institution(centre):
    s = centre.settled("T1", "0002")
    for path, body in [
        ("/v1/medical/visits", {"terminal_serial": "1", "person_id": "EMP", "institution": "EX1", "care": "outpatient",
                                "card_no": CARD["EMP"]}),
        ("/v1/medical/refund", {"terminal_serial": "2", "setl_id": s["setl_id"], "reason": "mistake"}),
        ("/v1/pension/collect", {"terminal_serial": "3", "person_id": "RET", "amount": 100, "institution": "BJ3"}),
    ]:
        r = centre.call("T9", "POST", path, json=body, card=CARD[body.get("person_id", "EMP")])
        assert code(r) == (403, "OTHER_INSTITUTION"), path
        assert r.json()["details"]["rule"] == "own_institution"
    r = centre.call("T9", "POST", "/v1/medical/presettle", json={"mdtrt_id": s["mdtrt_id"], "lines": [LINE]})
    assert code(r) == (403, "OTHER_INSTITUTION")
    assert code(centre.call("T9", "GET", f"/v1/medical/visits/{s['mdtrt_id']}")) == (403, "OTHER_INSTITUTION")
    assert centre.ok("T2", "GET", f"/v1/medical/visits/{s['mdtrt_id']}")["person_id"] == "EMP"


# -- finding 3: person data only with the card ------------------------------------------------------------------
@pytest.mark.parametrize("route", PERSON_ROUTES)
def test_person_data_needs_the_persons_card(centre, route):
    """On main before the fix, any terminal read any person's data without the card."""
    centre.engine.pensions.enrol("RET", 3_000_00, "2024-01")
    path = route.format(p="RET")
    r = centre.call("T9", "GET", path)
    assert code(r) == (403, "CARD_PROOF_REQUIRED")
    assert r.json()["details"]["rule"] == "card_proof"
    assert code(centre.call("T9", "GET", path, card=CARD["EMP"])) == (403, "CARD_PROOF_MISMATCH")
    assert centre.ok("T9", "GET", path, card=CARD["RET"])
    assert centre.ok("OPS", "GET", path)


def test_unknown_persons_and_persons_without_a_card_answer_like_a_wrong_card(centre):
    """A terminal cannot probe who is enrolled: an unknown person, a person with no card on record (RES) and a
    wrong card get the same refusal."""
    answers = [centre.call("T1", "GET", f"/v1/persons/{p}", card="C0000003").json() for p in ("RES", "NOBODY", "EMP")]
    assert {a["code"] for a in answers} == {"CARD_PROOF_MISMATCH"}
    assert [a["message"].split(" for person")[0] for a in answers] == ["card C0000003 is not the card on record"] * 3


def test_the_proof_is_the_persons_active_card_in_the_registry(centre):
    """The person's own card, reported lost, is refused as such (the card registry's refusal)."""
    centre.engine.cards.report_lost(CARD["EMP"], actor="OPS", reason="holder called the hotline")
    r = centre.call("T1", "GET", "/v1/persons/EMP", card=CARD["EMP"])
    assert code(r) == (403, "CARD_REPORTED_LOST")
    centre.engine.cards.unlock(CARD["EMP"], actor="OPS", reason="found again")
    assert centre.ok("T1", "GET", "/v1/persons/EMP", card=CARD["EMP"])["name"] == "Zhang Wei"


def test_register_certify_and_collect_need_the_card(centre):
    centre.engine.pensions.enrol("RET", 3_000_00, "2024-01")
    before = centre.postings()
    register = {"terminal_serial": "1", "person_id": "EMP", "institution": "BJ3", "care": "outpatient"}
    assert code(centre.call("T1", "POST", "/v1/medical/visits", json=register)) == (403, "CARD_PROOF_REQUIRED")
    r = centre.call("T1", "POST", "/v1/medical/visits", json={**register, "card_no": CARD["RET"]})
    assert code(r) == (403, "CARD_PROOF_MISMATCH")
    certify = {"terminal_serial": "2", "person_id": "RET", "method": "biometric", "score": 0.99, "modality": "face",
               "device_id": "cam-1"}
    assert code(centre.call("T9", "POST", "/v1/identity/certify", json=certify)) == (403, "CARD_PROOF_REQUIRED")
    assert not centre.ok("OPS", "GET", "/v1/persons/RET/certification")["certified"]
    collect = {"terminal_serial": "3", "person_id": "RET", "amount": 100, "institution": "BJ1"}
    assert code(centre.call("T9", "POST", "/v1/pension/collect", json=collect)) == (403, "CARD_PROOF_REQUIRED")
    assert centre.postings() == before
    assert centre.ok("T9", "POST", "/v1/identity/certify", json=certify, card=CARD["RET"])["passed"]
    centre.ok("OPS", "POST", "/v1/pension/issue", json={"region": "110000", "month": "2024-03"})
    assert centre.ok("T9", "POST", "/v1/pension/collect", json=collect, card=CARD["RET"])["amount"] == 100


def test_a_refund_by_another_terminal_of_the_hospital_needs_the_card_and_a_reason(centre):
    """On main before the fix, T2 refunded T1's settlement with neither."""
    s = centre.settled("T1", "0002")
    body = {"terminal_serial": "f1", "setl_id": s["setl_id"], "amount": 20_00}
    assert code(centre.call("T2", "POST", "/v1/medical/refund", json=body)) == (403, "CARD_PROOF_REQUIRED")
    r = centre.call("T2", "POST", "/v1/medical/refund", json=body, card=CARD["EMP"])
    assert code(r) == (422, "REASON_REQUIRED")
    r = centre.call("T2", "POST", "/v1/medical/refund", json={**body, "reason": "drug returned"}, card=CARD["RET"])
    assert code(r) == (403, "CARD_PROOF_MISMATCH")
    assert centre.ok("OPS", "GET", f"/v1/medical/settlements/{s['setl_id']}")["refundable"] == 120_00
    done = centre.ok("T2", "POST", "/v1/medical/refund", card=CARD["EMP"],
                     json={**body, "reason": "drug returned", "operator": "clerk 07"})
    assert (done["actor"], done["reason"], done["operator"]) == ("T2", "drug returned", "clerk 07")
    assert centre.ok("T2", "GET", "/v1/postings/T2:f1")["payload"]["result"]["actor"] == "T2"
    trail = centre.ok("OPS", "GET", "/v1/persons/EMP/audit")
    assert [(a["event"], a["actor"]) for a in trail if a["event"] == "settlement_refunded"] == [
        ("settlement_refunded", "T2")]
    # the settlement's own terminal refunds without the card
    assert centre.ok("T1", "POST", "/v1/medical/refund", json={"terminal_serial": "f2", "setl_id": s["setl_id"]}
                     )["actor"] == "T1"
