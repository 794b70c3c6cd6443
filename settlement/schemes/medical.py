"""Medical visits: register (2201 outpatient / 2401 admission), cancel a visit not settled (2202/2404),
pre-settle (2206/2303, posts nothing), settle (2207/2304), refund, and void (冲正, 2208/2305) of a
settlement, also one whose response was lost.

Every money-moving call is one unit of the store under its idempotency key: the ledger posting, the
person's yearly accumulators, the visit's state and any fraud flag commit together or not at all, and a
repeat of the key returns the first result without running the flow again.

Refunds (退费) are by amount, linked to the settlement and bounded by what it has not yet given back.
A partial refund is shared over what is left of each part of the settlement (hifp, hifob, hifmi, maf,
acct_pay, psn_cash_pay, in that order) in proportion, with `breakdown.allocate` (half-up prefix
rounding; parts never go below zero, the shares sum exactly to the refund). Accumulators roll back
*exactly* by the fund amounts refunded (hifp/hifob/hifmi/maf paid) and *proportionally* (the refunded
share of what is left, half up) for the in-policy cumulative amount, the deductible used and the
critical-illness base; a refund that empties the settlement rolls back exactly what it added, including
the admission. The policy is not re-run: later settlements of the year keep their splits.

A cancelled visit leaves `med_visits` for `med_cancelled_visits`: a late repeat of its registration is
refused (ALREADY_REVERSED) rather than bringing it back. Refunds and voids are also written to
`med_reversals` with their time and amounts, so that `book` lists an institution's money events of a period
(settlements by their time, refunds and voids by theirs), as the national platform's 3201/3202 reconcile.

A void reverses whatever the settlement still holds (after refunds) and rolls back what is left of
its accumulators; the visit can then be settled again under a new key. A void that arrives before its
settlement (the settlement request still in flight) leaves a tombstone: the late settlement is refused
with ALREADY_REVERSED, so a terminal that voided never finds the visit settled behind its back.

A settlement voided by mistake (a reconciliation repair that trusted a journal cut short) is restored by a
correcting posting (`restore`, kind `medical.restore`: the void's transfers turned back), audited with the
operator and the reason in `med_restorations`; the settlement is in force again with what it held before the
void (its refundable remainder and accumulators), and later refunds and voids link to the correcting posting.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

from pydantic_core import to_json

from settlement.errors import (
    AlreadyReversed,
    DeathReported,
    IdempotencyConflict,
    InvalidRequest,
    InvalidState,
    OtherInstitution,
    RefundTooLarge,
    SettlementError,
    UnknownAccount,
    UnknownInstitution,
    UnknownPerson,
    UnknownTransaction,
    UnknownVisit,
)
from settlement.ledger import (
    Clock,
    Ledger,
    OneByOne,
    Retry,
    Store,
    Transfer,
    Tx,
    apply_ratio,
    check_key,
    fen,
    issued_by,
    marks,
    request_hash,
    write_rows,
)
from settlement.schemes import answers, audit, chart
from settlement.schemes.accumulators import add_to_accumulators, add_to_counters, load_accumulators, load_counters
from settlement.schemes.breakdown import Split, allocate, split_bill
from settlement.schemes.hooks import CardCheck, FraudChecks
from settlement.schemes.policy import CARES, PolicyBook
from settlement.schemes.records import (
    Institution,
    load_institution,
    load_institutions,
    load_person,
    load_persons,
)
from settlement.wire import (
    PARTS,
    Accumulators,
    FeeLine,
    Person,
    PreSettlement,
    Refund,
    RefundParts,
    Restoration,
    Settlement,
    SettlementLine,
    SettlementRecord,
    Visit,
    Void,
    yuan,
)

Handler = Callable[[Tx, list[Any]], list[Any]]
FUND_OF_PART = {"hifp_pay": "hifp", "hifob_pay": "hifob", "hifmi_pay": "hifmi", "maf_pay": "maf"}


@dataclass(frozen=True)
class BookEntry:
    """One medical money event of an institution (`Medical.book`): a settlement, or a refund or void of one
    (`setl_id`) with negative amounts (fen)."""

    key: str
    setl_id: str
    kind: str
    at: str
    mdtrt_id: str
    person_id: str
    care: str
    category: str
    region: str
    medfee_sumamt: int
    fund_pay_sumamt: int
    acct_pay: int
    psn_cash_pay: int


def schema(dialect: str) -> list[str]:
    return [
        """CREATE TABLE IF NOT EXISTS med_visits (
            mdtrt_id TEXT PRIMARY KEY,
            register_key TEXT NOT NULL UNIQUE,
            person_id TEXT NOT NULL,
            institution TEXT NOT NULL,
            treatment_region TEXT NOT NULL,
            level TEXT NOT NULL,
            care TEXT NOT NULL,
            begntime TEXT NOT NULL,
            card_no TEXT,
            status TEXT NOT NULL CHECK (status IN ('registered', 'settled')),
            settle_key TEXT,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS med_settlements (
            key TEXT PRIMARY KEY,
            status TEXT NOT NULL CHECK (status IN ('settled', 'voided', 'void_before_arrival')),
            mdtrt_id TEXT,
            person_id TEXT,
            institution TEXT,
            year INTEGER,
            care TEXT,
            settled_at TEXT,
            void_key TEXT,
            remaining TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS med_settlements_person ON med_settlements (person_id, settled_at)",
        "CREATE INDEX IF NOT EXISTS med_settlements_institution ON med_settlements (institution, settled_at)",
        """CREATE TABLE IF NOT EXISTS med_cancelled_visits (
            mdtrt_id TEXT PRIMARY KEY,
            cancel_key TEXT NOT NULL,
            person_id TEXT NOT NULL,
            institution TEXT NOT NULL,
            cancelled_at TEXT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS med_reversals (
            key TEXT PRIMARY KEY,
            setl_id TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('refund', 'void')),
            institution TEXT NOT NULL,
            at TEXT NOT NULL,
            medfee_sumamt BIGINT NOT NULL,
            fund_pay_sumamt BIGINT NOT NULL,
            acct_pay BIGINT NOT NULL,
            psn_cash_pay BIGINT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS med_reversals_institution ON med_reversals (institution, at)",
        """CREATE TABLE IF NOT EXISTS med_restorations (
            setl_id TEXT PRIMARY KEY,
            restore_key TEXT NOT NULL UNIQUE,
            void_key TEXT NOT NULL,
            actor TEXT NOT NULL,
            reason TEXT NOT NULL,
            at TEXT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS med_accumulators (
            person_id TEXT NOT NULL,
            year INTEGER NOT NULL,
            counter TEXT NOT NULL,
            value BIGINT NOT NULL CHECK (value >= 0),
            PRIMARY KEY (person_id, year, counter)
        )""",
    ]


# -- storage helpers -------------------------------------------------------------------------------------
_VISIT_COLS = "mdtrt_id, person_id, institution, treatment_region, level, care, begntime, status, settle_key"


def _load_visit(tx: Tx, mdtrt_id: str, *, lock: bool = False) -> dict[str, Any]:
    row = _load_visits(tx, [mdtrt_id], lock=lock).get(mdtrt_id)
    if row is None:
        raise UnknownVisit(f"no registered visit {mdtrt_id!r}", mdtrt_id=mdtrt_id)
    return row


def _load_visits(tx: Tx, mdtrt_ids: Sequence[str], *, lock: bool = False) -> dict[str, dict[str, Any]]:
    """The visits among `mdtrt_ids`, by id (one query; with `lock`, locked in id order)."""
    ids = sorted(set(mdtrt_ids))
    if not ids:
        return {}
    cols, rows = tx.fetch(f"SELECT {_VISIT_COLS}, register_key, card_no FROM med_visits"
                          f" WHERE mdtrt_id IN ({marks(len(ids))}) ORDER BY mdtrt_id{tx.for_update if lock else ''}",
                          ids)
    return {r[0]: dict(zip(cols, r, strict=True)) for r in rows}


def _visit(row: dict[str, Any], person: Person) -> Visit:
    return Visit(insured_region=person.region, **{k: row[k] for k in _VISIT_COLS.split(", ")})


def load_visit(tx: Tx, mdtrt_id: str) -> Visit:
    """The registered visit (UnknownVisit if none), for a reader loading more in the same transaction."""
    row = _load_visit(tx, mdtrt_id)
    return _visit(row, load_person(tx, row["person_id"]))


def _check_alive(person: Person, on: dt.date) -> None:
    if person.death_date is not None and person.death_date < on:
        raise DeathReported(
            f"{person.name} ({person.person_id}) was reported dead on {person.death_date.isoformat()}; "
            "no benefits after that date",
            person_id=person.person_id, death_date=person.death_date.isoformat(),
        )


def _lines(lines: Sequence[FeeLine]) -> list[FeeLine]:
    if isinstance(lines, (str, bytes)) or not isinstance(lines, Sequence):
        raise InvalidRequest("lines must be a list of fee lines")
    for ln in lines:
        if not isinstance(ln, FeeLine):
            raise InvalidRequest(f"not a fee line: {ln!r}")
    return list(lines)


def _transfers(parts: dict[str, int], person: Person, inst: Institution, *, back: bool = False) -> list[Transfer]:
    """The settlement's transfers for `parts` (or, with back=True, the refund of them).

    Local: funds and personal account -> institution payable; patient cash -> institution cash.
    Cross-region: the insured region's funds and the account -> insured region's payable to the treatment
    region; the treatment region's receivable -> institution payable (the treatment region pays)."""
    y, x = person.region, inst.region
    owed = chart.institution_payable(inst.code)
    via = owed if x == y else chart.payable(y, x)
    out: list[tuple[str, str, int, str]] = []
    for part, fund in FUND_OF_PART.items():
        out.append((chart.fund(y, fund), via, parts.get(part, 0), part))
    out.append((chart.personal_account(person.person_id), via, parts.get("acct_pay", 0), "acct_pay"))
    if x != y:
        owed_total = sum(parts.get(p, 0) for p in PARTS if p != "psn_cash_pay")
        out.append((chart.receivable(x, y), owed, owed_total, f"interregional {y}->{x}"))
    out.append((chart.patient_cash(x), chart.institution_cash(inst.code), parts.get("psn_cash_pay", 0),
                "psn_cash_pay"))
    return [Transfer(c, d, a, m) if back else Transfer(d, c, a, m) for d, c, a, m in out if a > 0]


def _refund_parts(parts: dict[str, int]) -> RefundParts:
    fund = sum(parts[p] for p in FUND_OF_PART)
    return RefundParts(medfee_sumamt=sum(parts.values()), fund_pay_sumamt=fund, **parts)


def _record_reversals(tx: Tx, rows: list[tuple[str, str, str, str, str, RefundParts]]) -> None:
    """Keep refunds and voids (key, settlement, kind, institution, time, amounts) for the day book."""
    write_rows(tx, "INSERT INTO med_reversals (key, setl_id, kind, institution, at, medfee_sumamt, fund_pay_sumamt,"
               " acct_pay, psn_cash_pay) VALUES ", "(?, ?, ?, ?, ?, ?, ?, ?, ?)",
               [(k, s, kind, inst, at, p.medfee_sumamt, p.fund_pay_sumamt, p.acct_pay, p.psn_cash_pay)
                for k, s, kind, inst, at, p in rows])


def mdtrt_id_for(register_key: str) -> str:
    return "MD" + hashlib.blake2b(register_key.encode(), digest_size=10).hexdigest().upper()


@dataclass(slots=True)
class _Register:
    key: str
    mdtrt_id: str
    person_id: str
    institution: str
    care: str
    begntime: dt.date | None
    day: dt.date
    card_no: str | None
    card_id: str | None


@dataclass(slots=True)
class _Settle:
    key: str
    mdtrt_id: str
    lines: list[FeeLine]
    use_account: bool
    rhash: str
    at: str | None  # the institution the request acts for (None: any)
    card_id: str | None  # the card presented (none: the card the visit was registered with)
    card_no: str | None


@dataclass(slots=True)
class _Refund:
    key: str
    setl_id: str
    amount: int | None
    rhash: str
    at: str | None
    card_id: str | None  # a refund to the card: the card presented
    card_no: str | None
    actor: str = ""  # who refunds: kept with the refund, audited when not the settlement's terminal
    reason: str | None = None
    operator: str | None = None


_VISIT_INSERT = ("INSERT INTO med_visits (mdtrt_id, register_key, person_id, institution, treatment_region, level,"
                 " care, begntime, card_no, status, created_at) VALUES ")
_SETTLEMENT_INSERT = ("INSERT INTO med_settlements (key, status, mdtrt_id, person_id, institution, year, care,"
                      " settled_at, remaining) VALUES ")


class Medical:
    """The medical flows: visits and their settlements, refunds and voids.

    Registrations, settlements and refunds are batched: `register_job` / `settle_job` / `refund_job` check a
    request in the caller's thread and return `(handler, item)` for the store (`store.run_batched(*job)`, or
    `await store.submit(*job)` in an event loop; `register()`, `settle()` and `refund()` do the former). The
    store hands the handler the items of every concurrent caller at once, and the handler decides them
    set-based: the visits, persons (locked on a server), institutions, accumulators and personal-account
    balances of the whole batch are read with one query each, each patient's split is computed in Python
    against running totals (two visits of one person in a batch see each other, in arrival order), and
    everything is written with multi-row statements in the store's one transaction. A refused request
    gets its typed error and writes nothing (a refusal for a reported death leaves its fraud flag).
    """

    def __init__(self, store: Store, ledger: Ledger, policies: PolicyBook, clock: Clock, *,
                 fraud: FraudChecks, cards: CardCheck) -> None:
        self.store, self.ledger, self.policies, self.clock = store, ledger, policies, clock
        self.fraud, self.cards = fraud, cards

    # -- register ------------------------------------------------------------------------------------
    def register(
        self,
        key: str,
        person_id: str,
        institution: str,
        care: str,
        *,
        begntime: dt.date | None = None,
        card_no: str | None = None,
        card_id: str | None = None,
    ) -> Visit:
        """Register a visit (idempotent on `key`; the same key with other details is IdempotencyConflict). The
        card presented (`card_no`, `card_id`: as read from it) must be the person's active card."""
        return self.store.run_batched(*self.register_job(  # type: ignore[no-any-return]
            key, person_id, institution, care, begntime=begntime, card_no=card_no, card_id=card_id))

    def register_job(self, key: str, person_id: str, institution: str, care: str, *, begntime: dt.date | None = None,
                     card_no: str | None = None, card_id: str | None = None) -> tuple[Handler, _Register]:
        """`register` as a job for the store (see the class docstring)."""
        if care not in CARES:
            raise InvalidRequest(f"unknown kind of care {care!r}; use outpatient or inpatient", care=care)
        return self._register_many, _Register(key, mdtrt_id_for(key), person_id, institution, care, begntime,
                                              begntime or self.clock.today(), card_no, card_id)

    def _register_many(self, tx: Tx, items: list[_Register]) -> list[Visit | Exception]:
        if len({it.key for it in items}) != len(items):
            raise OneByOne("the same key twice in one batch")
        persons = load_persons(tx, [it.person_id for it in items])
        insts = load_institutions(tx, [it.institution for it in items])
        ids = [it.mdtrt_id for it in items]
        cancelled = {m for (m,) in tx.rows("SELECT mdtrt_id FROM med_cancelled_visits"
                                            f" WHERE mdtrt_id IN ({marks(len(ids))})", ids)}
        results: list[Visit | Exception | None] = [None] * len(items)
        rows = []
        stamp = self.clock.stamp()
        cards = self.cards.refusals(tx, [(it.person_id, it.card_id, it.card_no) for it in items])
        for i, it in enumerate(items):
            try:
                person = persons.get(it.person_id)
                if person is None:
                    raise UnknownPerson(f"no insured person {it.person_id!r}", person_id=it.person_id)
                inst = insts.get(it.institution)
                if inst is None:
                    raise UnknownInstitution(f"no designated institution {it.institution!r}",
                                             institution=it.institution)
                _check_alive(person, it.day)
                if cards[i] is not None:
                    raise cards[i]  # type: ignore[misc]
                self.policies.get(person.region, it.day).scheme(person.category, it.care)  # UnknownPolicy early
                if it.mdtrt_id in cancelled:
                    raise AlreadyReversed(f"visit {it.mdtrt_id} registered under {it.key} was cancelled; register "
                                          "again with a new serial number", key=it.key, mdtrt_id=it.mdtrt_id)
            except DeathReported as e:
                self.fraud.record_death_attempt(f"register {it.key}", e)
                results[i] = e
                continue
            except SettlementError as e:
                results[i] = e
                continue
            rows.append((it.mdtrt_id, it.key, it.person_id, inst.code, inst.region, inst.level, it.care,
                         it.day.isoformat(), it.card_no, stamp))
        write_rows(tx, _VISIT_INSERT, "(?, ?, ?, ?, ?, ?, ?, ?, ?, 'registered', ?)", rows,
                   " ON CONFLICT (mdtrt_id) DO NOTHING")
        visits = _load_visits(tx, [r[0] for r in rows])
        for i, it in enumerate(items):
            if results[i] is None:
                row = visits[it.mdtrt_id]
                if (row["register_key"], row["person_id"], row["institution"], row["care"], row["card_no"]) != (
                    it.key, it.person_id, it.institution, it.care, it.card_no
                ) or (it.begntime is not None and row["begntime"] != it.begntime.isoformat()):
                    results[i] = IdempotencyConflict(f"key {it.key!r} registered a different visit", key=it.key)
                else:
                    results[i] = _visit(row, persons[it.person_id])
        return results  # type: ignore[return-value]

    def cancel_visit(self, key: str, mdtrt_id: str) -> None:
        """Cancel a registered visit that holds no settlement (2202 / 2404; void a settlement first).
        Idempotent on `key`; the visit's id then names no visit, and its registration cannot come back."""

        def unit(tx: Tx) -> None:
            gone = tx.one("SELECT cancel_key FROM med_cancelled_visits WHERE mdtrt_id = ?", (mdtrt_id,))
            if gone is not None:
                if gone["cancel_key"] != key:
                    raise AlreadyReversed(f"visit {mdtrt_id} was already cancelled by {gone['cancel_key']}",
                                          mdtrt_id=mdtrt_id, cancel_key=gone["cancel_key"])
                return
            row = _load_visit(tx, mdtrt_id, lock=True)
            if row["status"] != "registered":
                raise InvalidState(f"visit {mdtrt_id} is settled under {row['settle_key']}; void that settlement "
                                   "before cancelling the visit", mdtrt_id=mdtrt_id, settle_key=row["settle_key"])
            tx.execute("INSERT INTO med_cancelled_visits (mdtrt_id, cancel_key, person_id, institution, cancelled_at)"
                       " VALUES (?, ?, ?, ?, ?)",
                       (mdtrt_id, key, row["person_id"], row["institution"], self.clock.stamp()))
            tx.execute("DELETE FROM med_visits WHERE mdtrt_id = ?", (mdtrt_id,))

        self.store.run(unit)

    def visit(self, mdtrt_id: str) -> Visit:
        return self.store.read(lambda tx: load_visit(tx, mdtrt_id))

    # -- pre-settle and settle -----------------------------------------------------------------------
    def _split(self, row: dict[str, Any], person: Person, inst: Institution, lines: list[FeeLine], use_account: bool,
               acc: Accumulators, balance: int) -> Split:
        """The split of a visit's bill (the person alive on the visit day; the insured region's policy)."""
        day = dt.date.fromisoformat(row["begntime"])
        _check_alive(person, day)
        policy = self.policies.get(person.region, day)
        return split_bill(policy, category=person.category, care=row["care"], level=row["level"], lines=lines,
                          acc=acc, assistance_class=person.assistance_class, account_balance=balance,
                          use_account=use_account, catalogue=self.policies.get(inst.region, day))

    def presettle(self, mdtrt_id: str, lines: Sequence[FeeLine], *, use_account: bool = True) -> PreSettlement:
        """Compute the split as a settlement now would (2206). Posts and changes nothing."""
        lines = _lines(lines)
        balance = self.ledger.balance(chart.personal_account(self.visit(mdtrt_id).person_id))

        def q(tx: Tx) -> PreSettlement:
            row = _load_visit(tx, mdtrt_id)
            person = load_person(tx, row["person_id"])
            inst = load_institution(tx, row["institution"])
            acc = load_accumulators(tx, person.person_id, self.clock.today().year)
            split = self._split(row, person, inst, lines, use_account, acc, balance)
            return PreSettlement(mdtrt_id=mdtrt_id, person_id=person.person_id, insured_region=person.region,
                                 treatment_region=inst.region, breakdown=split.breakdown)

        return self.store.read(q)

    def settle(self, key: str, mdtrt_id: str, lines: Sequence[FeeLine], *, use_account: bool = True,
               at_institution: str | None = None, card_id: str | None = None,
               card_no: str | None = None) -> Settlement:
        """Settle a registered visit (2207): post the split, update the accumulators, mark the visit settled.
        The card presented (or, when none is, the card the visit was registered with) must be the person's
        active card: a card reported lost since the registration settles nothing.

        Idempotent on `key`: a repeat returns the first Settlement (replayed=True). `at_institution`: the
        institution the request acts for; a visit of another institution is FORBIDDEN."""
        return self.store.run_batched(*self.settle_job(  # type: ignore[no-any-return]
            key, mdtrt_id, lines, use_account=use_account, at_institution=at_institution, card_id=card_id,
            card_no=card_no))

    def settle_job(self, key: str, mdtrt_id: str, lines: Sequence[FeeLine], *, use_account: bool = True,
                   at_institution: str | None = None, card_id: str | None = None,
                   card_no: str | None = None) -> tuple[Handler, _Settle]:
        """`settle` as a job for the store (see the class docstring)."""
        lines = _lines(lines)
        rhash = request_hash("medical.settle", [mdtrt_id, [[ln.cls, ln.amount, ln.over_limit] for ln in lines],
                                                use_account])
        return self._settle_many, _Settle(key, mdtrt_id, lines, use_account, rhash, at_institution, card_id,
                                          card_no)

    def _settle_many(self, tx: Tx, items: list[_Settle]) -> list[Settlement | Exception]:
        results, todo = answers.repeats(self.ledger, tx, items, Settlement, "medical.settle")
        if not todo:
            return results
        its = [items[i] for i in todo]
        visits = _load_visits(tx, [it.mdtrt_id for it in its])
        persons = load_persons(tx, [v["person_id"] for v in visits.values()], lock=True)
        if tx.for_update and visits:  # again, locked, under the persons' locks: a void, settlement or cancellation
            visits = _load_visits(tx, list(visits), lock=True)  # may have committed since
        insts = load_institutions(tx, [v["institution"] for v in visits.values()])
        now = self.clock.now()
        stamp, year = self.clock.stamp(now), self.clock.today(now).year
        voided = {k for (k,) in tx.rows(f"SELECT key FROM med_settlements WHERE key IN ({marks(len(its))})",
                                        [it.key for it in its])}
        counters = load_counters(tx, persons, year)
        locked = self.ledger.guarded_balances(tx, [chart.personal_account(p) for p in persons])
        balances = dict(locked)
        found = [(it, visits[it.mdtrt_id]) for it in its if it.mdtrt_id in visits]
        card_refusal = dict(zip([it.key for it, _ in found], self.cards.refusals(tx, [
            (row["person_id"], it.card_id, it.card_no if it.card_id is not None or it.card_no is not None
             else row["card_no"]) for it, row in found]), strict=True))
        status = {m: v["status"] for m, v in visits.items()}
        settled = {m: v["settle_key"] for m, v in visits.items()}
        reqs, rows, uses = [], [], []
        deltas: dict[tuple[str, int, str], int] = {}
        between: set[tuple[str, str]] = set()
        for i, it in zip(todo, its, strict=True):
            try:
                row = visits.get(it.mdtrt_id)
                if row is None:
                    raise UnknownVisit(f"no registered visit {it.mdtrt_id!r}", mdtrt_id=it.mdtrt_id)
                if it.at is not None and row["institution"] != it.at:
                    raise OtherInstitution(f"visit {it.mdtrt_id} is at institution {row['institution']}, not {it.at}",
                                           rule="own_institution", mdtrt_id=it.mdtrt_id, institution=it.at)
                pid = row["person_id"]
                person = persons.get(pid)
                if person is None:
                    raise UnknownPerson(f"no insured person {pid!r}", person_id=pid)
                inst = insts.get(row["institution"])
                if inst is None:
                    raise UnknownInstitution(f"no designated institution {row['institution']!r}",
                                             institution=row["institution"])
                account = chart.personal_account(pid)
                if account not in balances:
                    raise UnknownAccount(f"no account {account!r}", account=account)
                a = Accumulators.from_counters(year, counters.setdefault(pid, {}))
                split = self._split(row, person, inst, it.lines, it.use_account, a, balances[account])
                if card_refusal[it.key] is not None:
                    raise card_refusal[it.key]  # type: ignore[misc]
                if it.key in voided:
                    raise AlreadyReversed(f"settlement {it.key} was voided by its terminal before it arrived; settle "
                                          "again with a new serial number", key=it.key)
                if status[it.mdtrt_id] != "registered":
                    raise InvalidState(f"visit {it.mdtrt_id} is already settled under {settled[it.mdtrt_id]}; void or "
                                       "refund that settlement first", mdtrt_id=it.mdtrt_id,
                                       settle_key=settled[it.mdtrt_id])
                b = split.breakdown
                parts = {p: getattr(b, p) for p in PARTS}
                result = Settlement(setl_id=it.key, mdtrt_id=it.mdtrt_id, person_id=pid, institution=inst.code,
                                    insured_region=person.region, treatment_region=inst.region,
                                    cross_region=person.region != inst.region, setl_time=stamp, year=year,
                                    breakdown=b)
                reqs.append(self.ledger.request(it.key, "medical.settle", _transfers(parts, person, inst),
                                                payload_json=answers.payload(result),
                                                request_hash=it.rhash))
            except DeathReported as e:
                self.fraud.record_death_attempt(f"settle {it.key} of visit {it.mdtrt_id}", e)
                results[i] = e
                continue
            except SettlementError as e:
                results[i] = e
                continue
            results[i] = result
            status[it.mdtrt_id], settled[it.mdtrt_id] = "settled", it.key
            balances[account] -= b.acct_pay
            counted = {c: v for c, v in split.deltas.items() if v}
            mine = counters[pid]
            for c, v in counted.items():
                mine[c] = mine.get(c, 0) + v
                deltas[(pid, year, c)] = deltas.get((pid, year, c), 0) + v
            rows.append((it.key, it.mdtrt_id, pid, inst.code, year, row["care"], stamp,
                         to_json({"bill": b.medfee_sumamt, "parts": parts, "counters": counted}).decode()))
            uses.append((pid, inst.code, it.key))
            if person.region != inst.region:
                between.add((inst.region, person.region))
        if not reqs:
            return results
        chart.ensure_between(self.ledger, tx, between)
        self.ledger.post_decided(tx, reqs, locked=locked)
        if write_rows(tx, _SETTLEMENT_INSERT, "(?, 'settled', ?, ?, ?, ?, ?, ?, ?)", rows,
                      " ON CONFLICT (key) DO NOTHING") != len(rows):
            raise Retry("a void of one of these settlements arrived meanwhile")
        if write_rows(tx, "UPDATE med_visits SET status = 'settled', settle_key = v.column2 FROM (VALUES ", "(?, ?)",
                      [(r[1], r[0]) for r in rows], ") AS v WHERE mdtrt_id = v.column1") != len(rows):
            raise Retry("a visit was cancelled meanwhile")
        add_to_counters(tx, deltas)
        self.fraud.check_card_uses(tx, uses, now)
        return results

    # -- refund ----------------------------------------------------------------------------------------
    def refund(self, key: str, setl_id: str, amount: int | None = None, *, at_institution: str | None = None,
               card_id: str | None = None, card_no: str | None = None, actor: str = "", reason: str | None = None,
               operator: str | None = None) -> Refund:
        """Refund `amount` fen of settlement `setl_id` (all that is left when None), linked to it. A card
        presented (a refund to the card) must be the person's active card. `at_institution`: the institution
        the request acts for; a settlement of another one is FORBIDDEN. `actor` (the terminal or operator),
        `reason` and `operator` (the clerk) are kept with the refund; a refund by anyone but the settlement's own
        terminal is also written to the person's audit trail."""
        return self.store.run_batched(*self.refund_job(  # type: ignore[no-any-return]
            key, setl_id, amount, at_institution=at_institution, card_id=card_id, card_no=card_no, actor=actor,
            reason=reason, operator=operator))

    def refund_job(self, key: str, setl_id: str, amount: int | None = None, *, at_institution: str | None = None,
                   card_id: str | None = None, card_no: str | None = None, actor: str = "",
                   reason: str | None = None, operator: str | None = None) -> tuple[Handler, _Refund]:
        """`refund` as a job for the store (see the class docstring)."""
        if amount is not None:
            fen(amount, allow_zero=False, field="amount")
        return self._refund_many, _Refund(key, setl_id, amount, request_hash("medical.refund", [setl_id, amount]),
                                          at_institution, card_id, card_no, actor, reason, operator)

    def _refund_many(self, tx: Tx, items: list[_Refund]) -> list[Refund | Exception]:
        results, todo = answers.repeats(self.ledger, tx, items, Refund, "medical.refund")
        if not todo:
            return results
        its = [items[i] for i in todo]
        ids = sorted({it.setl_id for it in its})
        cols, found = tx.fetch("SELECT key, status, mdtrt_id, person_id, institution, year, care, void_key, remaining"
                               f" FROM med_settlements WHERE key IN ({marks(len(ids))}) ORDER BY key{tx.for_update}",
                               ids)
        rows = {r[0]: dict(zip(cols, r, strict=True)) for r in found}
        persons = load_persons(tx, [r["person_id"] for r in rows.values() if r["person_id"]], lock=True)
        insts = load_institutions(tx, [r["institution"] for r in rows.values() if r["institution"]])
        rems = {k: json.loads(r["remaining"]) for k, r in rows.items() if r["remaining"]}
        restored = dict(tx.rows("SELECT setl_id, restore_key FROM med_restorations"
                                f" WHERE setl_id IN ({marks(len(ids))})", ids))
        cards = self.cards.refusals(tx, [(rows[it.setl_id]["person_id"] or "" if it.setl_id in rows else "",
                                          it.card_id, it.card_no) for it in its])
        reqs, changed, reversals = [], set(), []
        deltas: dict[tuple[str, int, str], int] = {}
        stamp = self.clock.stamp()
        for n, (i, it) in enumerate(zip(todo, its, strict=True)):
            try:
                row = rows.get(it.setl_id)
                if row is None or row["status"] == "void_before_arrival":
                    raise UnknownTransaction(f"no settlement {it.setl_id!r}", key=it.setl_id)
                if it.at is not None and row["institution"] != it.at:
                    raise OtherInstitution(f"settlement {it.setl_id} was made at institution {row['institution']}, "
                                           f"not {it.at}", rule="own_institution", key=it.setl_id,
                                           institution=it.at)
                if row["status"] == "voided":
                    raise AlreadyReversed(f"settlement {it.setl_id} was voided by {row['void_key']}", key=it.setl_id)
                person = persons.get(row["person_id"])
                if person is None:
                    raise UnknownPerson(f"no insured person {row['person_id']!r}", person_id=row["person_id"])
                if cards[n] is not None:
                    raise cards[n]  # type: ignore[misc]
                inst = insts.get(row["institution"])
                if inst is None:
                    raise UnknownInstitution(f"no designated institution {row['institution']!r}",
                                             institution=row["institution"])
                rem = rems[it.setl_id]
                left = rem["bill"]
                want = left if it.amount is None else it.amount
                if want > left or want == 0:
                    raise RefundTooLarge(
                        f"refund of {yuan(want)} yuan exceeds the {yuan(left)} yuan of settlement {it.setl_id} "
                        "not yet refunded", key=it.setl_id, refundable=left, requested=want)
                parts = allocate(want, {p: rem["parts"][p] for p in PARTS})
                back = self._rollback(rem, parts, want)
                after = {"bill": left - want, "parts": {p: rem["parts"][p] - parts[p] for p in PARTS},
                         "counters": {c: v - back.get(c, 0) for c, v in rem["counters"].items() if v - back.get(c, 0)}}
                result = Refund(refund_key=it.key, setl_id=it.setl_id, refund=_refund_parts(parts),
                                refundable_after=after["bill"], actor=it.actor, reason=it.reason,
                                operator=it.operator)
                reqs.append(self.ledger.request(it.key, "medical.refund", _transfers(parts, person, inst, back=True),
                                                links_to=restored.get(it.setl_id, it.setl_id),
                                                payload_json=answers.payload(result),
                                                request_hash=it.rhash))
            except SettlementError as e:
                results[i] = e
                continue
            results[i] = result
            rems[it.setl_id] = after
            changed.add(it.setl_id)
            reversals.append((it.key, it.setl_id, "refund", inst.code, stamp, result.refund))
            if it.actor and not issued_by(it.setl_id, it.actor):
                audit.record(tx, at=stamp, person_id=person.person_id, event="settlement_refunded", actor=it.actor,
                             key=it.key, setl_id=it.setl_id, amount=want, reason=it.reason, operator=it.operator)
            for c, v in back.items():
                k = (person.person_id, row["year"], c)
                deltas[k] = deltas.get(k, 0) - v
        if not reqs:
            return results
        self.ledger.post_decided(tx, reqs)
        write_rows(tx, "UPDATE med_settlements SET remaining = v.column2 FROM (VALUES ", "(?, ?)",
                   [(k, json.dumps(rems[k])) for k in sorted(changed)], ") AS v WHERE key = v.column1")
        add_to_counters(tx, deltas)
        _record_reversals(tx, reversals)
        return results

    @staticmethod
    def _rollback(rem: dict[str, Any], parts: dict[str, int], amount: int) -> dict[str, int]:
        """Accumulator amounts to take back for a refund of `amount` (see the module docstring)."""
        counters: dict[str, int] = rem["counters"]
        if amount == rem["bill"]:
            return dict(counters)
        q = Fraction(amount, rem["bill"])
        back = {}
        for c, v in counters.items():
            name = c.split(".")[-1]
            if name in ("hifp_paid", "hifob_paid"):
                back[c] = min(v, parts[name.replace("_paid", "_pay")])
            elif c in ("hifmi_paid", "maf_paid"):
                back[c] = min(v, parts[c.replace("_paid", "_pay")])
            elif c != "admissions":
                back[c] = apply_ratio(v, q)
        return back

    # -- void (冲正) ------------------------------------------------------------------------------------
    def void(self, key: str, setl_id: str, *, actor: str = "", reason: str | None = None) -> Void:
        """Reverse settlement `setl_id` (what is left of it after refunds), or tombstone it if unknown. `actor`
        and `reason` are kept with the void; a void by anyone but the settlement's own terminal is also written
        to the person's audit trail."""
        if key == setl_id:
            raise InvalidRequest("a void needs its own key")

        def unit(tx: Tx) -> Void:
            other = self.ledger.get(setl_id)
            if other is not None and other.kind != "medical.settle":
                raise InvalidState(f"{setl_id} is a {other.kind}, not a settlement; only settlements are voided",
                                   key=setl_id, kind=other.kind)
            if other is None:
                check_key(setl_id, "setl_id")  # a tombstone only for what could be a settlement's key
            if tx.execute("INSERT INTO med_settlements (key, status, void_key, settled_at) VALUES"
                          " (?, 'void_before_arrival', ?, ?) ON CONFLICT (key) DO NOTHING",
                          (setl_id, key, self.clock.stamp())) == 1:
                return Void(void_key=key, setl_id=setl_id, status="voided_before_arrival", actor=actor, reason=reason)
            row = tx.one(f"SELECT status, void_key, person_id, institution, year, mdtrt_id, remaining"
                         f" FROM med_settlements WHERE key = ?{tx.for_update}", (setl_id,))
            assert row is not None
            if row["status"] != "settled":
                if row["void_key"] != key:
                    raise AlreadyReversed(f"settlement {setl_id} was already voided by {row['void_key']}",
                                          key=setl_id, void_key=row["void_key"])
                if row["status"] == "void_before_arrival":
                    return Void(void_key=key, setl_id=setl_id, status="voided_before_arrival", replayed=True)
                first = self.ledger.get(key)
                assert first is not None
                return answers.replay(replace(first, replayed=True), Void, "reversal")
            person = load_person(tx, row["person_id"], lock=True)
            rem = json.loads(row["remaining"])
            result = Void(void_key=key, setl_id=setl_id, status="voided",
                          reversed=_refund_parts({p: rem["parts"][p] for p in PARTS}), actor=actor, reason=reason)
            posting = self.ledger.reverse(key, self._in_force(tx, setl_id),
                                          payload={"result": result.model_dump(mode="json"), "remaining": rem})
            if posting.replayed:  # the key reversed this settlement before, in a unit that also did the rest
                return answers.replay(posting, Void, "reversal")
            add_to_accumulators(tx, person.person_id, row["year"], {c: -v for c, v in rem["counters"].items()})
            assert result.reversed is not None
            _record_reversals(tx, [(key, setl_id, "void", row["institution"], posting.created_at, result.reversed)])
            if actor and not issued_by(setl_id, actor):
                audit.record(tx, at=self.clock.stamp(), person_id=person.person_id, event="settlement_voided",
                             actor=actor, key=key, setl_id=setl_id, amount=rem["bill"], reason=reason)
            tx.execute("UPDATE med_settlements SET status = 'voided', void_key = ?, remaining = ? WHERE key = ?",
                       (key, json.dumps({"bill": 0, "parts": dict.fromkeys(PARTS, 0), "counters": {}}), setl_id))
            tx.execute("UPDATE med_visits SET status = 'registered', settle_key = NULL WHERE mdtrt_id = ?",
                       (row["mdtrt_id"],))
            return result

        return self.store.run(unit)

    @staticmethod
    def _in_force(tx: Tx, setl_id: str) -> str:
        """The posting that holds settlement `setl_id`'s money: the settlement's, or its correcting posting."""
        return str(tx.value("SELECT restore_key FROM med_restorations WHERE setl_id = ?", (setl_id,)) or setl_id)

    def restore(self, key: str, setl_id: str, *, actor: str, reason: str) -> Restoration:
        """Restore settlement `setl_id`, voided by mistake, by a correcting posting under `key` (the void's
        transfers turned back): in force again as before the void, audited with `actor` and `reason`.
        Repeating `key` returns the first result. Refused: a settlement in force, a tombstone (nothing ever
        arrived), a visit settled again since, a void recorded before restores existed (INVALID_STATE), money
        no longer there (INSUFFICIENT_FUNDS); then nothing changes."""
        if not actor or not reason or not reason.strip():
            raise InvalidRequest("a restore needs an actor and a reason (both audited)")

        def unit(tx: Tx) -> Restoration:
            done = tx.one("SELECT setl_id, void_key, at FROM med_restorations WHERE restore_key = ?", (key,))
            if done is not None:
                if done["setl_id"] != setl_id:
                    raise IdempotencyConflict(f"key {key!r} restored {done['setl_id']}", key=key)
                return Restoration(restore_key=key, setl_id=setl_id, void_key=done["void_key"], at=done["at"],
                                   replayed=True)
            row = tx.one(f"SELECT status, void_key, person_id, year, mdtrt_id FROM med_settlements WHERE key = ?"
                         f"{tx.for_update}", (setl_id,))
            if row is None:
                raise UnknownTransaction(f"no settlement {setl_id!r}", key=setl_id)
            if row["status"] != "voided":
                what = "never arrived (a tombstone)" if row["status"] == "void_before_arrival" else "is in force"
                raise InvalidState(f"settlement {setl_id} {what}: nothing to restore", key=setl_id)
            void = self.ledger.get(row["void_key"])
            rem = (void.payload if void is not None else {}).get("remaining")
            if void is None or rem is None:
                raise InvalidState(f"the void of {setl_id} ({row['void_key']}) keeps no record of what the "
                                   "settlement held: restore it by hand", key=setl_id)
            visit = tx.one(f"SELECT status, settle_key FROM med_visits WHERE mdtrt_id = ?{tx.for_update}",
                           (row["mdtrt_id"],))
            if visit is not None and visit["status"] == "settled":
                raise InvalidState(f"visit {row['mdtrt_id']} was settled again by {visit['settle_key']}: settlement "
                                   f"{setl_id} cannot be restored beside it", key=setl_id)
            at = self.clock.stamp()
            self.ledger.post(key, "medical.restore", [Transfer(t.credit, t.debit, t.amount, t.memo)
                                                      for t in void.transfers],
                             payload={"setl_id": setl_id, "void_key": row["void_key"], "actor": actor,
                                      "reason": reason})
            add_to_accumulators(tx, row["person_id"], row["year"], rem["counters"])
            tx.execute("UPDATE med_settlements SET status = 'settled', void_key = NULL, remaining = ? WHERE key = ?",
                       (json.dumps(rem), setl_id))
            tx.execute("UPDATE med_visits SET status = 'settled', settle_key = ? WHERE mdtrt_id = ?",
                       (setl_id, row["mdtrt_id"]))
            tx.execute("DELETE FROM med_reversals WHERE key = ?", (row["void_key"],))  # (the book: never voided)
            tx.execute("INSERT INTO med_restorations (setl_id, restore_key, void_key, actor, reason, at)"
                       " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (setl_id) DO UPDATE SET restore_key ="
                       " excluded.restore_key, void_key = excluded.void_key, actor = excluded.actor,"
                       " reason = excluded.reason, at = excluded.at",
                       (setl_id, key, row["void_key"], actor, reason, at))
            return Restoration(restore_key=key, setl_id=setl_id, void_key=row["void_key"], at=at)

        return self.store.run(unit)

    # -- queries ---------------------------------------------------------------------------------------
    def settlement(self, setl_id: str) -> SettlementRecord:
        def q(tx: Tx) -> SettlementRecord:
            row = tx.one("SELECT key, status, mdtrt_id, person_id, institution, void_key, remaining"
                         " FROM med_settlements WHERE key = ?", (setl_id,))
            if row is None:
                raise UnknownTransaction(f"no settlement {setl_id!r}", key=setl_id)
            rem = json.loads(row["remaining"]) if row["remaining"] else {"bill": 0, "parts": {}}
            return SettlementRecord(setl_id=setl_id, status=row["status"], mdtrt_id=row["mdtrt_id"],
                                    person_id=row["person_id"], institution=row["institution"],
                                    void_key=row["void_key"], refundable=rem["bill"],
                                    remaining=rem["parts"])

        return self.store.read(q)

    def recent(self, person_id: str, limit: int = 10) -> list[SettlementLine]:
        """The person's latest settlements (voided ones too), newest first, with what each refunded since."""
        def q(tx: Tx) -> list[SettlementLine]:
            load_person(tx, person_id)
            rows = tx.rows("SELECT s.key, s.status, s.mdtrt_id, s.institution, s.settled_at, s.remaining, p.payload"
                           " FROM med_settlements s JOIN ledger_postings p ON p.key = s.key WHERE s.person_id = ?"
                           " AND s.status IN ('settled', 'voided') ORDER BY s.settled_at DESC, s.key LIMIT ?",
                           (person_id, limit))
            out = []
            for key, status, mdtrt_id, inst, at, remaining, payload in rows:
                b = json.loads(payload)["result"]["breakdown"]
                left = json.loads(remaining)["bill"] if status == "settled" else 0
                out.append(SettlementLine(setl_id=key, mdtrt_id=mdtrt_id, institution=inst, setl_time=at,
                                          status=status, medfee_sumamt=b["medfee_sumamt"],
                                          fund_pay_sumamt=b["fund_pay_sumamt"], acct_pay=b["acct_pay"],
                                          psn_cash_pay=b["psn_cash_pay"],
                                          refunded=b["medfee_sumamt"] - left if status == "settled" else 0))
            return out

        return self.store.read(q)

    def accumulators(self, person_id: str, year: int | None = None) -> Accumulators:

        def q(tx: Tx) -> Accumulators:
            load_person(tx, person_id)
            return load_accumulators(tx, person_id, year or self.clock.today().year)

        return self.store.read(q)

    def book(self, institution: str, since: str, until: str) -> list[BookEntry]:
        """The institution's medical money events with a time in [since, until) (UTC stamps): each settlement
        at its settlement time (also one voided or refunded since), each refund and void at its own time
        with its amounts negative; in time order."""

        def q(tx: Tx) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            settled = tx.query(
                "SELECT s.key, s.mdtrt_id, s.person_id, s.care, s.settled_at, p.category, p.region"
                " FROM med_settlements s JOIN reg_persons p ON p.person_id = s.person_id"
                " WHERE s.institution = ? AND s.settled_at >= ? AND s.settled_at < ?"
                " AND s.status IN ('settled', 'voided')", (institution, since, until))
            reversed_ = tx.query(
                "SELECT v.key, v.setl_id, v.kind, v.at, v.medfee_sumamt, v.fund_pay_sumamt, v.acct_pay,"
                " v.psn_cash_pay, s.mdtrt_id, s.person_id, s.care, p.category, p.region FROM med_reversals v"
                " JOIN med_settlements s ON s.key = v.setl_id JOIN reg_persons p ON p.person_id = s.person_id"
                " WHERE v.institution = ? AND v.at >= ? AND v.at < ?", (institution, since, until))
            return settled, reversed_

        settled, reversed_ = self.store.read(q)
        out = []
        for r in settled:
            posting = self.ledger.get(r["key"])
            assert posting is not None
            b = posting.payload["result"]["breakdown"]
            out.append(BookEntry(r["key"], r["key"], "settle", r["settled_at"], r["mdtrt_id"], r["person_id"],
                                 r["care"], r["category"], r["region"], b["medfee_sumamt"], b["fund_pay_sumamt"],
                                 b["acct_pay"], b["psn_cash_pay"]))
        for r in reversed_:
            out.append(BookEntry(r["key"], r["setl_id"], r["kind"], r["at"], r["mdtrt_id"], r["person_id"],
                                 r["care"], r["category"], r["region"], -r["medfee_sumamt"], -r["fund_pay_sumamt"],
                                 -r["acct_pay"], -r["psn_cash_pay"]))
        return sorted(out, key=lambda e: (e.at, e.key))
