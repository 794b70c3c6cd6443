"""Pension certification with the centre's online PIN check, through the terminal daemon's HTTP API: the PIN
goes to the card's VERIFY, then into the PSAM's (or the HSM's) PIN encipher, and only the block reaches the
centre; a PIN the centre does not know is refused there with nothing changed; the PIN and its block are
never journaled, logged or stored."""

from __future__ import annotations

import logging
import sqlite3

import httpx
import pytest

from cardlib.psam import Psam, PsamSecurity
from cardlib.readers.memory import MemoryReader
from settlement.wire import pin_pan
from sim.psam import SimPsam
from sscard.stack import start_counter
from sscard.world import person_id

PIN = "111111"  # 王秀英's card


def sim_card(counter):
    return next(iter(counter.terminal.sessions.values())).reader.card


def dump(path: str) -> str:
    with sqlite3.connect(path) as db:
        return "\n".join(db.iterdump())


def expected_blocks(pin: str, person: str) -> list[str]:
    """The block the sample PSAM makes (same issuer, ECB: the same block every time), hex both cases."""
    block = PsamSecurity(Psam(MemoryReader(SimPsam()))).pin_block(pin, pin_pan(person)).hex()
    return [block, block.upper()]


@pytest.mark.parametrize("psam", ["memory:psam", ""], ids=["psam", "hsm"])
def test_certify_sends_a_pin_block_the_centre_verifies(centre, caplog, psam):
    caplog.set_level(logging.DEBUG)
    pid = person_id("wang_xiuying")
    k = start_counter(centre, "memory:wang_xiuying", psam)
    enciphered = len(centre.hsm.audit.entries(command="encrypt_pin"))  # the issuance's, at seeding
    try:
        with httpx.Client(base_url=k.url, headers=k.headers(), timeout=15) as api:
            c = api.post("/v1/pension/certify", json={"pin": PIN})
            assert c.status_code == 200 and c.json()["passed"], c.text
            assert c.json()["failure"] is None and "verified by the centre" in c.json()["reason"]
        last = centre.engine.registry.audit_trail(pid)[-1]
        assert (last.event, last.detail["pin_check"], last.detail["card_no"]) == ("certified", "online", "S31000077")
        entry = k.terminal.journal.get(c.json()["key"])
        assert entry.request["method"] == "card_pin" and "pin_block" not in entry.request
        secrets = [PIN, *expected_blocks(PIN, pid)]
        journal = dump(k.terminal.journal.path)
    finally:
        k.stop()
    settlement_db = dump(str(centre.workdir / "settlement.db"))
    for s in secrets:
        assert s not in journal and s not in settlement_db and s not in caplog.text
    assert [e.result for e in centre.hsm.audit.entries(command="verify_pin")] == ["00"]
    # the PSAM enciphers at the counter; without one the HSM does (host command BA)
    assert len(centre.hsm.audit.entries(command="encrypt_pin")) - enciphered == (psam == "")


def test_a_pin_the_centre_does_not_know_is_refused_with_nothing_changed(centre):
    """The card accepts the PIN (changed at the card alone), the centre's reference does not: certification
    fails with the typed reason, audited, and the pension and certification stay as they were."""
    pid = person_id("wang_xiuying")
    k = start_counter(centre, "memory:wang_xiuying")
    try:
        sim_card(k).pin.set("222222")
        with httpx.Client(base_url=k.url, headers=k.headers(), timeout=15) as api:
            before = api.get("/v1/pension/status").json()
            wrong_at_card = api.post("/v1/pension/certify", json={"pin": "333333"})
            assert wrong_at_card.status_code == 403 and wrong_at_card.json()["code"] == "PIN_WRONG"
            assert wrong_at_card.json()["details"]["tries_left"] == 2  # the card's counter, surfaced
            trail = len(centre.engine.registry.audit_trail(pid))
            c = api.post("/v1/pension/certify", json={"pin": "222222"})
            assert c.status_code == 200, c.text
            body = c.json()
            assert (body["passed"], body["failure"], body["valid_until"]) == (False, "pin_wrong", None)
            assert api.get("/v1/pension/status").json() == before
        (entry,) = centre.engine.registry.audit_trail(pid)[trail:]
        assert (entry.event, entry.detail["failure"]) == ("certification_failed", "pin_wrong")
        assert sim_card(k).pin.tries_left == 3  # the card accepted it; only the centre refused
    finally:
        k.stop()
