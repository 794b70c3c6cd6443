"""What /v1/readers says about a reader while a flow holds it, and after a card fails."""

from __future__ import annotations

import threading

from sim.faults import Fault


def test_a_busy_reader_still_says_a_card_is_in_it(counter, api):
    (session,) = counter.terminal.sessions.values()
    sim = session.reader.card
    inside, release = threading.Event(), threading.Event()
    original = sim.process

    def held(apdu: bytes):
        if apdu[1] == 0xB2 and not inside.is_set():
            inside.set()
            release.wait(10)
        return original(apdu)

    sim.process = held
    result: dict = {}
    th = threading.Thread(target=lambda: result.update(api.get("/v1/card").json()))
    th.start()
    try:
        assert inside.wait(10)
        (state,) = api.get("/v1/readers").json()
        assert state["busy"] and state["busy_with"] == "read"
        assert state["card_present"] and state["available"]
    finally:
        release.set()
        th.join(10)
    assert result["name"] == "张三"
    (state,) = api.get("/v1/readers").json()
    assert not state["busy"] and state["card_present"]


def test_a_mute_card_is_a_card_timeout_and_the_next_read_works(counter, api):
    (session,) = counter.terminal.sessions.values()
    session.reader.card.faults.arm(Fault("mute", ins=0xB2))
    r = api.get("/v1/card")
    assert r.status_code == 504 and r.json()["code"] == "CARD_TIMEOUT"
    assert "READ RECORD" in r.json()["details"]["reason"]
    assert api.get("/v1/card").json()["name"] == "张三"
