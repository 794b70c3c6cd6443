"""A hostile terminal at the centre (issue 12, findings 1 and 6): malformed and oversized keys, another
terminal's keys and guessed ones, malformed bodies. Each gets a typed refusal that names the problem, and
nothing is written. On SQLite only: none of these is specific to a store (test_centre_scope.py runs the
scoping rules on both)."""

from __future__ import annotations

import pytest

from tests.security.centre import CARD, LINE, code

pytestmark = pytest.mark.parametrize("store_kind", ["sqlite"])

BAD_KEYS = ["", "\x00", "T1:\x000002", "T1:0002\x00", "T1", ":0002", "T1:", "T1:00 02", "T1:0002\n", "T1:０００２",
            "T1:0002/../0003", "T1:" + "9" * 65, "T" * 65 + ":1", "T1:" + "9" * 100_000]
BAD_SERIALS = ["", "\x00", "00\x0002", "0" * 65, "00 02", "../x", "０１"]


def writes(centre) -> tuple[int, int]:
    return centre.postings(), centre.tombstones()


def test_malformed_keys_are_refused_as_such_and_store_nothing(centre):
    """On main before the fix, void stored empty, NUL-laden and 10 MB keys as tombstones."""
    centre.settled("T1", "0002")
    before = writes(centre)
    for bad in BAD_KEYS:
        for path, body in [("/v1/medical/void", {"terminal_serial": "v1", "setl_id": bad}),
                           ("/v1/pension/void", {"terminal_serial": "v2", "collection_key": bad}),
                           ("/v1/medical/refund", {"terminal_serial": "v3", "setl_id": bad, "amount": 1})]:
            r = centre.call("T1", "POST", path, json=body)
            assert code(r) == (422, "INVALID_REQUEST"), (path, bad[:20], r.text[:200])
            field = "setl_id" if "setl_id" in body else "collection_key"
            assert [e["field"] for e in r.json()["details"]["errors"]] == [field]
    assert writes(centre) == before


def test_a_ten_megabyte_key_is_refused_before_it_is_read(centre):
    before = writes(centre)
    r = centre.call("T1", "POST", "/v1/medical/void", json={"terminal_serial": "v1", "setl_id": "T1:" + "9" * 10**7})
    assert code(r) == (413, "REQUEST_TOO_LARGE")
    assert writes(centre) == before


def test_malformed_serials_are_refused(centre):
    visit = centre.ok("T1", "POST", "/v1/medical/visits", json={
        "terminal_serial": "r1", "person_id": "EMP", "institution": "BJ3", "care": "outpatient",
        "card_no": CARD["EMP"]})
    before = writes(centre)
    for bad in BAD_SERIALS:
        r = centre.call("T1", "POST", "/v1/medical/settle",
                        json={"terminal_serial": bad, "mdtrt_id": visit["mdtrt_id"], "lines": [LINE]})
        assert code(r) == (422, "INVALID_REQUEST"), bad
        assert [e["field"] for e in r.json()["details"]["errors"]] == ["terminal_serial"]
    assert writes(centre) == before


@pytest.mark.parametrize("path", ["/v1/medical/settlements/{k}", "/v1/postings/{k}", "/v1/identity/checks/{k}"])
def test_lookups_name_own_keys_only_and_checked_ones(centre, path):
    s = centre.settled("T1", "0002")
    for who in ("T2", "T9"):  # the same hospital's other terminal, another hospital's
        r = centre.call(who, "GET", path.format(k=s["setl_id"]))
        assert code(r) == (403, "NOT_OWN_KEY"), (who, r.text)
    guessed = centre.call("T1", "GET", path.format(k="T1:0099"))  # its own prefix, a serial never used
    assert guessed.status_code == 404 and guessed.json()["code"].startswith("UNKNOWN_")
    for bad in ("T1:%00", "T1:" + "9" * 200, "T1%3A0002%20", "%EF%BC%90"):
        r = centre.call("T1", "GET", path.format(k=bad))
        assert code(r) == (422, "INVALID_REQUEST"), (bad, r.text)


@pytest.mark.parametrize("body", [
    b"not json", b"[]", b"null", b'{"terminal_serial": "v1", "setl_id": "T1:0002", "setl_id": "T1:\\u0000"}',
    b'{"terminal_serial": "v1", "setl_id": "T1:0002", "extra": 1}', b"[" * 100_000 + b"]" * 100_000,
    b'{"terminal_serial": "v1", "setl_id": "T1:0002", "reason": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
    b"\xff\xfe{}", b'{"terminal_serial": 1e400, "setl_id": "T1:0002"}'])
def test_malformed_bodies_get_a_typed_refusal(centre, body):
    before = writes(centre)
    r = centre.http.post("/v1/medical/void", content=body,
                         headers={"X-Terminal-Key": "key-of-T1", "Content-Type": "application/json"})
    assert code(r) == (422, "INVALID_REQUEST"), r.text[:300]
    assert writes(centre) == before


def test_unknown_routes_and_methods_answer_in_the_error_shape(centre):
    assert code(centre.call("T1", "GET", "/v1/nowhere")) == (404, "NOT_FOUND")
    assert code(centre.call("T1", "DELETE", "/v1/medical/void")) == (405, "METHOD_NOT_ALLOWED")
