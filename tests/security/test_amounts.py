"""Issue 12, finding 7 (amounts): every amount has an upper bound. Amounts of 2^63 fen and more are 422
INVALID_AMOUNT (before the fix: 500, an OverflowError in the store); a bill above the policy's ceiling per
bill or with more fee lines than the policy allows is 422 BILL_TOO_LARGE naming the rule (before: a
10^15-fen bill and a 200,000-line bill were accepted). Nothing is written."""

from __future__ import annotations

import pytest

from settlement.schemes.policy import PolicyBook
from settlement.wire import MAX_FEE_LINES, MAX_FEN
from tests.security.centre import CARD, LINE, code

HUGE = [2**63, 2**63 - 1, 2**64 + 5, 10**30, MAX_FEN + 1]


def visit(centre, person: str = "EMP") -> str:
    """A visit at BJ3 registered by T1 with the person's card, or by the operator for RES (no card on record)."""
    who, card = ("T1", {"card_no": CARD[person]}) if person in CARD else ("OPS", {})
    return centre.ok(who, "POST", "/v1/medical/visits", json={
        "terminal_serial": "r1", "person_id": person, "institution": "BJ3", "care": "outpatient", **card})["mdtrt_id"]


@pytest.mark.parametrize("amount", HUGE)
def test_huge_amounts_are_422_everywhere(centre, amount):
    mdtrt = visit(centre)
    s = centre.settled("T1", "0002")
    before = centre.postings()
    for who, path, body in [
        ("T1", "/v1/medical/presettle", {"mdtrt_id": mdtrt, "lines": [{**LINE, "det_item_fee_sumamt": amount}]}),
        ("T1", "/v1/medical/settle", {"terminal_serial": "3", "mdtrt_id": mdtrt,
                                      "lines": [{**LINE, "overlmt_amt": amount}]}),
        ("T1", "/v1/medical/refund", {"terminal_serial": "4", "setl_id": s["setl_id"], "amount": amount}),
        ("T1", "/v1/pension/collect", {"terminal_serial": "5", "person_id": "RET", "amount": amount,
                                       "institution": "BJ3", "card_no": CARD["RET"]}),
    ]:
        r = centre.call(who, "POST", path, json=body)
        assert code(r) == (422, "INVALID_AMOUNT"), (path, r.text)
    assert centre.postings() == before


def test_a_bill_above_the_policy_ceiling_is_refused_naming_the_rule(centre):
    ceiling = PolicyBook.load().get("110000").limits.max_bill
    mdtrt = visit(centre)
    before = centre.postings()
    for bill in (ceiling + 1, 10**15):
        for path in ("/v1/medical/presettle", "/v1/medical/settle"):
            lines = [{**LINE, "det_item_fee_sumamt": bill - 1}, {**LINE, "det_item_fee_sumamt": 1}]
            serial = {"terminal_serial": "3"} if path == "/v1/medical/settle" else {}
            r = centre.call("T1", "POST", path, json={**serial, "mdtrt_id": mdtrt, "lines": lines})
            assert code(r) == (422, "BILL_TOO_LARGE"), r.text
            assert r.json()["details"]["rule"] == "max_bill"
    assert centre.postings() == before
    lines = [{**LINE, "det_item_fee_sumamt": ceiling}]
    assert centre.ok("T1", "POST", "/v1/medical/presettle", json={"mdtrt_id": mdtrt, "lines": lines})


def test_too_many_fee_lines_are_refused(centre):
    """Example City allows 2,000 lines per bill; the wire at most MAX_FEE_LINES."""
    mdtrt = visit(centre, "RES")
    before = centre.postings()
    r = centre.call("OPS", "POST", "/v1/medical/settle", json={
        "terminal_serial": "3", "mdtrt_id": mdtrt, "lines": [{**LINE, "det_item_fee_sumamt": 1}] * 2001})
    assert code(r) == (422, "BILL_TOO_LARGE") and r.json()["details"]["rule"] == "max_fee_lines"
    r = centre.call("OPS", "POST", "/v1/medical/settle", json={
        "terminal_serial": "4", "mdtrt_id": mdtrt, "lines": [{**LINE, "det_item_fee_sumamt": 1}] * (MAX_FEE_LINES + 1)})
    assert code(r) == (422, "INVALID_REQUEST")
    assert centre.postings() == before
    assert centre.ok("OPS", "POST", "/v1/medical/settle", json={
        "terminal_serial": "5", "mdtrt_id": mdtrt, "lines": [{**LINE, "det_item_fee_sumamt": 1}] * 2000})


@pytest.mark.parametrize("year", ["99999999999999999999999", "-1", "0", "10000"])
def test_an_out_of_range_year_is_422(centre, year):
    r = centre.call("OPS", "GET", "/v1/persons/EMP/accumulators", params={"year": year})
    assert code(r) == (422, "INVALID_REQUEST")
