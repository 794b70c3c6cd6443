"""The card registry: one active card per person, the lifecycle with its audit, the check every transaction
applies, the versioned blacklist, the take-over of card numbers enrolled before the registry, bad input."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from settlement import errors
from settlement.ledger.store.sqlite import SqliteStore
from settlement.schemes.cards import check_card, load_cards, refusal
from settlement.schemes.engine import Engine
from settlement.wire import BlacklistDelta
from tests.settlement.flows_helpers import make_engine

ID1 = "110100D156000005B1A0C3D4E5F60701"
ID2 = "110100D156000005B1A0C3D4E5F60702"
ID3 = "110100D156000005B1A0C3D4E5F60703"
OP = {"actor": "op-7", "reason": "at the service hall"}


@pytest.fixture
def eng(store, clock):
    eng = make_engine(store, clock)
    eng.registry.add_person("NEW", "Zhou Min", "110000", "employee")
    return eng


def snapshot(eng: Engine) -> tuple:
    """Everything a card command may change."""
    def q(tx):
        return (tx.rows("SELECT * FROM card_cards ORDER BY card_no"), tx.rows("SELECT * FROM card_blacklist ORDER BY"
                " card_no"), tx.rows("SELECT * FROM card_blacklist_head"), tx.rows("SELECT * FROM audit_trail"),
                tx.rows("SELECT person_id, card_no FROM reg_persons ORDER BY person_id"))
    return eng.store.read(q)


def test_persons_enrolled_with_a_card_number_have_that_card(eng):
    emp = eng.cards.active_card("EMP")
    assert emp is not None and (emp.card_no, emp.card_id, emp.status) == ("C0000001", None, "active")
    assert eng.cards.active_card("RES") is None and eng.cards.cards_of("NEW") == []


def test_a_database_from_before_the_registry_gets_its_cards_once(tmp_path, clock):
    store = SqliteStore(tmp_path / "old.db")
    eng = make_engine(store, clock)
    eng.store.run(lambda tx: [tx.execute(f"DROP TABLE {t}") for t in ("card_cards", "card_blacklist",
                                                                       "card_blacklist_head")])
    store.close()
    again = Engine(SqliteStore(tmp_path / "old.db"), clock=clock)
    assert [c.card_no for c in again.cards.cards_of("RET")] == ["C0000002"]
    again.cards.cancel("C0000002", **OP)
    again.store.close()
    third = Engine(SqliteStore(tmp_path / "old.db"), clock=clock)  # the take-over ran once: nothing added
    assert [(c.card_no, c.status) for c in third.cards.cards_of("RET")] == [("C0000002", "cancelled")]
    third.store.close()


def test_issue_identify_and_the_one_active_card_rule(eng):
    card = eng.cards.issue("NEW", "N0000001", ID1.lower(), spec_version="3.00", issued_on=dt.date(2024, 1, 2),
                           expires_on=dt.date(2034, 1, 2), **OP)
    assert (card.card_id, card.region, card.status) == (ID1, "110100", "active")
    assert eng.registry.person("NEW").card_no == "N0000001"
    assert eng.cards.issue("NEW", "N0000001", ID1, spec_version="3.00", issued_on=dt.date(2024, 1, 2),
                           expires_on=dt.date(2034, 1, 2), **OP) == card  # a repeat
    before = snapshot(eng)
    with pytest.raises(errors.InvalidState, match="replace it"):
        eng.cards.issue("NEW", "N0000002", ID2, **OP)
    with pytest.raises(errors.IdempotencyConflict):
        eng.cards.issue("NEW", "N0000001", ID1, spec_version="2.00", **OP)
    with pytest.raises(errors.IdempotencyConflict):
        eng.cards.issue("EMP", "N0000001", ID1, **OP)
    assert snapshot(eng) == before
    # a card taken over without its identification code is completed by issuing it again
    emp = eng.cards.issue("EMP", "C0000001", ID2, **OP)
    assert emp.card_id == ID2 and [e.event for e in eng.cards.history("C0000001")] == ["card_identified"]
    with pytest.raises(errors.IdempotencyConflict, match="belongs to card C0000001"):
        eng.cards.issue("RET", "C0000002", ID2, **OP)


def test_lifecycle_audited_with_operator_and_reason(eng):
    eng.cards.report_lost("C0000001", actor="op-1", reason="lost on the bus")
    assert eng.cards.report_lost("C0000001", actor="op-1", reason="again").status == "reported_lost"  # a repeat
    eng.cards.unlock("C0000001", actor="op-2", reason="found at home")
    new = eng.cards.replace("EMP", "C0000009", ID3, actor="op-3", reason="chip worn")
    assert new.status == "active" and eng.registry.person("EMP").card_no == "C0000009"
    old = eng.cards.card("C0000001")
    assert (old.status, old.replaced_by) == ("replaced", "C0000009")
    eng.cards.cancel("C0000009", actor="op-4", reason="moved abroad")
    assert eng.cards.active_card("EMP") is None
    history = [(e.event, e.actor, e.detail["reason"], e.detail.get("status_after"))
               for e in eng.cards.history("C0000001")]
    assert history == [("card_reported_lost", "op-1", "lost on the bus", "reported_lost"),
                       ("card_unlocked", "op-2", "found at home", "active"),
                       ("card_replaced", "op-3", "chip worn", "replaced")]
    assert [e.event for e in eng.cards.history("C0000009")] == ["card_issued", "card_cancelled"]
    assert [e.event for e in eng.registry.audit_trail("EMP")][-4:] == [
        "card_unlocked", "card_replaced", "card_issued", "card_cancelled"]


def test_replacing_a_card_reported_lost(eng):
    eng.cards.report_lost("C0000002", **OP)
    eng.cards.replace("RET", "C0000012", ID2, **OP)
    assert eng.cards.card("C0000002").status == "replaced"
    assert eng.cards.replace("RET", "C0000012", ID2, **OP).card_no == "C0000012"  # a repeat
    with pytest.raises(errors.CardReplaced):
        eng.cards.unlock("C0000002", **OP)


def test_bad_commands_are_typed_and_change_nothing(eng):
    eng.cards.cancel("C0000002", **OP)
    before = snapshot(eng)
    with pytest.raises(errors.UnknownCard):
        eng.cards.report_lost("NOSUCH1", **OP)
    with pytest.raises(errors.UnknownCard):
        eng.cards.cancel("NOSUCH1", **OP)
    with pytest.raises(errors.NoCardOfRecord):
        eng.cards.replace("NEW", "N0000003", ID3, **OP)
    with pytest.raises(errors.NoCardOfRecord):
        eng.cards.replace("RET", "N0000003", ID3, **OP)  # cancelled: nothing to replace
    with pytest.raises(errors.UnknownPerson):
        eng.cards.replace("NOBODY", "N0000003", ID3, **OP)
    with pytest.raises(errors.CardCancelled):
        eng.cards.unlock("C0000002", **OP)
    with pytest.raises(errors.CardCancelled):
        eng.cards.report_lost("C0000002", **OP)
    with pytest.raises(errors.InvalidState, match="cannot be unlocked"):
        eng.cards.unlock("C0000001", **OP)
    for bad in [{"card_no": "N 1"}, {"card_id": "XYZ"}, {"card_id": ID3[:30]}, {"reason": " "},
                {"actor": ""}, {"region": "11"}, {"issued_on": dt.date(2030, 1, 1), "expires_on": dt.date(2020, 1, 1)}]:
        args = {"card_no": "N0000003", "card_id": ID3, **OP, **bad}
        with pytest.raises(errors.InvalidRequest):
            eng.cards.issue("NEW", **args)
    assert snapshot(eng) == before


def test_the_check_every_transaction_applies(eng, clock):
    eng.cards.issue("NEW", "N0000001", ID1, expires_on=dt.date(2024, 6, 30), **OP)

    def check(person, card_id=None, card_no=None):
        return eng.store.read(lambda tx: check_card(tx, person, eng.today(), card_id=card_id, card_no=card_no))

    assert check("NEW", ID1, "N0000001").card_no == "N0000001"
    assert check("NEW", card_id=ID1).card_no == "N0000001"
    assert check("NEW") is None
    assert check("EMP", ID3, "C0000001").card_no == "C0000001"  # identification code unknown at the centre
    for args, error in [(("NEW", ID2, "N0000001"), errors.UnknownCard),  # another chip with this number
                        (("NEW", ID1, "C0000001"), errors.UnknownCard),
                        (("NEW", None, "ZZZ"), errors.UnknownCard),
                        (("EMP", ID1, "N0000001"), errors.CardNotPersons)]:
        with pytest.raises(error):
            check(*args)
    eng.cards.report_lost("N0000001", **OP)
    with pytest.raises(errors.CardReportedLost) as lost:
        check("NEW", ID1, "N0000001")
    assert lost.value.details["card_no"] == "N0000001"
    eng.cards.unlock("N0000001", **OP)
    clock.advance(days=130)
    with pytest.raises(errors.CardExpired):
        check("NEW", ID1, "N0000001")
    assert not eng.cards.is_active_card("NEW", card_id=ID1)
    eng.cards.replace("NEW", "N0000002", ID2, **OP)
    with pytest.raises(errors.CardReplaced, match="N0000002"):
        check("NEW", ID1)
    assert eng.cards.is_active_card("NEW", card_id=ID2, card_no="N0000002")
    assert not eng.cards.is_active_card("NEW") and not eng.cards.is_active_card("EMP", card_no="N0000002")


def test_a_batch_reads_its_cards_once(eng):
    eng.cards.report_lost("C0000002", **OP)
    wanted = [("EMP", None, "C0000001"), ("RET", None, "C0000002"), ("EMP", None, "C0000002")]
    cards = eng.store.read(lambda tx: load_cards(tx, eng.today(), card_nos=[w[2] for w in wanted]))
    assert sorted(c.card_no for c in cards) == ["C0000001", "C0000002"]
    outcomes = [refusal(cards, p, i, n) for p, i, n in wanted]
    assert [type(o).__name__ if o else None for o in outcomes] == [None, "CardReportedLost", "CardNotPersons"]


def test_blacklist_versions_deltas_and_pages(eng):
    empty = eng.cards.blacklist()
    assert (empty.version, empty.entries) == (0, [])
    eng.cards.issue("NEW", "N0000001", ID1, **OP)
    assert eng.cards.blacklist().version == 0  # an active card is no news
    eng.cards.report_lost("N0000001", **OP)
    eng.cards.cancel("C0000002", **OP)
    eng.cards.unlock("N0000001", **OP)
    full = eng.cards.blacklist()
    assert full.version == 3 and full.entries == [("C0000002", "", "cancelled", "")]  # no tombstones from 0
    delta = eng.cards.blacklist(since=1)
    assert delta.entries == [("C0000002", "", "cancelled", ""), ("N0000001", ID1, "active", "")]
    assert eng.cards.blacklist(since=3).entries == [] and eng.cards.blacklist(since=3).version == 3
    eng.cards.report_lost("C0000001", **OP)
    page = eng.cards.blacklist(since=0, limit=1)
    assert page.more and page.entries == [("C0000002", "", "cancelled", "")] and page.version == 2
    rest = eng.cards.blacklist(since=page.version, limit=1)
    assert rest.entries == [("N0000001", ID1, "active", "")] and rest.more
    last = eng.cards.blacklist(since=rest.version)
    assert last.entries == [("C0000001", "", "reported_lost", "")] and not last.more and last.version == 4
    for since, limit in ((0, 10), (0, 1), (1, 1), (2, 5), (4, 5), (99, 10)):  # the service's JSON says the same
        assert BlacklistDelta.model_validate_json(eng.cards.blacklist_json(since, limit)) == \
            BlacklistDelta.model_validate(eng.cards.blacklist(since, limit).model_dump())
    ahead = eng.cards.blacklist(since=99)  # a terminal ahead of this centre (another database): start again
    assert ahead.reset and len(ahead.entries) == 2 and ahead.epoch == full.epoch
    for bad in [{"since": -1}, {"limit": 0}, {"limit": 10**9}]:
        with pytest.raises(errors.InvalidRequest):
            eng.cards.blacklist(**bad)


def test_application_blocked_at_a_counter_travels_with_the_blacklist(eng):
    eng.cards.issue("NEW", "N0000001", ID1, **OP)
    eng.cards.report_lost("N0000001", **OP)
    eng.cards.application_blocked("N0000001", ID1, "DF04", actor="T1")
    assert eng.cards.blacklist(1).entries == [("N0000001", ID1, "reported_lost", "DF04")]
    eng.cards.unlock("N0000001", **OP)
    assert eng.cards.blacklist().entries == [("N0000001", ID1, "active", "DF04")]  # to unblock at the next counter
    eng.cards.application_blocked("N0000001", ID1, None, actor="T2")
    assert eng.cards.blacklist().entries == [] and eng.cards.blacklist(3).entries == [("N0000001", ID1, "active", "")]
    assert [e.event for e in eng.cards.history("N0000001")][-2:] == ["card_unlocked", "card_application_unblocked"]
    with pytest.raises(errors.UnknownCard):
        eng.cards.application_blocked("N0000001", ID2, "DF04", actor="T1")
    with pytest.raises(errors.InvalidRequest):
        eng.cards.application_blocked("N0000001", ID1, "MF", actor="T1")


@pytest.mark.postgres
def test_two_operators_issuing_at_once_leave_one_active_card(make_store, clock):
    eng = make_engine(make_store("postgres"), clock)
    eng.registry.add_person("NEW", "Zhou Min", "110000", "employee")
    outcomes: list[object] = []
    start = threading.Barrier(2)

    def issue(no: str, card_id: str) -> None:
        start.wait()
        try:
            outcomes.append(eng.cards.issue("NEW", no, card_id, **OP).card_no)
        except errors.SettlementError as e:
            outcomes.append(e.code)

    threads = [threading.Thread(target=issue, args=a) for a in [("N0000001", ID1), ("N0000002", ID2)]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(str, outcomes))[0] == "INVALID_STATE" and str(outcomes[0]) + str(outcomes[1]) in (
        "INVALID_STATEN0000001", "INVALID_STATEN0000002", "N0000001INVALID_STATE", "N0000002INVALID_STATE")
    assert len([c for c in eng.cards.cards_of("NEW") if c.status == "active"]) == 1
