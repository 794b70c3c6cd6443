"""Cards at the centre (一人一卡): the card registry, each card's status and history, and the blacklist
terminals keep.

A card is known by its number (卡号, EF05 item 07) and its identification code (卡识别码, EF05 item 01, hex),
with its holder, spec version, issuing region and dates. Its life:

    issue ──> active ──report_lost──> reported_lost ──unlock──> active
                │                         │
                ├──replace──> replaced <──┤        (replace: the person's new card becomes active)
                └──cancel───> cancelled <─┘

An active card past its expiry date reads as "expired" (and is refused as such) until it is replaced.
At most one card per person is active: the partial unique index `card_cards_one_active` holds it even
against concurrent units, and the commands refuse first with a clear error. Every change is one unit:
the card, the person's audit trail (event `card_*` with operator and reason: the card's history is the
holder's trail filtered to the card), the person's card of record (`reg_persons.card_no`), and the
blacklist entry under the next blacklist version commit together, or nothing does.

**The check every centre transaction applies** (`check_card`; `refusal` is the same rule as a pure function,
for a batched path that loads all its cards in one query with `load_cards`): a request that presents a card (number,
identification code, or both) for a person goes on only if that card is the person's active card;
otherwise it is refused with UNKNOWN_CARD (no such card, or number and identification code that do not
belong together), CARD_NOT_PERSONS, CARD_REPORTED_LOST, CARD_CANCELLED, CARD_REPLACED or CARD_EXPIRED,
before anything is posted. A request that presents no card is not checked here.

**The blacklist** is versioned: `card_blacklist_head` holds a random epoch (the list's identity) and the last
version; each change of a card's blacklist state writes its row in `card_blacklist` with the next version
(the head row is locked until commit, so versions commit in order and a reader that saw version v has seen
every change up to v). `blacklist(since)` returns the changes after `since`; an unlocked card stays as a
tombstone (status "active") so a terminal learns it left the list.

**Cards from before the registry**: a person enrolled with a card number (`reg_persons.card_no`) got a card
record with that number, active, identification code unknown (NULL): once, for the persons already there,
when the tables are created, and from then on by `adopt` when a person is added with a card number. A
presented identification code cannot be compared with an unknown one; an operator who issues the same card
number to the same person with its identification code completes the record (event `card_identified`).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Iterable, Sequence
from typing import Any

from settlement.errors import (
    CardCancelled,
    CardExpired,
    CardNotPersons,
    CardReplaced,
    CardReportedLost,
    IdempotencyConflict,
    InvalidRequest,
    InvalidState,
    NoCardOfRecord,
    SettlementError,
    UnknownCard,
)
from settlement.ledger import Clock, Store, Tx
from settlement.schemes import audit
from settlement.schemes.records import load_person
from settlement.wire import BLACKLISTED, CARD_ID_FORM, CARD_NO_FORM, AuditEntry, BlacklistDelta, Card

COLS = ("card_no, card_id, person_id, spec_version, region, issued_on, expires_on, status, replaced_by, changed_at,"
        " application_blocked")
APPLICATIONS = ("DF01", "DF02", "DF03", "DF04")
MAX_DELTA = 200_000
"""The most entries one blacklist answer carries (a terminal asks again from the version it got)."""


def schema(dialect: str) -> list[str]:
    return [
        """CREATE TABLE IF NOT EXISTS card_cards (
            card_no TEXT PRIMARY KEY,
            card_id TEXT UNIQUE,
            person_id TEXT NOT NULL REFERENCES reg_persons (person_id),
            spec_version TEXT,
            region TEXT,
            issued_on TEXT,
            expires_on TEXT,
            status TEXT NOT NULL CHECK (status IN ('active', 'reported_lost', 'cancelled', 'replaced')),
            replaced_by TEXT,
            changed_at TEXT NOT NULL,
            application_blocked TEXT,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS card_cards_person ON card_cards (person_id)",
        "CREATE UNIQUE INDEX IF NOT EXISTS card_cards_one_active ON card_cards (person_id) WHERE status = 'active'",
        """CREATE TABLE IF NOT EXISTS card_blacklist (
            card_no TEXT PRIMARY KEY,
            card_id TEXT,
            status TEXT NOT NULL,
            application TEXT NOT NULL DEFAULT '',
            version BIGINT NOT NULL,
            changed_at TEXT NOT NULL
        )""",
        "DROP INDEX IF EXISTS card_blacklist_version",  # the first layout's; the delta index below covers a delta
        "CREATE INDEX IF NOT EXISTS card_blacklist_delta ON card_blacklist (version, card_no, card_id, status,"
        " application)",
        """CREATE TABLE IF NOT EXISTS card_blacklist_head (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            epoch TEXT NOT NULL,
            version BIGINT NOT NULL
        )""",
    ]


