"""A pension collection whose answer the counter never got ends reversed, never paid behind its back:
the centre unreachable, the card pulled while the request is in flight, the terminal restarted mid-flow."""

from __future__ import annotations

import httpx
import pytest

from settlement.errors import AlreadyReversed, ServiceUnreachable
from settlement.schemes import chart
from sscard.stack import start_counter
from sscard.world import card_no, person_id
from terminal.journal import CONFIRMED, REVERSED
from terminal.recovery import recover
from tests.terminal.conftest import DIALECTS

pytestmark = pytest.mark.parametrize("dialect", DIALECTS)

PIN = "111111"
WANG = person_id("wang_xiuying")
START = 4_200_00  # the sample pensioner's account after seeding


@pytest.fixture
def pension_counter(centre, dialect):
    k = start_counter(centre, "memory:wang_xiuying", dialect=dialect)
    with httpx.Client(base_url=k.url, headers=k.headers(), timeout=15) as api:
        assert api.post("/v1/pension/certify", json={"pin": PIN}).json()["passed"]
        yield k, api
    k.stop()


def balances(centre) -> tuple[int, int]:
    b = centre.engine.ledger.balances([chart.pensioner_account(WANG), chart.institution_cash("H11000301")])
    return b[chart.pensioner_account(WANG)], b[chart.institution_cash("H11000301")]


def collection(counter):
    (e,) = [e for e in counter.terminal.journal.all() if e.kind == "pension_collect"]
    return e


def test_no_answer_reverses_the_collection(pension_counter, centre):
    counter, api = pension_counter
    real = counter.terminal.centre.collect_pension

    def applied_then_lost(**kw):
        real(**kw)
        raise ServiceUnreachable("timed out", outcome_unknown=True)

    counter.terminal.centre.collect_pension = applied_then_lost  # type: ignore[method-assign]
    r = api.post("/v1/pension/collect", json={"pin": PIN, "amount": 1000_00})
    assert r.status_code == 503 and r.json()["code"] == "SETTLEMENT_UNAVAILABLE", r.text
    assert r.json()["details"]["reversal_state"] == "confirmed"
    assert collection(counter).state == REVERSED
    assert balances(centre) == (START, 0)  # paid out, then voided: the money is back
    assert centre.engine.ledger.get(collection(counter).key).status == "reversed"
    centre.engine.ledger.check_invariants()


def test_card_pulled_in_flight_reverses_the_collection(pension_counter, centre):
    counter, api = pension_counter
    sim = next(iter(counter.terminal.sessions.values())).reader.card
    real = counter.terminal.centre.collect_pension

    def collect_and_pull(**kw):
        out = real(**kw)
        sim.pull()  # the pensioner walks off while the centre answers
        return out

    counter.terminal.centre.collect_pension = collect_and_pull  # type: ignore[method-assign]
    r = api.post("/v1/pension/collect", json={"pin": PIN, "amount": 500_00})
    assert r.status_code == 409 and r.json()["code"] == "CARD_REMOVED", r.text
    assert r.json()["details"]["reversal_state"] == "confirmed"
    assert balances(centre) == (START, 0)


@pytest.mark.parametrize("applied", [True, False])
def test_restart_resolves_a_pending_collection(pension_counter, centre, applied):
    """As after a crash between journaling and the answer: applied -> confirmed; not -> voided for good."""
    counter, _api = pension_counter
    counter.forwarder.stop()  # this test is the recovery pass: the daemon's own (every 2 s) must not race it
    t = counter.terminal
    request = {"person_id": WANG, "amount": 300_00, "institution": "H11000301"}
    e = t.journal.begin("pension_collect", request, person_id=WANG, amount=300_00)
    client = centre.client()
    if applied:
        client.collect_pension(serial=e.request["terminal_serial"], **request, card_no=card_no("wang_xiuying"))
    rep = recover(t)
    got = t.journal.get(e.key)
    if applied:
        assert (rep.confirmed, got.state) == ([e.key], CONFIRMED)
        assert got.response["balance_after"] == START - 300_00
        assert balances(centre) == (START - 300_00, 300_00)
    else:
        assert (rep.reversed, got.state) == ([e.key], REVERSED)
        with pytest.raises(AlreadyReversed):  # the lost request, landing late, is refused
            client.collect_pension(serial=e.request["terminal_serial"], **request, card_no=card_no("wang_xiuying"))
        assert balances(centre) == (START, 0)
    assert recover(t).clean and t.journal.get(e.key).state == got.state  # a second pass changes nothing
    client.close()
    centre.engine.ledger.check_invariants()
