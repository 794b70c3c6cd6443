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
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

from settlement.errors import (
    AlreadyReversed,
    DeathReported,
    IdempotencyConflict,
    InvalidRequest,
    InvalidState,
    RefundTooLarge,
    UnknownTransaction,
    UnknownVisit,
)
from settlement.ledger import Clock, Draft, Ledger, Posting, Store, Transfer, Tx, apply_ratio, fen, request_hash
from settlement.schemes import chart
from settlement.schemes.accumulators import add_to_accumulators, load_accumulators
from settlement.schemes.breakdown import Split, allocate, split_bill
from settlement.schemes.hooks import CardCheck, FraudChecks
from settlement.schemes.policy import CARES, PolicyBook
from settlement.schemes.records import Institution, load_institution, load_person
from settlement.wire import (
    PARTS,
    Accumulators,
    FeeLine,
    Person,
    PreSettlement,
    Refund,
    RefundParts,
    Settlement,
    SettlementRecord,
    Visit,
    Void,
    yuan,
)

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
    row = tx.one(f"SELECT {_VISIT_COLS}, register_key, card_no FROM med_visits WHERE mdtrt_id = ?"
                 f"{tx.for_update if lock else ''}", (mdtrt_id,))
    if row is None:
        raise UnknownVisit(f"no registered visit {mdtrt_id!r}", mdtrt_id=mdtrt_id)
    return row


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


def _record_reversal(tx: Tx, key: str, setl_id: str, kind: str, institution: str, at: str,
                     parts: RefundParts) -> None:
    tx.execute("INSERT INTO med_reversals (key, setl_id, kind, institution, at, medfee_sumamt, fund_pay_sumamt,"
               " acct_pay, psn_cash_pay) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (key, setl_id, kind, institution, at, parts.medfee_sumamt, parts.fund_pay_sumamt, parts.acct_pay,
                parts.psn_cash_pay))


def mdtrt_id_for(register_key: str) -> str:
    return "MD" + hashlib.blake2b(register_key.encode(), digest_size=10).hexdigest().upper()