def migrate(tx: Tx, at: str) -> None:
    """Once per database (when the blacklist head is created): a card record for each person's card number."""
    if tx.value("SELECT 1 FROM card_blacklist_head WHERE id = 1") is not None:
        return
    tx.execute("INSERT INTO card_blacklist_head (id, epoch, version) VALUES (1, ?, 0)", (secrets.token_hex(8),))
    tx.execute(
        "INSERT INTO card_cards (card_no, person_id, status, changed_at, created_at)"
        " SELECT p.card_no, p.person_id, 'active', ?, ? FROM reg_persons p WHERE p.card_no IS NOT NULL"
        " AND NOT EXISTS (SELECT 1 FROM card_cards c WHERE c.person_id = p.person_id) ON CONFLICT DO NOTHING",
        (at, at),
    )


# -- records and the check ---------------------------------------------------------------------------------
def _card(row: dict[str, Any] | Sequence[Any], today: dt.date) -> Card:
    d = dict(zip(COLS.split(", "), row, strict=True)) if not isinstance(row, dict) else row
    expires = dt.date.fromisoformat(d["expires_on"]) if d["expires_on"] else None
    status = "expired" if d["status"] == "active" and expires is not None and expires < today else d["status"]
    return Card(card_no=d["card_no"], card_id=d["card_id"], person_id=d["person_id"], spec_version=d["spec_version"],
                region=d["region"], issued_on=dt.date.fromisoformat(d["issued_on"]) if d["issued_on"] else None,
                expires_on=expires, status=status, replaced_by=d["replaced_by"], changed_at=d["changed_at"],
                application_blocked=d["application_blocked"])


def load_cards(tx: Tx, today: dt.date, *, card_nos: Iterable[str] = (), card_ids: Iterable[str] = ()) -> list[Card]:
    """The cards with any of these numbers or identification codes, in one query (a batch's cards)."""
    nos, ids = sorted(set(card_nos)), sorted({i.upper() for i in card_ids})
    where = []
    if nos:
        where.append(f"card_no IN ({','.join('?' * len(nos))})")
    if ids:
        where.append(f"card_id IN ({','.join('?' * len(ids))})")
    if not where:
        return []
    return [_card(r, today) for r in tx.rows(f"SELECT {COLS} FROM card_cards WHERE {' OR '.join(where)}", nos + ids)]


