"""Pensions: monthly entitlements, collection at a counter (also in another region), suspension and
resumption.

Benefit status codes (as on the card): 1 normal, 2 suspended, 3 terminated, 4 awaiting review.

* Issuance: `issue_month(region, "YYYY-MM")` posts each normal pensioner's monthly amount from the
  region's pension fund to the pensioner account, one posting per person and month under the key
  `pension:{person}:{month}`: re-running a batch (after a crash, or for a past month) issues only what
  is missing. A pensioner whose certification has lapsed is suspended (code 2) instead; after
  re-certification, re-running the missed months pays them.
* Collection needs status 1 and a certification no older than 12 months (else the person is suspended
  and NOT_CERTIFIED is returned); it moves money from the pensioner account to the counter's cash
  account, through the inter-regional accounts when the counter is in another region.
* A death report suspends (code 2, reason death_reported); `terminate` ends the benefit (code 3).
  A passed certification resumes a lapse suspension; only an assisted one withdraws a death report.
* A void (冲正) of a collection whose answer the counter never got (no answer, card pulled in flight,
  terminal restarted) reverses it: the money goes back to the pensioner account. A void that arrives
  before its collection leaves a tombstone (`pen_voids`), and the collection is then refused with
  ALREADY_REVERSED when it lands, so a counter that voided never finds the pension paid behind its back.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from settlement.errors import (
    AlreadyReversed,
    BenefitSuspended,
    DeathReported,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidRequest,
    InvalidState,
    NotCertified,
    SettlementError,
    UnknownAccount,
    UnknownInstitution,
    UnknownPerson,
)
from settlement.ledger import (
    Clock,
    Ledger,
    Store,
    Transfer,
    Tx,
    check_key,
    fen,
    issued_by,
    marks,
    request_hash,
    write_rows,
)
from settlement.schemes import answers, audit, chart
from settlement.schemes.hooks import CardCheck, CertificationCheck, FraudChecks
from settlement.schemes.policy import PolicyBook
from settlement.schemes.records import load_institutions, load_person, load_persons
from settlement.wire import Collection, CollectionVoid, IssueBatch, Pensioner, PensionPayment, Person, yuan

STATUS = {1: "normal", 2: "suspended", 3: "terminated", 4: "awaiting review"}
LAPSED, DEATH = "certification_lapsed", "death_reported"
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def schema(dialect: str) -> list[str]:
    return [
        """CREATE TABLE IF NOT EXISTS pen_pensioners (
            person_id TEXT PRIMARY KEY,
            region TEXT NOT NULL,
            monthly_amount BIGINT NOT NULL CHECK (monthly_amount > 0),
            status INTEGER NOT NULL CHECK (status IN (1, 2, 3, 4)),
            reason TEXT,
            since TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS pen_issues (
            person_id TEXT NOT NULL,
            month TEXT NOT NULL,
            key TEXT NOT NULL UNIQUE,
            amount BIGINT NOT NULL,
            issued_at TEXT NOT NULL,
            PRIMARY KEY (person_id, month)
        )""",
        """CREATE TABLE IF NOT EXISTS pen_collections (
            key TEXT PRIMARY KEY,
            person_id TEXT NOT NULL,
            amount BIGINT NOT NULL,
            institution TEXT NOT NULL,
            region TEXT NOT NULL,
            collected_at TEXT NOT NULL,
            collected_on TEXT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS pen_voids (
            collection_key TEXT PRIMARY KEY,
            void_key TEXT NOT NULL UNIQUE,
            status TEXT NOT NULL CHECK (status IN ('voided', 'void_before_arrival')),
            amount BIGINT NOT NULL CHECK (amount >= 0),
            voided_at TEXT NOT NULL
        )""",
    ]


def _one_at_a_time(tx: Tx, collection_keys: list[str]) -> None:
    """Serialise a collection and a void of it on a server store (a void may race with its late collection;
    on SQLite the single writer already does). Keys are locked in the order given: sort them."""
    if tx.dialect == "postgres":
        tx.rows("SELECT pg_advisory_xact_lock(hashtextextended(k, 7)) FROM unnest(?::text[]) AS k",
                (collection_keys,))


@dataclass(slots=True)
class _Collect:
    key: str
    person_id: str
    amount: int
    institution: str
    actor: str
    rhash: str
    card_id: str | None
    card_no: str | None


def _month(month: str) -> str:
    if type(month) is not str or not _MONTH.match(month):
        raise InvalidRequest(f"month must look like 2024-05, got {month!r}", field="month")
    return month


def _pensioner(row: dict[str, Any]) -> Pensioner:
    return Pensioner(status_text=STATUS[row["status"]], **row)


class Pensions:
    """Pensioners, monthly issuance, collection and its void; also the `PensionHooks` of identity and the
    registry."""

    def __init__(self, store: Store, ledger: Ledger, policies: PolicyBook, clock: Clock, *,
                 certified: CertificationCheck, fraud: FraudChecks, cards: CardCheck) -> None:
        self.store, self.ledger, self.policies, self.clock = store, ledger, policies, clock
        self.certified, self.fraud, self.cards = certified, fraud, cards

    # -- state -------------------------------------------------------------------------------------------
    def _load(self, tx: Tx, person_id: str, *, lock: bool = False) -> dict[str, Any] | None:
        return tx.one("SELECT person_id, region, monthly_amount, status, reason, since FROM pen_pensioners"
                      f" WHERE person_id = ?{tx.for_update if lock else ''}", (person_id,))

    def _set_status(self, tx: Tx, person_id: str, status: int, reason: str | None, *, actor: str,
                    **detail: Any) -> None:
        tx.execute("UPDATE pen_pensioners SET status = ?, reason = ?, updated_at = ? WHERE person_id = ?",
                   (status, reason, self.clock.stamp(), person_id))
        audit.record(tx, at=self.clock.stamp(), person_id=person_id,
                     event=f"pension_{STATUS[status].replace(' ', '_')}", actor=actor, status=status, reason=reason,
                     **detail)

    def status_code(self, tx: Tx, person_id: str) -> int | None:
        row = self._load(tx, person_id)
        return None if row is None else int(row["status"])

    def enrol(self, person_id: str, monthly_amount: int, since: str) -> Pensioner:
        """Make a person a pensioner of their region (idempotent for the same amount and month)."""
        fen(monthly_amount, allow_zero=False, field="monthly_amount")
        _month(since)

        def unit(tx: Tx) -> Pensioner:
            person = load_person(tx, person_id, lock=True)
            tx.execute("INSERT INTO pen_pensioners (person_id, region, monthly_amount, status, since, updated_at)"
                       " VALUES (?, ?, ?, 1, ?, ?) ON CONFLICT (person_id) DO NOTHING",
                       (person_id, person.region, monthly_amount, since, self.clock.stamp()))
            row = self._load(tx, person_id)
            assert row is not None
            if (row["monthly_amount"], row["since"]) != (monthly_amount, since):
                raise IdempotencyConflict(f"{person_id} is already a pensioner with other terms", person_id=person_id)
            return _pensioner(row)

        return self.store.run(unit)

    def pensioner(self, person_id: str) -> Pensioner:
        def q(tx: Tx) -> Pensioner:
            load_person(tx, person_id)
            row = self._load(tx, person_id)
            if row is None:
                raise InvalidState(f"{person_id} is not a pensioner", person_id=person_id)
            return _pensioner(row)

        return self.store.read(q)

    def payments(self, person_id: str, limit: int = 10) -> list[PensionPayment]:
        """The pensioner account's latest movements: months issued and collections not voided, newest first."""
        def q(tx: Tx) -> list[PensionPayment]:
            load_person(tx, person_id)
            issued = [PensionPayment(kind="issued", key=k, at=at, amount=int(a), month=m) for k, at, a, m in tx.rows(
                "SELECT key, issued_at, amount, month FROM pen_issues WHERE person_id = ? ORDER BY issued_at DESC"
                " LIMIT ?", (person_id, limit))]
            collected = [PensionPayment(kind="collected", key=k, at=at, amount=int(a), institution=i)
                         for k, at, a, i in tx.rows(
                             "SELECT c.key, c.collected_at, c.amount, c.institution FROM pen_collections c WHERE"
                             " c.person_id = ? AND NOT EXISTS (SELECT 1 FROM pen_voids v WHERE v.collection_key ="
                             " c.key AND v.status = 'voided') ORDER BY c.collected_at DESC LIMIT ?",
                             (person_id, limit))]
            return sorted(issued + collected, key=lambda p: (p.at, p.key), reverse=True)[:limit]

        return self.store.read(q)

    def terminate(self, person_id: str, *, actor: str, reason: str) -> Pensioner:
        def unit(tx: Tx) -> Pensioner:
            if self._load(tx, person_id, lock=True) is None:
                raise InvalidState(f"{person_id} is not a pensioner", person_id=person_id)
            self._set_status(tx, person_id, 3, reason, actor=actor)
            row = self._load(tx, person_id)
            assert row is not None
            return _pensioner(row)

        return self.store.run(unit)

    def on_death(self, tx: Tx, person_id: str, *, actor: str) -> None:
        """In the death report's unit: suspend a normal or under-review pension."""
        row = self._load(tx, person_id, lock=True)
        if row is not None and row["status"] in (1, 4):
            self._set_status(tx, person_id, 2, DEATH, actor=actor)

    def after_certification(self, tx: Tx, person: Person, method: str, *, actor: str, key: str) -> int | None:
        """In a passed certification's unit: resume a lapse suspension; an assisted certification also
        withdraws a death report. Returns the status code after (None: not a pensioner)."""
        if person.death_date is not None and method == "assisted":
            tx.execute("UPDATE reg_persons SET death_date = NULL, death_reported_at = NULL WHERE person_id = ?",
                       (person.person_id,))
            audit.record(tx, at=self.clock.stamp(), person_id=person.person_id, event="death_report_withdrawn",
                         actor=actor, key=key, death_date=person.death_date.isoformat())
        row = self._load(tx, person.person_id, lock=True)
        if row is None:
            return None
        alive = person.death_date is None or method == "assisted"
        if row["status"] == 2 and alive and row["reason"] in (LAPSED, DEATH):
            self._set_status(tx, person.person_id, 1, None, actor=actor, key=key, was=row["reason"])
            return 1
        return int(row["status"])

    # -- issuance ------------------------------------------------------------------------------------------
    def issue_month(self, region: str, month: str, *, actor: str = "batch") -> IssueBatch:
        """Issue `month`'s entitlements to the region's pensioners; idempotent per person and month."""
        _month(month)
        self.policies.get(region)  # UnknownRegion
        batch = IssueBatch(region=region, month=month)
        pids = [p for (p,) in self.store.read(lambda tx: tx.rows(
            "SELECT person_id FROM pen_pensioners WHERE region = ? ORDER BY person_id", (region,)))]
        for pid in pids:
            outcome, amount = self.store.run(lambda tx, pid=pid: self._issue_one(tx, pid, month, actor))
            getattr(batch, outcome).append(pid)
            batch.amount_issued += amount
        return batch

    def _issue_one(self, tx: Tx, person_id: str, month: str, actor: str) -> tuple[str, int]:
        row = self._load(tx, person_id, lock=True)
        assert row is not None
        key = f"pension:{person_id}:{month}"
        if tx.value("SELECT 1 FROM pen_issues WHERE person_id = ? AND month = ?", (person_id, month)):
            return "already_issued", 0
        if row["status"] != 1 or month < row["since"]:
            return "skipped", 0
        if not self.certified.is_certified(tx, person_id):
            self._set_status(tx, person_id, 2, LAPSED, actor=actor, month=month)
            return "suspended", 0
        amount = int(row["monthly_amount"])

        def record(tx: Tx, _posting: object) -> None:
            tx.execute("INSERT INTO pen_issues (person_id, month, key, amount, issued_at) VALUES (?, ?, ?, ?, ?)",
                       (person_id, month, key, amount, self.clock.stamp()))

        posting = self.ledger.post(
            key, "pension.issue",
            [Transfer(chart.pension_fund(row["region"]), chart.pensioner_account(person_id), amount, month)],
            payload={"person_id": person_id, "month": month}, request_hash=f"pension.issue:{person_id}:{month}",
            extra=record,
        )
        return ("already_issued", 0) if posting.replayed else ("issued", amount)

    # -- collection ----------------------------------------------------------------------------------------
    def collect(self, key: str, person_id: str, amount: int, institution: str, *, actor: str = "",
                card_id: str | None = None, card_no: str | None = None) -> Collection:
        """Pay `amount` fen of the pension out at `institution`'s counter (idempotent on `key`); the card
        presented must be the person's active card."""
        return self.store.run_batched(*self.collect_job(  # type: ignore[no-any-return]
            key, person_id, amount, institution, actor=actor, card_id=card_id, card_no=card_no))

    def collect_job(self, key: str, person_id: str, amount: int, institution: str, *, actor: str = "",
                    card_id: str | None = None, card_no: str | None = None
                    ) -> tuple[Callable[[Tx, list[Any]], list[Any]], _Collect]:
        """`collect` as a job for the store: `store.run_batched(*job)`, or `await store.submit(*job)` in an
        event loop. Concurrent collections are decided together, set-based (as medical settlements are)."""
        fen(amount, allow_zero=False, field="amount")
        return self._collect_many, _Collect(key, person_id, amount, institution, actor,
                                            request_hash("pension.collect", [person_id, amount, institution]),
                                            card_id, card_no)

    def _collect_many(self, tx: Tx, items: list[_Collect]) -> list[Collection | Exception]:
        results, todo = answers.repeats(self.ledger, tx, items, Collection, "pension.collect")
        if not todo:
            return results
        its = [items[i] for i in todo]
        keys = sorted(it.key for it in its)
        _one_at_a_time(tx, keys)
        voided = dict(tx.rows("SELECT collection_key, void_key FROM pen_voids"
                              f" WHERE collection_key IN ({marks(len(keys))})", keys))
        persons = load_persons(tx, [it.person_id for it in its], lock=True)
        pids = sorted(persons)
        cols, found = tx.fetch("SELECT person_id, region, monthly_amount, status, reason, since FROM pen_pensioners"
                               f" WHERE person_id IN ({marks(len(pids))}) ORDER BY person_id{tx.for_update}",
                               pids) if pids else ([], [])
        pensioners = {r[0]: dict(zip(cols, r, strict=True)) for r in found}
        now = self.clock.now()
        today, stamp = self.clock.today(now), self.clock.stamp(now)
        certified = self.certified.certified(tx, pensioners, today)
        insts = load_institutions(tx, [it.institution for it in its])
        locked = self.ledger.guarded_balances(tx, [chart.pensioner_account(p) for p in persons])
        balances = dict(locked)
        cards = self.cards.refusals(tx, [(it.person_id, it.card_id, it.card_no) for it in its])
        reqs, rows = [], []
        between: set[tuple[str, str]] = set()
        for n, (i, it) in enumerate(zip(todo, its, strict=True)):
            try:
                if it.key in voided:
                    raise AlreadyReversed(f"collection {it.key} was voided by {voided[it.key]} before it arrived; "
                                          "nothing was paid", key=it.key, void_key=voided[it.key])
                person = persons.get(it.person_id)
                if person is None:
                    raise UnknownPerson(f"no insured person {it.person_id!r}", person_id=it.person_id)
                if cards[n] is not None:
                    raise cards[n]  # type: ignore[misc]
                if person.death_date is not None and person.death_date < today:
                    raise DeathReported(f"{person.name} ({it.person_id}) was reported dead on {person.death_date}; "
                                        "the pension cannot be collected", person_id=it.person_id,
                                        death_date=person.death_date.isoformat())
                row = pensioners.get(it.person_id)
                if row is None:
                    raise InvalidState(f"{person.name} ({it.person_id}) is not a pensioner", person_id=it.person_id)
                if row["status"] != 1:
                    raise BenefitSuspended(
                        f"the pension of {person.name} is {STATUS[row['status']]}"
                        + (f" ({row['reason'].replace('_', ' ')})" if row["reason"] else ""),
                        person_id=it.person_id, status=row["status"], reason=row["reason"])
                if it.person_id not in certified:
                    raise NotCertified(f"{person.name} has no eligibility certification in the last 12 months; "
                                       "certify first (card and PIN, face, or assisted)", person_id=it.person_id)
                inst = insts.get(it.institution)
                if inst is None:
                    raise UnknownInstitution(f"no designated institution {it.institution!r}",
                                             institution=it.institution)
                account = chart.pensioner_account(it.person_id)
                if account not in balances:
                    raise UnknownAccount(f"no account {account!r}", account=account)
                balance = balances[account]
                if balance < it.amount:
                    raise InsufficientFunds(f"the pension account of {person.name} holds {yuan(balance)} yuan; "
                                            f"cannot pay out {yuan(it.amount)}", account=account, balance=balance,
                                            needed=it.amount)
                y, x, cash = person.region, inst.region, chart.institution_cash(inst.code)
                if x == y:
                    ts = [Transfer(account, cash, it.amount, "pension collection")]
                else:
                    ts = [Transfer(account, chart.payable(y, x), it.amount, "pension collection"),
                          Transfer(chart.receivable(x, y), cash, it.amount, f"interregional {y}->{x}")]
                result = Collection(key=it.key, person_id=it.person_id, amount=it.amount, institution=inst.code,
                                    collect_region=x, insured_region=y, cross_region=x != y, collected_at=stamp,
                                    balance_after=balance - it.amount)
                reqs.append(self.ledger.request(it.key, "pension.collect", ts, request_hash=it.rhash,
                                                payload_json=answers.payload(result)))
            except DeathReported as e:
                self.fraud.record_death_attempt(f"pension collection {it.key}", e)
                results[i] = e
                continue
            except NotCertified as e:  # the certification lapsed: suspend the pension until the next one
                self._set_status(tx, it.person_id, 2, LAPSED, actor=it.actor or "collection")
                pensioners[it.person_id] = {**pensioners[it.person_id], "status": 2, "reason": LAPSED}
                results[i] = e
                continue
            except SettlementError as e:
                results[i] = e
                continue
            results[i] = result
            balances[account] -= it.amount
            rows.append((it.key, it.person_id, it.amount, inst.code, x, stamp, today.isoformat()))
            if x != y:
                between.add((x, y))
        if not reqs:
            return results
        chart.ensure_between(self.ledger, tx, between)
        self.ledger.post_decided(tx, reqs, locked=locked)
        write_rows(tx, "INSERT INTO pen_collections (key, person_id, amount, institution, region, collected_at,"
                   " collected_on) VALUES ", "(?, ?, ?, ?, ?, ?, ?)", rows)
        return results

    def void(self, key: str, collection_key: str, *, actor: str = "", reason: str | None = None) -> CollectionVoid:
        """Reverse collection `collection_key`, or tombstone it if it has not arrived (idempotent on `key`).
        `actor` and `reason` are kept with the void; a void by anyone but the collection's own terminal is also
        written to the pensioner's audit trail."""
        if key == collection_key:
            raise InvalidRequest("a void needs its own key")

        def seen(row: dict[str, Any]) -> CollectionVoid:
            if row["void_key"] != key:
                raise AlreadyReversed(f"collection {collection_key} was already voided by {row['void_key']}",
                                      key=collection_key, void_key=row["void_key"])
            status = "voided" if row["status"] == "voided" else "voided_before_arrival"
            return CollectionVoid(void_key=key, collection_key=collection_key, status=status,
                                  amount=int(row["amount"]), replayed=True)

        def unit(tx: Tx) -> CollectionVoid:
            _one_at_a_time(tx, [collection_key])
            kind = tx.value("SELECT kind FROM ledger_postings WHERE key = ?", (collection_key,))
            if kind is not None and kind != "pension.collect":
                raise InvalidState(f"{collection_key} is a {kind}, not a pension collection",
                                   key=collection_key, kind=kind)
            other = tx.value("SELECT collection_key FROM pen_voids WHERE void_key = ?", (key,))
            if other is not None and other != collection_key:
                raise IdempotencyConflict(f"key {key!r} already voided collection {other}", key=key)
            sql = f"SELECT void_key, status, amount FROM pen_voids WHERE collection_key = ?{tx.for_update}"
            row = tx.one(sql, (collection_key,))
            if row is not None:
                return seen(row)
            if kind is None:  # not arrived (yet): a tombstone refuses it when it lands
                check_key(collection_key, "collection_key")
                if tx.execute("INSERT INTO pen_voids (collection_key, void_key, status, amount, voided_at)"
                              " VALUES (?, ?, 'void_before_arrival', 0, ?) ON CONFLICT (collection_key) DO NOTHING",
                              (collection_key, key, self.clock.stamp())) == 0:
                    return seen(tx.one(sql, (collection_key,)) or {})  # a concurrent void won
                return CollectionVoid(void_key=key, collection_key=collection_key, status="voided_before_arrival",
                                      actor=actor, reason=reason)
            amount, person_id = tx.rows("SELECT amount, person_id FROM pen_collections WHERE key = ?",
                                        (collection_key,))[0]
            result = CollectionVoid(void_key=key, collection_key=collection_key, status="voided", amount=int(amount),
                                    actor=actor, reason=reason)
            self.ledger.reverse(key, collection_key, payload={"result": result.model_dump(mode="json")})
            if actor and not issued_by(collection_key, actor):
                audit.record(tx, at=self.clock.stamp(), person_id=person_id, event="collection_voided", actor=actor,
                             key=key, collection_key=collection_key, amount=int(amount), reason=reason)
            tx.execute("INSERT INTO pen_voids (collection_key, void_key, status, amount, voided_at)"
                       " VALUES (?, ?, 'voided', ?, ?)", (collection_key, key, int(amount), self.clock.stamp()))
            return result

        return self.store.run(unit)
