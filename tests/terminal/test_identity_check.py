"""Identity checks at the counter that mean something: the centre's recorded verdict (verified or refused,
with an id to quote), the blacklist before the PIN, "provisional" (never verified) when the centre is out of
reach, sent later by recovery."""

from __future__ import annotations

import dataclasses

from settlement.api.service import create_app
from sim.personalize import issue_card, load_holder, sample_holders
from sscard.stack import UvicornThread
from terminal.recovery import recover
from tests.terminal.test_terminal_flows import _ring


def test_verified_by_the_centre_with_an_id_to_quote(api, counter, centre):
    r = api.post("/v1/identity/check", json={"pin": "123456"})
    body = r.json()
    assert r.status_code == 200 and body["status"] == "verified" and body["verified"]
    assert body["check_id"] == body["key"] and body["card_status"] == "active" and body["card_authenticated"]
    assert body["blacklist_version"] == 0 and body["blacklist_age_seconds"] is not None
    recorded = centre.engine.identity.check_record(body["check_id"])
    assert recorded.verified and recorded.card_no == "B10238475"
    assert counter.terminal.journal.get(body["key"]).state == "confirmed"


def test_a_person_the_centre_does_not_know_is_not_verified(api, counter, centre):
    h = load_holder(sample_holders()["zhang_san"])
    stranger = dataclasses.replace(h, holder={**h.holder, "social_security_number": "110105199003070015"},
                                   card={**h.card, "card_number": "B10999999",
                                         "card_id": "110100D156000005B1A0C3D4E5F6FFFF"})
    next(iter(counter.terminal.sessions.values())).reader.insert(issue_card(stranger))
    body = api.post("/v1/identity/check", json={"pin": "123456"}).json()
    assert (body["status"], body["verified"], body["reasons"]) == ("refused", False, ["UNKNOWN_PERSON"])
    assert not centre.engine.identity.check_record(body["check_id"]).verified  # recorded all the same


def test_offline_it_is_provisional_and_sent_when_the_centre_is_back(api, counter, centre):
    port = centre.service.port
    centre.service.stop()
    body = api.post("/v1/identity/check", json={"pin": "123456"}).json()
    assert (body["status"], body["verified"], body["check_id"]) == ("provisional", False, None)
    assert body["reasons"] == ["CENTRE_UNREACHABLE"] and body["blacklist_age_seconds"] is not None
    entry = counter.terminal.journal.get(body["key"])
    assert entry.state == "pending" and entry.kind == "identity"
    centre.service = UvicornThread(create_app(centre.engine, terminals=_ring(centre)), port).start()
    recover(counter.terminal)
    assert counter.terminal.journal.get(body["key"]).state == "confirmed"
    assert centre.engine.identity.check_record(body["key"]).verified