def refusal(cards: Iterable[Card], person_id: str, card_id: str | None, card_no: str | None) -> SettlementError | None:
    """Why a request for `person_id` presenting (`card_id`, `card_no`) must be refused, given the cards loaded
    for it (`load_cards`: a batch may pass all of its cards); None when it may go on (or presents no card)."""
    if card_id is None and card_no is None:
        return None
    shown = card_no or card_id
    cid = card_id.upper() if card_id is not None else None
    by_no = next((c for c in cards if c.card_no == card_no), None) if card_no is not None else None
    by_id = next((c for c in cards if c.card_id == cid), None) if cid is not None else None
    card = by_no or by_id
    if card is None:
        return UnknownCard(f"card {shown} is not registered at the centre", card=shown)
    if by_no is not None and by_id is not None and by_no is not by_id:
        return UnknownCard(f"the identification code shown is card {by_id.card_no}'s, not card {card_no}'s", card=shown)
    if cid is not None and card.card_id is not None and card.card_id != cid:
        return UnknownCard(f"card {card.card_no} of record has another identification code than the card shown "
                           "(a copy, or a card number misread)", card=shown)
    if card_no is not None and card.card_no != card_no:
        return UnknownCard(f"the identification code shown is card {card.card_no}'s, not card {card_no}'s",
                           card=shown)
    details = {"card_no": card.card_no, "person_id": person_id}
    if card.person_id != person_id:
        return CardNotPersons(f"card {card.card_no} is not a card of {person_id}", **details)
    if card.status == "reported_lost":
        return CardReportedLost(f"card {card.card_no} was reported lost on {card.changed_at[:10]}: it cannot be "
                                "used until it is unlocked at a service hall", since=card.changed_at, **details)
    if card.status == "cancelled":
        return CardCancelled(f"card {card.card_no} was cancelled on {card.changed_at[:10]}", since=card.changed_at,
                             **details)
    if card.status == "replaced":
        return CardReplaced(f"card {card.card_no} was replaced by card {card.replaced_by}: use the new card",
                            replaced_by=card.replaced_by, since=card.changed_at, **details)
    if card.status == "expired":
        return CardExpired(f"card {card.card_no} expired on {card.expires_on}", expiry_date=str(card.expires_on),
                           **details)
    return None


def check_card(tx: Tx, person_id: str, today: dt.date, *, card_id: str | None = None,
               card_no: str | None = None) -> Card | None:
    """The card presented for `person_id`, if it is the person's active card; raise why not (see the module
    docstring). None when no card is presented."""
    if card_id is None and card_no is None:
        return None
    cards = load_cards(tx, today, card_nos=[card_no] if card_no else [], card_ids=[card_id] if card_id else [])
    error = refusal(cards, person_id, card_id, card_no)
    if error is not None:
        raise error
    return next(c for c in cards if c.card_no == card_no or (card_no is None and c.card_id == card_id.upper()))


def _text(value: object, what: str, limit: int = 200) -> str:
    if type(value) is not str or not value.strip() or len(value) > limit or not value.isprintable():
        raise InvalidRequest(f"{what} must be a non-empty line of at most {limit} characters", field=what)
    return value.strip()


def card_no_of(value: object) -> str:
    if type(value) is not str or not CARD_NO_FORM.fullmatch(value):
        raise InvalidRequest(f"a card number is 1-20 letters and digits, got {value!r}", field="card_no")
    return value


def card_id_of(value: object) -> str:
    if type(value) is not str or not CARD_ID_FORM.fullmatch(value.upper()):
        raise InvalidRequest(f"a card identification code is 32 hex digits (16 bytes), got {value!r}",
                             field="card_id")
    return value.upper()


def _free_card_id(tx: Tx, card_id: str) -> None:
    other = tx.value("SELECT card_no FROM card_cards WHERE card_id = ?", (card_id,))
    if other is not None:
        raise IdempotencyConflict(f"identification code {card_id} belongs to card {other}", card_id=card_id)