class Medical:
    """The medical flows: visits and their settlements, refunds and voids."""

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
        if care not in CARES:
            raise InvalidRequest(f"unknown kind of care {care!r}; use outpatient or inpatient", care=care)
        day = begntime or self.clock.today()
        mdtrt_id = mdtrt_id_for(key)

        def unit(tx: Tx) -> Visit:
            person = load_person(tx, person_id)
            inst = load_institution(tx, institution)
            _check_alive(person, day)
            self.cards.check(tx, person_id, card_id=card_id, card_no=card_no)
            self.policies.get(person.region, day).scheme(person.category, care)  # UnknownPolicy early
            if tx.execute(
                "INSERT INTO med_visits (mdtrt_id, register_key, person_id, institution, treatment_region, level,"
                " care, begntime, card_no, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'registered', ?)"
                " ON CONFLICT (mdtrt_id) DO NOTHING",
                (mdtrt_id, key, person_id, inst.code, inst.region, inst.level, care, day.isoformat(), card_no,
                 self.clock.stamp()),
            ) and tx.one("SELECT 1 FROM med_cancelled_visits WHERE mdtrt_id = ?", (mdtrt_id,)):
                raise AlreadyReversed(f"visit {mdtrt_id} registered under {key} was cancelled; register again "
                                      "with a new serial number", key=key, mdtrt_id=mdtrt_id)
            row = _load_visit(tx, mdtrt_id)
            if (row["register_key"], row["person_id"], row["institution"], row["care"], row["card_no"]) != (
                key, person_id, institution, care, card_no
            ) or (begntime is not None and row["begntime"] != begntime.isoformat()):
                raise IdempotencyConflict(f"key {key!r} registered a different visit", key=key)
            return _visit(row, person)

        try:
            return self.store.run(unit)
        except DeathReported as e:
            self.fraud.record_death_attempt(f"register {key}", e)
            raise

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
    def _compute(
        self, tx: Tx, mdtrt_id: str, lines: list[FeeLine], use_account: bool, *, lock: bool,
        balance: int | None = None,
    ) -> tuple[dict[str, Any], Person, Institution, int, Split]:
        """Load the visit and person (locked when settling) and split the bill on today's accumulators."""
        row = _load_visit(tx, mdtrt_id, lock=lock)
        person = load_person(tx, row["person_id"], lock=lock)
        inst = load_institution(tx, row["institution"])
        day = dt.date.fromisoformat(row["begntime"])
        _check_alive(person, day)
        policy = self.policies.get(person.region, day)
        year = self.clock.today().year
        acc = load_accumulators(tx, person.person_id, year)
        if balance is None:  # inside a write unit the ledger reads through the same transaction
            balance = self.ledger.balance(chart.personal_account(person.person_id))
        split = split_bill(policy, category=person.category, care=row["care"], level=row["level"], lines=lines,
                           acc=acc, assistance_class=person.assistance_class, account_balance=balance,
                           use_account=use_account, catalogue=self.policies.get(inst.region, day))
        return row, person, inst, year, split

    def presettle(self, mdtrt_id: str, lines: Sequence[FeeLine], *, use_account: bool = True) -> PreSettlement:
        """Compute the split as a settlement now would (2206). Posts and changes nothing."""
        lines = _lines(lines)
        balance = self.ledger.balance(chart.personal_account(self.visit(mdtrt_id).person_id))

        def q(tx: Tx) -> PreSettlement:
            _, person, inst, _, split = self._compute(tx, mdtrt_id, lines, use_account, lock=False, balance=balance)
            return PreSettlement(mdtrt_id=mdtrt_id, person_id=person.person_id, insured_region=person.region,
                                 treatment_region=inst.region, breakdown=split.breakdown)

        return self.store.read(q)

    def settle(self, key: str, mdtrt_id: str, lines: Sequence[FeeLine], *, use_account: bool = True,
               card_id: str | None = None, card_no: str | None = None) -> Settlement:
        """Settle a registered visit (2207): post the split, update the accumulators, mark the visit settled.
        The card presented (or, when none is, the card the visit was registered with) must be the person's
        active card: a card reported lost since the registration settles nothing.

        Idempotent on `key`: a repeat returns the first Settlement (replayed=True)."""
        lines = _lines(lines)
        rhash = request_hash("medical.settle", [mdtrt_id, [[ln.cls, ln.amount, ln.over_limit] for ln in lines],
                                                use_account])

        def build(tx: Tx) -> Draft:
            row, person, inst, year, split = self._compute(tx, mdtrt_id, lines, use_account, lock=True)
            shown = card_id is not None or card_no is not None
            self.cards.check(tx, person.person_id, card_id=card_id, card_no=card_no if shown else row["card_no"])
            now = self.clock.now()
            if tx.execute("INSERT INTO med_settlements (key, status) VALUES (?, 'settled')"
                          " ON CONFLICT (key) DO NOTHING", (key,)) == 0:
                raise AlreadyReversed(
                    f"settlement {key} was voided by its terminal before it arrived; settle again with a new "
                    "serial number", key=key)
            if row["status"] != "registered":
                raise InvalidState(f"visit {mdtrt_id} is already settled under {row['settle_key']}; "
                                   "void or refund that settlement first", mdtrt_id=mdtrt_id,
                                   settle_key=row["settle_key"])
            b = split.breakdown
            parts = {p: getattr(b, p) for p in PARTS}
            if person.region != inst.region:
                chart.open_between(self.ledger, inst.region, person.region)
            add_to_accumulators(tx, person.person_id, year, split.deltas)
            remaining = {"bill": b.medfee_sumamt, "parts": parts,
                         "counters": {c: v for c, v in split.deltas.items() if v}}
            tx.execute(
                "UPDATE med_settlements SET mdtrt_id = ?, person_id = ?, institution = ?, year = ?, care = ?,"
                " settled_at = ?, remaining = ? WHERE key = ?",
                (mdtrt_id, person.person_id, inst.code, year, row["care"], self.clock.stamp(now), json.dumps(remaining),
                 key),
            )
            tx.execute("UPDATE med_visits SET status = 'settled', settle_key = ? WHERE mdtrt_id = ?", (key, mdtrt_id))
            self.fraud.check_card_use(tx, person.person_id, inst.code, now, key)
            result = Settlement(
                setl_id=key, mdtrt_id=mdtrt_id, person_id=person.person_id, institution=inst.code,
                insured_region=person.region, treatment_region=inst.region,
                cross_region=person.region != inst.region, setl_time=self.clock.stamp(now), year=year, breakdown=b,
            )
            return Draft("medical.settle", _transfers(parts, person, inst),
                         payload={"result": result.model_dump(mode="json")})

        try:
            posting = self.ledger.post_with(key, build, request_hash=rhash)
        except DeathReported as e:
            self.fraud.record_death_attempt(f"settle {key} of visit {mdtrt_id}", e)
            raise
        return self._result(posting, Settlement, "medical.settle")

    @staticmethod
    def _result(posting: Posting, model: type[Any], kind: str) -> Any:
        if posting.kind != kind or "result" not in posting.payload:
            raise IdempotencyConflict(f"key {posting.key!r} was used for a {posting.kind}", key=posting.key)
        return model.model_validate({**posting.payload["result"], "replayed": posting.replayed})

    def _lock_settlement(self, tx: Tx, setl_id: str) -> dict[str, Any]:
        row = tx.one(f"SELECT key, status, mdtrt_id, person_id, institution, year, care, void_key, remaining"
                     f" FROM med_settlements WHERE key = ?{tx.for_update}", (setl_id,))
        if row is None or row["status"] == "void_before_arrival":
            raise UnknownTransaction(f"no settlement {setl_id!r}", key=setl_id)
        return row

    # -- refund ----------------------------------------------------------------------------------------
    def refund(self, key: str, setl_id: str, amount: int | None = None, *, card_id: str | None = None,
               card_no: str | None = None) -> Refund:
        """Refund `amount` fen of settlement `setl_id` (all that is left when None), linked to it. A card
        presented (a refund to the card) must be the person's active card."""
        if amount is not None:
            fen(amount, allow_zero=False, field="amount")
        rhash = request_hash("medical.refund", [setl_id, amount])

        def build(tx: Tx) -> Draft:
            row = self._lock_settlement(tx, setl_id)
            if row["status"] == "voided":
                raise AlreadyReversed(f"settlement {setl_id} was voided by {row['void_key']}", key=setl_id)
            person = load_person(tx, row["person_id"], lock=True)
            self.cards.check(tx, person.person_id, card_id=card_id, card_no=card_no)
            inst = load_institution(tx, row["institution"])
            rem = json.loads(row["remaining"])
            left = rem["bill"]
            want = left if amount is None else amount
            if want > left or want == 0:
                raise RefundTooLarge(
                    f"refund of {yuan(want)} yuan exceeds the {yuan(left)} yuan of settlement {setl_id} "
                    "not yet refunded", key=setl_id, refundable=left, requested=want)
            parts = allocate(want, {p: rem["parts"][p] for p in PARTS})
            back = self._rollback(rem, parts, want)
            add_to_accumulators(tx, person.person_id, row["year"], {c: -v for c, v in back.items()})
            rem["bill"] -= want
            rem["parts"] = {p: rem["parts"][p] - parts[p] for p in PARTS}
            rem["counters"] = {c: v - back.get(c, 0) for c, v in rem["counters"].items() if v - back.get(c, 0)}
            tx.execute("UPDATE med_settlements SET remaining = ? WHERE key = ?", (json.dumps(rem), setl_id))
            result = Refund(refund_key=key, setl_id=setl_id, refund=_refund_parts(parts), refundable_after=rem["bill"])
            _record_reversal(tx, key, setl_id, "refund", inst.code, self.clock.stamp(), result.refund)
            return Draft("medical.refund", _transfers(parts, person, inst, back=True), links_to=setl_id,
                         payload={"result": result.model_dump(mode="json")})

        return self._result(self.ledger.post_with(key, build, request_hash=rhash), Refund, "medical.refund")

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
    def void(self, key: str, setl_id: str) -> Void:
        """Reverse settlement `setl_id` (what is left of it after refunds), or tombstone it if unknown."""
        if key == setl_id:
            raise InvalidRequest("a void needs its own key")

        def unit(tx: Tx) -> Void:
            other = self.ledger.get(setl_id)
            if other is not None and other.kind != "medical.settle":
                raise InvalidState(f"{setl_id} is a {other.kind}, not a settlement; only settlements are voided",
                                   key=setl_id, kind=other.kind)
            if tx.execute("INSERT INTO med_settlements (key, status, void_key, settled_at) VALUES"
                          " (?, 'void_before_arrival', ?, ?) ON CONFLICT (key) DO NOTHING",
                          (setl_id, key, self.clock.stamp())) == 1:
                return Void(void_key=key, setl_id=setl_id, status="voided_before_arrival")
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
                return self._result(replace(first, replayed=True), Void, "reversal")
            person = load_person(tx, row["person_id"], lock=True)
            rem = json.loads(row["remaining"])
            result = Void(void_key=key, setl_id=setl_id, status="voided",
                          reversed=_refund_parts({p: rem["parts"][p] for p in PARTS}))
            posting = self.ledger.reverse(key, setl_id, payload={"result": result.model_dump(mode="json")})
            if posting.replayed:  # the key reversed this settlement before, in a unit that also did the rest
                return self._result(posting, Void, "reversal")
            add_to_accumulators(tx, person.person_id, row["year"], {c: -v for c, v in rem["counters"].items()})
            assert result.reversed is not None
            _record_reversal(tx, key, setl_id, "void", row["institution"], posting.created_at, result.reversed)
            tx.execute("UPDATE med_settlements SET status = 'voided', void_key = ?, remaining = ? WHERE key = ?",
                       (key, json.dumps({"bill": 0, "parts": dict.fromkeys(PARTS, 0), "counters": {}}), setl_id))
            tx.execute("UPDATE med_visits SET status = 'registered', settle_key = NULL WHERE mdtrt_id = ?",
                       (row["mdtrt_id"],))
            return result

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
