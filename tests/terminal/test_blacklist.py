"""The card blacklist at the counter: the copy in the journal's file (deltas, pages, epochs, restarts, a
malformed answer refused), and a counter day with a card reported lost mid-day, blocked at the counter,
unlocked and unblocked, a replaced card, and the centre out of reach. Time is a clock the test moves."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import httpx
import pytest

from settlement.api.client import SettlementClient
from settlement.wire import BlacklistDelta
from sim.personalize import issue_sample, load_holder, sample_holders
from sscard.stack import Centre, Counter, start_counter
from sscard.world import issue_and_enrol, new_card
from terminal.blacklist import Blacklist, BlacklistError, BlacklistFetcher
from tests.terminal.conftest import LINES

ID1, ID2 = "110100D156000005B1A0C3D4E5F60701", "110100D156000005B1A0C3D4E5F60702"
EPOCH = "0123456789abcdef"
ZHANG = "B10238475"
OP = {"actor": "hall/王芳", "reason": "holder at the service hall"}


class Clock:
    def __init__(self) -> None:
        self.t = dt.datetime(2024, 3, 1, 2, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += dt.timedelta(seconds=seconds)


def delta(since: int, version: int, entries, *, more: bool = False, reset: bool = False, epoch: str = EPOCH):
    return BlacklistDelta(epoch=epoch, since=since, version=version, more=more, reset=reset, entries=entries)


# ---- the copy --------------------------------------------------------------------------------------------------
def test_the_copy_follows_the_deltas_and_survives_a_restart(tmp_path):
    clock = Clock()
    bl = Blacklist(tmp_path / "journal.db", now=clock)
    assert bl.lookup(ID1, "C1") is None and bl.age() is None
    pages = {0: delta(0, 2, [("C1", ID1, "reported_lost", ""), ("C2", "", "cancelled", "")], more=True),
             2: delta(2, 3, [("C3", ID2, "replaced", "DF04")])}
    got = bl.refresh(lambda since: pages[since])
    assert (got.version, got.entries, got.pages) == (3, 3, 2)
    assert bl.lookup(ID1.lower(), None).status == "reported_lost"  # by identification code
    assert bl.lookup(None, "C2").status == "cancelled"  # by number (a card whose code the centre never knew)
    assert bl.lookup(ID2, "C3").application == "DF04"
    clock.advance(90)
    assert bl.age() == dt.timedelta(seconds=90)
    bl.refresh(lambda since: delta(3, 5, [("C1", ID1, "active", ""), ("C3", ID2, "active", "DF04")]))
    assert bl.lookup(ID1, "C1") is None  # unlocked: off the list
    assert not bl.lookup(ID2, "C3").refused  # active again, its application to unblock
    bl.close()
    again = Blacklist(tmp_path / "journal.db", now=clock)  # a restart: the copy is still there
    assert again.state() == {"epoch": EPOCH, "version": 5, "entries": 2, "fetched_at": clock().isoformat(),
                             "age_seconds": 0}
    again.close()


def test_recent_changes_override_the_bulk_until_merged_into_it(tmp_path):
    bl = Blacklist(tmp_path / "journal.db")
    bl.refresh(lambda since: delta(0, 3, [("C1", ID1, "reported_lost", ""), ("C2", "", "cancelled", ""),
                                          ("C3", ID2, "replaced", "")]))
    assert bl.merge() == 3
    bl.refresh(lambda since: delta(3, 6, [("C4", "", "cancelled", ""), ("C2", "", "active", ""),
                                          ("C1", ID1, "active", "DF04")]))

    def seen() -> tuple[list, int]:
        hits = [bl.lookup(None, no) for no in ("C1", "C2", "C3", "C4")]
        return [h and (h.status, h.application) for h in hits], bl.state()["entries"]

    assert seen() == ([("active", "DF04"), None, ("replaced", ""), ("cancelled", "")], 3)
    bl.record_action("C1", ID1, "unblocked", "DF04", "active")  # over the bulk's "reported_lost" row
    assert bl.lookup(ID1, None) is None and bl.lookup(None, "C1") is None
    assert bl.merge(chunk=2) == 3 and seen() == ([None, None, ("replaced", ""), ("cancelled", "")], 2)
    assert bl.merge() == 0


def test_a_new_epoch_or_a_reset_starts_from_an_empty_copy(tmp_path):
    bl = Blacklist(tmp_path / "journal.db")
    bl.refresh(lambda since: delta(0, 7, [("C1", ID1, "reported_lost", "")]))
    asked = []

    def other_centre(since: int) -> BlacklistDelta:
        asked.append(since)
        return delta(since, 2, [("C9", "", "cancelled", "")] if since == 0 else [], epoch="fedcba9876543210")

    assert bl.refresh(other_centre).reset and asked == [7, 0]  # our version means nothing there
    assert bl.lookup(ID1, "C1") is None and bl.lookup(None, "C9") is not None
    bl.refresh(lambda since: delta(since, 1, [("C8", "", "replaced", "")], reset=True, epoch="fedcba9876543210"))
    assert bl.lookup(None, "C9") is None and bl.state()["version"] == 1


HEAD = b'"epoch": "0123456789abcdef", "since": 3, "version": 9'


@pytest.mark.parametrize("answer", [
    b"not json", b"[]", b"{}",
    b'{"epoch": "0123456789abcdef", "since": 2, "version": 9, "entries": []}',  # an answer to another question
    b'{"epoch": "0123456789abcdef", "since": 3, "version": 2, "entries": []}',  # going back
    b"{" + HEAD + b', "entries": [["C1", "", "stolen", ""]]}',
    b"{" + HEAD + b', "entries": [["C 1", "", "cancelled", ""]]}',
    b"{" + HEAD + b', "entries": [["C1", "12", "cancelled", ""]]}',
    b"{" + HEAD + b', "entries": [["C1", "", "cancelled"]]}',
    b"{" + HEAD + b', "entries": [["C1", "", "cancelled", "MF"]]}',
    b'{"epoch": "X", "since": 3, "version": 9, "entries": []}',
])
def test_a_malformed_answer_is_refused_and_the_copy_kept(tmp_path, answer):
    """Over HTTP, as the centre's client reads it: wrong JSON, wrong shapes, values out of their forms, an
    answer that does not follow from the version asked."""
    bl = Blacklist(tmp_path / "journal.db")
    bl.refresh(lambda since: delta(0, 3, [("C1", ID1, "reported_lost", "")]))
    before = bl.state()
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=answer))
    client = SettlementClient("http://centre", "key", transport=transport)
    fetcher = BlacklistFetcher(bl, client, interval=60)
    assert fetcher.step() is None and fetcher.last_error
    with pytest.raises(BlacklistError):
        bl.refresh(client.card_blacklist)
    assert bl.state() == before and bl.lookup(ID1, "C1").status == "reported_lost"


# ---- a counter day -------------------------------------------------------------------------------------------
@pytest.fixture
def desk(centre: Centre) -> Iterator[tuple[Counter, httpx.Client, Clock]]:
    """A counter that blocks DF04 on blacklisted cards, fetching every 60 s of a clock the test moves."""
    counter = start_counter(centre, blacklist={"interval": 60, "block_application": "DF04"})
    clock = Clock()
    counter.terminal.blacklist.now = clock
    counter.terminal.fetcher.last_attempt = clock()
    with httpx.Client(base_url=counter.url, headers=counter.headers(), timeout=15) as api:
        yield counter, api, clock
    counter.stop()


def sim_reader(counter: Counter):
    return next(iter(counter.terminal.sessions.values())).reader


def sim_card(counter: Counter):
    return sim_reader(counter).card


def settlements(centre: Centre, person: str) -> int:
    return centre.engine.store.read(lambda tx: tx.value(
        "SELECT COUNT(*) FROM med_settlements WHERE person_id = ? AND status = 'settled'", (person,)))


def test_a_card_reported_lost_mid_day_is_refused_within_one_interval(centre, desk):
    counter, api, clock = desk
    t, card, person = counter.terminal, sim_card(counter), "110105198001010016"
    mdtrt = api.post("/v1/visits", json={"care": "outpatient"}).json()["mdtrt_id"]
    assert api.post(f"/v1/visits/{mdtrt}/settle", json={"lines": LINES, "pin": "123456"}).status_code == 200
    afternoon = api.post("/v1/visits", json={"care": "outpatient"}).json()["mdtrt_id"]
    centre.engine.cards.report_lost(ZHANG, **OP)

    clock.advance(30)  # within the interval the copy is old: the centre refuses the settlement (after the PIN)
    assert t.fetcher.step() is None
    r = api.post(f"/v1/visits/{afternoon}/settle", json={"lines": LINES, "pin": "123456"})
    assert (r.status_code, r.json()["code"]) == (403, "CARD_REPORTED_LOST")

    clock.advance(30)  # one interval after the last fetch: the counter knows, and refuses before the PIN
    assert t.fetcher.step().version >= 1
    tries = card.pin.tries_left
    r = api.post(f"/v1/visits/{afternoon}/settle", json={"lines": LINES, "pin": "000000"})
    body = r.json()
    assert (r.status_code, body["code"]) == (403, "CARD_REPORTED_LOST") and card.pin.tries_left == tries
    assert body["details"]["application_blocked"] == "DF04" and body["details"]["blacklist_age_seconds"] == 0
    assert "挂失" in api.post("/v1/identity/check", json={"pin": "123456"},
                             headers={"Accept-Language": "zh"}).json()["message"]
    assert api.get("/v1/card").json()["code"] == "CARD_REPORTED_LOST"
    assert card.blocked_apps == {"DF04": False}  # blocked on the card with the PSAM's MAC, once
    assert [a["action"] for a in t.blacklist.actions(ZHANG)] == ["blocked"]
    assert centre.engine.cards.card(ZHANG).application_blocked == "DF04"  # the centre was told
    assert settlements(centre, person) == 1  # and it never settled again

    centre.engine.cards.unlock(ZHANG, **OP)  # found at home: unlocked at a service hall
    clock.advance(60)
    t.fetcher.step()
    info = api.get("/v1/card")
    assert info.status_code == 200 and card.blocked_apps == {}  # unblocked with APPLICATION UNBLOCK
    assert [a["action"] for a in t.blacklist.actions(ZHANG)] == ["blocked", "unblocked"]
    assert centre.engine.cards.card(ZHANG).application_blocked is None
    r = api.post(f"/v1/visits/{afternoon}/settle", json={"lines": LINES, "pin": "123456"})
    assert r.status_code == 200 and r.json()["card_record"] == "written"  # DF04 takes records again
    assert [e.event for e in centre.engine.cards.history(ZHANG)][-4:] == [
        "card_reported_lost", "card_application_blocked", "card_unlocked", "card_application_unblocked"]


def test_a_replaced_card_works_and_the_old_one_does_not(centre, desk):
    counter, api, clock = desk
    reader = sim_reader(counter)
    h = load_holder(sample_holders()["zhang_san"])
    new = issue_and_enrol(centre.engine, new_card(h, "B10238476", "110100D156000005B1A0C3D4E5F60719"),
                          replace=True)
    clock.advance(60)
    counter.terminal.fetcher.step()
    r = api.get("/v1/card")
    assert (r.status_code, r.json()["code"]) == (403, "CARD_REPLACED")
    reader.insert(new)
    assert api.get("/v1/card").json()["card_number"] == "B10238476"
    mdtrt = api.post("/v1/visits", json={"care": "outpatient"}).json()["mdtrt_id"]
    assert api.post(f"/v1/visits/{mdtrt}/settle", json={"lines": LINES, "pin": "123456"}).status_code == 200


def test_offline_the_counter_decides_from_its_copy_and_says_how_old_it_is(centre, desk):
    counter, api, clock = desk
    centre.engine.cards.report_lost(ZHANG, **OP)
    clock.advance(60)
    counter.terminal.fetcher.step()
    centre.service.stop()
    clock.advance(3600)
    assert counter.terminal.fetcher.step() is None  # the centre is gone: the copy stays
    r = api.get("/v1/card")
    assert r.json()["code"] == "CARD_REPORTED_LOST" and r.json()["details"]["blacklist_age_seconds"] == 3600
    sim_reader(counter).insert(issue_sample("li_si"))  # a card not on the copy: accepted, from the same old copy
    r = api.get("/v1/card")
    assert r.status_code == 200 and (r.json()["blacklist_version"], r.json()["blacklist_age_seconds"]) == (1, 3600)
    health = api.get("/health").json()["components"]["blacklist"]
    assert health["status"] == "degraded" and "3600 s old" in health["detail"]