class Cards:
    """The card registry: issue, report lost, unlock, replace, cancel; queries; the blacklist. It is also the
    `CardCheck` the other schemes are given (settlement/schemes/hooks.py)."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store, self.clock = store, clock
        store.run(lambda tx: migrate(tx, clock.stamp()))

    # -- the hooks -----------------------------------------------------------------------------------------
    def check(self, tx: Tx, person_id: str, *, card_id: str | None = None, card_no: str | None = None) -> None:
        """In a transaction's unit: refuse unless the card presented (if any) is the person's active card."""
        check_card(tx, person_id, self.clock.today(), card_id=card_id, card_no=card_no)

    def refusals(self, tx: Tx, asks: Sequence[tuple[str, str | None, str | None]]) -> list[SettlementError | None]:
        """In a batch's unit: for each (person_id, card_id, card_no) presented, why it must be refused (None: it
        may go on), the rule of `check`; the cards of the whole batch are loaded with one query."""
        cards = load_cards(tx, self.clock.today(), card_nos=[n for _, _, n in asks if n],
                           card_ids=[i for _, i, _ in asks if i])
        by_no = {c.card_no: c for c in cards}
        by_id = {c.card_id: c for c in cards if c.card_id is not None}
        return [refusal([c for c in (by_no.get(n or ""), by_id.get((i or "").upper())) if c is not None], p, i, n)
                for p, i, n in asks]

    def adopt(self, tx: Tx, person_id: str, card_no: str) -> None:
        """In add_person's unit: the card number given with a new person becomes its card (identifier unknown),
        unless the person has a card already or the number is another person's."""
        at = self.clock.stamp()
        tx.execute("INSERT INTO card_cards (card_no, person_id, status, changed_at, created_at)"
                   " SELECT ?, ?, 'active', ?, ? WHERE NOT EXISTS (SELECT 1 FROM card_cards WHERE person_id = ?)"
                   " ON CONFLICT DO NOTHING", (card_no, person_id, at, at, person_id))

    # -- queries -------------------------------------------------------------------------------------------
    def _load(self, tx: Tx, card_no: str, *, lock: bool = False) -> Card:
        row = tx.one(f"SELECT {COLS} FROM card_cards WHERE card_no = ?{tx.for_update if lock else ''}", (card_no,))
        if row is None:
            raise UnknownCard(f"no card {card_no!r} at the centre", card=card_no)
        return _card(row, self.clock.today())

    def card(self, card_no: str) -> Card:
        return self.store.read(lambda tx: self._load(tx, card_no))

    def cards_of(self, person_id: str) -> list[Card]:
        """The person's cards: the active one first, then newest first."""
        def q(tx: Tx) -> list[Card]:
            load_person(tx, person_id)
            rows = tx.rows(f"SELECT {COLS} FROM card_cards WHERE person_id = ? ORDER BY CASE WHEN status = 'active'"
                           " THEN 0 ELSE 1 END, created_at DESC, card_no", (person_id,))
            return [_card(r, self.clock.today()) for r in rows]

        return self.store.read(q)

    def active_card(self, person_id: str) -> Card | None:
        """The person's active card (also when it has expired: status "expired"), or None."""
        def q(tx: Tx) -> Card | None:
            load_person(tx, person_id)
            row = tx.rows(f"SELECT {COLS} FROM card_cards WHERE person_id = ? AND status = 'active'", (person_id,))
            return _card(row[0], self.clock.today()) if row else None

        return self.store.read(q)

    def is_active_card(self, person_id: str, *, card_id: str | None = None, card_no: str | None = None) -> bool:
        """Whether the card with this identification code and/or number is the person's active, unexpired card
        (the proof-of-card question). False when neither is given."""
        if card_id is None and card_no is None:
            return False
        today = self.clock.today()

        def q(tx: Tx) -> bool:
            cards = load_cards(tx, today, card_nos=[card_no] if card_no else [], card_ids=[card_id] if card_id else [])
            return refusal(cards, person_id, card_id, card_no) is None

        return self.store.read(q)

    def proof(self, person_id: str, *, card_id: str | None = None, card_no: str | None = None) -> Card:
        """The card presented, if it is the person's active card (proof of card for reads of a person's data,
        e.g. a kiosk's); raise the typed refusal otherwise. InvalidRequest when no card is presented."""
        if card_id is None and card_no is None:
            raise InvalidRequest("present the card: card_no and/or card_id", field="card_no")
        card = self.store.read(lambda tx: check_card(tx, person_id, self.clock.today(), card_id=card_id,
                                                      card_no=card_no))
        assert card is not None
        return card

    def history(self, card_no: str) -> list[AuditEntry]:
        """What happened to the card: its holder's audit trail entries about it, oldest first."""
        def q(tx: Tx) -> list[AuditEntry]:
            card = self._load(tx, card_no)
            return [e for e in audit.entries(tx, card.person_id)
                    if e.event.startswith("card_") and e.detail.get("card_no") == card_no]

        return self.store.read(q)

    # -- commands ------------------------------------------------------------------------------------------
    def issue(self, person_id: str, card_no: str, card_id: str, *, actor: str, reason: str,
              spec_version: str | None = None, region: str | None = None, issued_on: dt.date | None = None,
              expires_on: dt.date | None = None) -> Card:
        """Enrol a personalised card as the person's active card. Refused while the person has an active or
        reported-lost card (replace it). Idempotent for the same card; the same number of a card taken over
        without its identification code completes that record."""
        card_no, card_id = card_no_of(card_no), card_id_of(card_id)
        actor, reason = _text(actor, "actor", 64), _text(reason, "reason")
        fields = self._fields(card_id, spec_version, region, issued_on, expires_on)

        def unit(tx: Tx) -> Card:
            load_person(tx, person_id, lock=True)
            existing = tx.one(f"SELECT {COLS} FROM card_cards WHERE card_no = ?{tx.for_update}", (card_no,))
            if existing is not None:
                return self._reissue(tx, _card(existing, self.clock.today()), person_id, fields, actor, reason)
            self._refuse_second_card(tx, person_id)
            self._insert(tx, person_id, card_no, fields, actor, reason, "card_issued")
            return self._load(tx, card_no)

        return self.store.run(unit)

    def replace(self, person_id: str, card_no: str, card_id: str, *, actor: str, reason: str,
                spec_version: str | None = None, region: str | None = None, issued_on: dt.date | None = None,
                expires_on: dt.date | None = None) -> Card:
        """A new card for the person (补换卡): it becomes active; the old one (active, expired or reported lost)
        becomes "replaced" and goes on the blacklist. NoCardOfRecord when the person has no such card. A
        repeat returns the new card."""
        card_no, card_id = card_no_of(card_no), card_id_of(card_id)
        actor, reason = _text(actor, "actor", 64), _text(reason, "reason")
        fields = self._fields(card_id, spec_version, region, issued_on, expires_on)

        def unit(tx: Tx) -> Card:
            load_person(tx, person_id, lock=True)
            existing = tx.one(f"SELECT {COLS} FROM card_cards WHERE card_no = ?", (card_no,))
            if existing is not None:
                new = _card(existing, self.clock.today())
                old = tx.value("SELECT card_no FROM card_cards WHERE replaced_by = ?", (card_no,))
                if new.person_id == person_id and old is not None and self._same(new, fields):
                    return new  # a repeat
                raise IdempotencyConflict(f"card {card_no} exists already", card=card_no)
            rows = tx.rows(f"SELECT {COLS} FROM card_cards WHERE person_id = ? AND status IN ('active', "
                           f"'reported_lost') ORDER BY status, created_at DESC{tx.for_update}", (person_id,))
            if not rows:
                raise NoCardOfRecord(f"{person_id} has no active or reported-lost card to replace: issue a card "
                                     "instead", person_id=person_id)
            for row in rows:  # normally one; an unlocked card beside a lost one would be two
                old_card = _card(row, self.clock.today())
                self._set(tx, old_card, "replaced", "card_replaced", actor, reason, replaced_by=card_no)
            self._insert(tx, person_id, card_no, fields, actor, reason, "card_issued",
                         replaces=[r[0] for r in rows])
            return self._load(tx, card_no)

        return self.store.run(unit)

    def report_lost(self, card_no: str, *, actor: str, reason: str) -> Card:
        """挂失: the card is refused everywhere (blacklisted) until unlocked. A repeat changes nothing."""
        return self._change(card_no, "reported_lost", "card_reported_lost", actor, reason,
                            repeat_of=("reported_lost",), allowed=("active", "expired"))

    def unlock(self, card_no: str, *, actor: str, reason: str) -> Card:
        """解挂: a card reported lost is active again (and leaves the blacklist), unless the person has another
        active card meanwhile."""
        return self._change(card_no, "active", "card_unlocked", actor, reason, allowed=("reported_lost",))

    def cancel(self, card_no: str, *, actor: str, reason: str) -> Card:
        """注销: the card is refused for good (blacklisted). A repeat changes nothing."""
        return self._change(card_no, "cancelled", "card_cancelled", actor, reason, repeat_of=("cancelled",),
                            allowed=("active", "expired", "reported_lost"))

    def application_blocked(self, card_no: str, card_id: str | None, application: str | None, *,
                            actor: str) -> Card:
        """A terminal reports that it blocked `application` on the card (APPLICATION BLOCK), or, with None,
        that it unblocked it again. Recorded, and carried by the blacklist, so the counter that next reads
        the card once it is active again unblocks the application."""
        if application is not None and application not in APPLICATIONS:
            raise InvalidRequest(f"application must be one of {', '.join(APPLICATIONS)}", field="application")
        actor = _text(actor, "actor", 64)

        def unit(tx: Tx) -> Card:
            card = self._load(tx, card_no, lock=True)
            if card_id is not None and card.card_id is not None and card_id.upper() != card.card_id:
                raise UnknownCard(f"card {card_no} of record has another identification code", card=card_no)
            if card.application_blocked == application:
                return card
            at = self.clock.stamp()
            tx.execute("UPDATE card_cards SET application_blocked = ? WHERE card_no = ?", (application, card_no))
            event = "card_application_blocked" if application else "card_application_unblocked"
            audit.record(tx, at=at, person_id=card.person_id, event=event, actor=actor, card_no=card_no,
                         application=application or card.application_blocked,
                         reason="blocked at a counter: blacklisted card" if application else "unblocked at a counter")
            self._list(tx, self._load(tx, card_no))
            return self._load(tx, card_no)

        return self.store.run(unit)

    # -- the blacklist -------------------------------------------------------------------------------------
    def blacklist(self, since: int = 0, limit: int = MAX_DELTA) -> BlacklistDelta:
        """The changes to the blacklist after version `since` (see the module docstring); at most `limit`."""
        def q(tx: Tx) -> BlacklistDelta:
            page, args, head = self._page(tx, since, limit)
            rows = tx.rows(f"SELECT card_no, COALESCE(card_id, ''), status, application FROM card_blacklist {page}",
                           args)
            return BlacklistDelta.model_construct(**head, entries=rows)

        return self.store.read(q)

    def blacklist_json(self, since: int = 0, limit: int = MAX_DELTA) -> str:
        """`blacklist()` as the JSON text of a BlacklistDelta, its entries written by the store itself (100,000
        entries take a few tens of ms this way, several times less than through Python objects)."""
        def q(tx: Tx) -> str:
            page, args, head = self._page(tx, since, limit)
            columns = "card_no, COALESCE(card_id, '') AS card_id, status, application, version"
            agg = ("json_group_array(json_array(card_no, card_id, status, application))" if tx.dialect == "sqlite"
                   else "COALESCE(json_agg(json_build_array(card_no, card_id, status, application) ORDER BY version),"
                        " '[]')::text")  # SQLite 3.40 keeps the page's order; PostgreSQL is told it
            entries = tx.value(f"SELECT {agg} FROM (SELECT {columns} FROM card_blacklist {page}) page", args)
            return json.dumps(head, separators=(",", ":"))[:-1] + f',"entries":{entries}}}'

        return self.store.read(q)

    @staticmethod
    def _page(tx: Tx, since: int, limit: int) -> tuple[str, tuple[int, int], dict[str, Any]]:
        """The page of changes after `since`: its SQL (after FROM), arguments, and the delta's head fields."""
        if type(since) is not int or since < 0:
            raise InvalidRequest("since must be a version number >= 0", field="since")
        if type(limit) is not int or not 1 <= limit <= MAX_DELTA:
            raise InvalidRequest(f"limit must be 1 to {MAX_DELTA}", field="limit")
        epoch, head = tx.rows("SELECT epoch, version FROM card_blacklist_head WHERE id = 1")[0]
        reset = since > head
        start = 0 if reset else since  # from 0, a card that left the list is no news
        where = "WHERE version > ?" + ("" if start else " AND (status <> 'active' OR application <> '')")
        more = tx.value(f"SELECT COUNT(*) FROM (SELECT 1 FROM card_blacklist {where} ORDER BY version LIMIT ?) n",
                        (start, limit + 1)) > limit
        version = tx.value(f"SELECT MAX(version) FROM (SELECT version FROM card_blacklist {where} ORDER BY version"
                           " LIMIT ?) v", (start, limit)) if more else head
        return (f"{where} ORDER BY version LIMIT ?", (start, limit),
                {"epoch": epoch, "since": since, "version": int(version), "more": more, "reset": reset})

    def _list(self, tx: Tx, card: Card) -> None:
        """Write the card's blacklist state under the next version (a card never listed and still active with
        nothing to unblock needs no entry)."""
        listed = card.status in BLACKLISTED or card.application_blocked is not None
        if not listed and tx.value("SELECT 1 FROM card_blacklist WHERE card_no = ?", (card.card_no,)) is None:
            return
        tx.execute("UPDATE card_blacklist_head SET version = version + 1 WHERE id = 1")
        version = tx.value("SELECT version FROM card_blacklist_head WHERE id = 1")
        status = card.status if card.status in BLACKLISTED else "active"
        tx.execute("INSERT INTO card_blacklist (card_no, card_id, status, application, version, changed_at)"
                   " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (card_no) DO UPDATE SET card_id = excluded.card_id,"
                   " status = excluded.status, application = excluded.application, version = excluded.version,"
                   " changed_at = excluded.changed_at",
                   (card.card_no, card.card_id, status, card.application_blocked or "", version, self.clock.stamp()))

    # -- helpers -------------------------------------------------------------------------------------------
    def _fields(self, card_id: str, spec_version: str | None, region: str | None, issued_on: dt.date | None,
                expires_on: dt.date | None) -> dict[str, Any]:
        region = region if region is not None else card_id[:6]
        if not (len(region) == 6 and region.isdigit()):
            raise InvalidRequest(f"an issuing region is a 6-digit region code, got {region!r}", field="region")
        if spec_version is not None and (type(spec_version) is not str or not 1 <= len(spec_version) <= 8):
            raise InvalidRequest("spec_version is at most 8 characters, e.g. 3.00", field="spec_version")
        for name, day in (("issued_on", issued_on), ("expires_on", expires_on)):
            if day is not None and not isinstance(day, dt.date):
                raise InvalidRequest(f"{name} must be a date", field=name)
        if issued_on is not None and expires_on is not None and expires_on <= issued_on:
            raise InvalidRequest("a card expires after it is issued", field="expires_on")
        return {"card_id": card_id, "spec_version": spec_version, "region": region,
                "issued_on": issued_on.isoformat() if issued_on else None,
                "expires_on": expires_on.isoformat() if expires_on else None}

    @staticmethod
    def _same(card: Card, fields: dict[str, Any]) -> bool:
        got = {"card_id": card.card_id, "spec_version": card.spec_version, "region": card.region,
               "issued_on": card.issued_on.isoformat() if card.issued_on else None,
               "expires_on": card.expires_on.isoformat() if card.expires_on else None}
        return got == fields

    @staticmethod
    def _refuse_second_card(tx: Tx, person_id: str) -> None:
        row = tx.one("SELECT card_no, status FROM card_cards WHERE person_id = ? AND status IN ('active',"
                     " 'reported_lost')", (person_id,))
        if row is not None:
            raise InvalidState(f"{person_id} already has card {row['card_no']} ({row['status'].replace('_', ' ')}):"
                               " replace it instead", person_id=person_id, card_no=row["card_no"])

    def _insert(self, tx: Tx, person_id: str, card_no: str, fields: dict[str, Any], actor: str, reason: str,
                event: str, **detail: Any) -> None:
        _free_card_id(tx, fields["card_id"])
        at = self.clock.stamp()
        tx.execute(f"INSERT INTO card_cards ({COLS}, created_at)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?, 'active', NULL, ?, NULL, ?)",
                   (card_no, fields["card_id"], person_id, fields["spec_version"], fields["region"],
                    fields["issued_on"], fields["expires_on"], at, at))
        tx.execute("UPDATE reg_persons SET card_no = ? WHERE person_id = ?", (card_no, person_id))
        audit.record(tx, at=at, person_id=person_id, event=event, actor=actor, card_no=card_no, reason=reason,
                     card_id=fields["card_id"], expires_on=fields["expires_on"], **detail)

    def _reissue(self, tx: Tx, card: Card, person_id: str, fields: dict[str, Any], actor: str, reason: str) -> Card:
        if card.person_id != person_id:
            raise IdempotencyConflict(f"card {card.card_no} is another person's card", card=card.card_no)
        if card.card_id is None:  # a card taken over without its identification code: complete it
            _free_card_id(tx, fields["card_id"])
            tx.execute("UPDATE card_cards SET card_id = ?, spec_version = ?, region = ?, issued_on = ?, expires_on = ?"
                       " WHERE card_no = ?", (fields["card_id"], fields["spec_version"], fields["region"],
                                              fields["issued_on"], fields["expires_on"], card.card_no))
            audit.record(tx, at=self.clock.stamp(), person_id=person_id, event="card_identified", actor=actor,
                         card_no=card.card_no, reason=reason, card_id=fields["card_id"])
            updated = self._load(tx, card.card_no)
            if tx.value("SELECT 1 FROM card_blacklist WHERE card_no = ?", (card.card_no,)) is not None:
                self._list(tx, updated)
            return updated
        if not self._same(card, fields):
            raise IdempotencyConflict(f"card {card.card_no} was issued with other details", card=card.card_no)
        return card

    def _change(self, card_no: str, to: str, event: str, actor: str, reason: str, *,
                allowed: tuple[str, ...], repeat_of: tuple[str, ...] = ()) -> Card:
        card_no = card_no_of(card_no)
        actor, reason = _text(actor, "actor", 64), _text(reason, "reason")

        def unit(tx: Tx) -> Card:
            card = self._load(tx, card_no, lock=True)
            load_person(tx, card.person_id, lock=True)  # one card change of a person at a time
            if card.status in repeat_of:
                return card
            if card.status not in allowed:
                raise self._why_not(card, to)
            if to == "active":
                other = tx.value("SELECT card_no FROM card_cards WHERE person_id = ? AND status = 'active'",
                                 (card.person_id,))
                if other is not None:
                    raise InvalidState(f"{card.person_id} has another active card, {other}: card {card_no} cannot "
                                       "be active too", card_no=card_no, active=other)
            self._set(tx, card, to, event, actor, reason)
            return self._load(tx, card_no)

        return self.store.run(unit)

    @staticmethod
    def _why_not(card: Card, to: str) -> SettlementError:
        wanted = {"active": "unlocked", "reported_lost": "reported lost", "cancelled": "cancelled"}[to]
        details = {"card_no": card.card_no, "status": card.status}
        if card.status == "cancelled":
            return CardCancelled(f"card {card.card_no} is cancelled: it cannot be {wanted}", **details)
        if card.status == "replaced":
            return CardReplaced(f"card {card.card_no} was replaced by {card.replaced_by}: it cannot be {wanted}",
                                replaced_by=card.replaced_by, **details)
        return InvalidState(f"card {card.card_no} is {card.status.replace('_', ' ')}: it cannot be {wanted}",
                            **details)

    def _set(self, tx: Tx, card: Card, to: str, event: str, actor: str, reason: str, *,
             replaced_by: str | None = None) -> None:
        at = self.clock.stamp()
        tx.execute("UPDATE card_cards SET status = ?, replaced_by = COALESCE(?, replaced_by), changed_at = ?"
                   " WHERE card_no = ?", (to, replaced_by, at, card.card_no))
        extra = {"replaced_by": replaced_by} if replaced_by else {}
        audit.record(tx, at=at, person_id=card.person_id, event=event, actor=actor, card_no=card.card_no,
                     reason=reason, status_before=card.status, status_after=to, **extra)
        self._list(tx, self._load(tx, card.card_no))
