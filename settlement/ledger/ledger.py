"""Double-entry ledger: accounts, balanced idempotent postings, refunds and reversals.

Model (after TigerBeetle's): an *account* holds integer fen as two running totals, `debits_posted`
and `credits_posted`. A *transfer* moves `amount` (> 0 fen) from its `debit` account to its `credit`
account. **Sign convention: balance = credits_posted - debits_posted**, so the debit side gives and
the credit side receives: `Transfer(debit="POOL", credit="HOSP", amount=100)` lowers POOL's balance
by 100 and raises HOSP's by 100. A *posting* is an atomic group of transfers under one idempotency
key (built by the caller, e.g. "terminal_id:terminal_serial"); it is applied whole or not at all.

Invariants (checked by `check_invariants()`, tested after every step of a state-machine test):
  1. Double entry: every transfer debits one account and credits another by the same positive amount,
     so every posting sums to zero and the sum of all balances is 0.
  2. No account with may_go_negative=False (personal medical accounts, pensioner accounts) ends a
     posting below zero; a posting that would do so raises InsufficientFunds and posts nothing.
  3. A key is posted at most once. Posting the same key again returns the first posting unchanged
     (with `replayed=True`); a different request under the same key raises IdempotencyConflict.
  4. A linked posting (refund or reversal) links to an original (never to another link); each of its
     transfers moves money back along a transfer of the original, and the total moved back per
     (debit, credit) pair never exceeds the original's; an original is reversed at most once, and
     nothing links to it after that (AlreadyReversed).
  5. Balances equal the journal: each account's debits_posted/credits_posted equal the sums of the
     transfers that name it.
Failures raise a typed `settlement.errors` exception and change nothing. `post()` returns only once
its posting is durably committed (see the store).

Higher layers that must update their own tables atomically with a posting (e.g. yearly
accumulators) use one of:
  * `ledger.post(..., extra=fn)`: `fn(tx, posting)` runs in the same unit, only if the key is new;
  * `ledger.post_with(key, build, request_hash=...)`: `build(tx) -> Draft` runs only if the key is
    new, inside the unit, after the key is claimed (so it may read-modify-write accumulators and
    compute the transfers from them; a retry with the same key never runs `build` twice);
  * `with ledger.transaction() as tx:` ... `ledger.post(...)` ...: one unit for several steps
    (inside it, `post` of an existing key returns the first posting with `replayed=True` and the
    caller's other writes still commit: check `replayed`, or prefer `post_with`).

Tables (ledger_accounts, ledger_postings, ledger_transfers; see `schema()`) belong to the ledger;
other modules may read them. Plain posts (no links_to, no extra) from concurrent callers are
applied as one batch by `_post_many` (one pass of SQL per group commit); the rest run one by one.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from typing import Any

from settlement.errors import (
    AlreadyReversed,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidAmount,
    InvalidRequest,
    InvalidState,
    InvariantViolation,
    RefundTooLarge,
    UnknownAccount,
    UnknownTransaction,
)
from settlement.ledger.money import fen
from settlement.ledger.store.base import Store, Tx

MAX_AMOUNT = 10**15
"""Largest single transfer in fen (10 trillion yuan): keeps every total far inside 64-bit integers."""

MAX_CODE_LENGTH = 200
REVERSAL = "reversal"
"""Posting kind reserved for `Ledger.reverse()`."""
POSTED, REVERSED = "posted", "reversed"
_PENDING = "(pending)"


class AccountKind(StrEnum):
    """What an account stands for. Kinds marked * may not go negative by default."""

    POOLED_FUND = "pooled_fund"  # 统筹基金
    LARGE_AMOUNT_FUND = "large_amount_fund"  # 大额医疗互助 (employees, hifob_pay)
    CRITICAL_ILLNESS_FUND = "critical_illness_fund"  # 大病保险 (hifmi_pay)
    MEDICAL_ASSISTANCE_FUND = "medical_assistance_fund"  # 医疗救助 (maf_pay)
    PERSONAL_ACCOUNT = "personal_account"  # * 个人账户 (acct_pay)
    HOSPITAL_PAYABLE = "hospital_payable"  # what the fund owes a designated institution
    PENSION_FUND = "pension_fund"
    PENSIONER_ACCOUNT = "pensioner_account"  # *
    CASH = "cash"  # cash collected at a counter
    PATIENT_CASH = "patient_cash"  # what patients paid out of pocket (psn_cash_pay): a source
    INTERREGIONAL_RECEIVABLE = "interregional_receivable"
    INTERREGIONAL_PAYABLE = "interregional_payable"
    EXTERNAL = "external"  # money entering or leaving the books: contributions, bank, allocations
    SUSPENSE = "suspense"  # unexplained differences found by reconciliation


NON_NEGATIVE_KINDS = frozenset({AccountKind.PERSONAL_ACCOUNT, AccountKind.PENSIONER_ACCOUNT})


@dataclass(frozen=True, slots=True)
class Account:
    """A ledger account. `may_go_negative=False` makes the ledger refuse to overdraw it."""

    code: str
    kind: AccountKind
    region: str | None
    owner: str | None
    may_go_negative: bool


@dataclass(frozen=True, slots=True)
class Transfer:
    """Move `amount` fen (int > 0) from account `debit` to account `credit` (balance = credits - debits)."""

    debit: str
    credit: str
    amount: int
    memo: str = ""

    def __post_init__(self) -> None:
        a, d, c = self.amount, self.debit, self.credit
        if type(a) is not int or a <= 0 or a > MAX_AMOUNT:
            fen(a, allow_zero=False, field="amount")  # raises InvalidAmount for bool/float/str/<=0
            raise InvalidAmount(f"amount {a} exceeds the maximum of {MAX_AMOUNT} fen", field="amount")
        if (
            type(d) is not str
            or type(c) is not str
            or not 0 < len(d) <= MAX_CODE_LENGTH
            or not 0 < len(c) <= MAX_CODE_LENGTH
            or d == c
            or type(self.memo) is not str
        ):
            _check_code(d, "debit")
            _check_code(c, "credit")
            if d == c:
                raise InvalidRequest(f"transfer debits and credits the same account {d!r}")
            raise InvalidRequest("memo must be a string")


@dataclass(frozen=True, slots=True)
class Posting:
    """A committed group of transfers. `status` is "posted", or "reversed" once a reversal links to it.

    `replayed` is True when this object answers a repeat of an existing key (not part of equality).
    """

    key: str
    kind: str
    transfers: tuple[Transfer, ...]
    links_to: str | None
    payload: dict[str, Any] = field(hash=False)
    created_at: str
    status: str
    request_hash: str = field(default="", compare=False, repr=False)
    replayed: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class Draft:
    """What `post_with`'s builder returns: the posting to make under the claimed key."""

    kind: str
    transfers: Sequence[Transfer]
    links_to: str | None = None
    payload: dict[str, Any] | None = None


def _check_code(code: object, what: str) -> None:
    if type(code) is not str or not code or len(code) > MAX_CODE_LENGTH:
        raise InvalidRequest(f"{what} must be a non-empty string of at most {MAX_CODE_LENGTH} characters")


_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def fingerprint(kind: str, transfers: Sequence[Transfer], links_to: str | None) -> str:
    """The default request fingerprint: kind, links_to and the transfers (not the payload)."""
    # fields joined by the ASCII unit separator (a collision needs that character in a code or memo)
    parts = [kind, links_to or ""]
    for t in transfers:
        parts += (t.debit, t.credit, str(t.amount), t.memo)
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()


_second: tuple[int, str] = (0, "")


def _now() -> str:
    """UTC time as ISO 8601 with microseconds ("2025-01-02T03:04:05.123456+00:00"), cheaply."""
    global _second
    sec, us = divmod(time.time_ns() // 1000, 1_000_000)
    cached = _second
    if cached[0] != sec:
        cached = _second = (sec, datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{cached[1]}.{us:06d}+00:00"


def _dump_payload(payload: dict[str, Any] | None) -> str:
    if payload is None:
        return "{}"
    if not isinstance(payload, dict):
        raise InvalidRequest("payload must be a dict")
    try:
        return _canonical(payload)
    except (TypeError, ValueError) as e:
        raise InvalidRequest(f"payload is not JSON-serialisable: {e}") from e


def _check_transfers(transfers: object) -> tuple[Transfer, ...]:
    if isinstance(transfers, (str, bytes)) or not isinstance(transfers, Iterable):
        raise InvalidRequest("transfers must be a sequence of Transfer")
    ts = tuple(transfers)
    if not ts:
        raise InvalidRequest("a posting needs at least one transfer")
    for t in ts:
        if type(t) is not Transfer:
            raise InvalidRequest(f"not a Transfer: {t!r}")
    return ts


def _check_kind(kind: object) -> str:
    if type(kind) is not str or not kind or len(kind) > MAX_CODE_LENGTH:
        raise InvalidRequest("kind must be a non-empty string")
    if kind in (REVERSAL, _PENDING):
        raise InvalidRequest(f"kind {kind!r} is reserved; use Ledger.reverse()")
    return kind


def schema(dialect: str) -> list[str]:
    """The ledger's DDL for a store dialect ("sqlite" or "postgres")."""
    seq = (
        "seq INTEGER PRIMARY KEY"
        if dialect == "sqlite"
        else "seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
    )
    # SQLite: accounts and transfers are clustered on their primary key (one b-tree, not two)
    without_rowid = " WITHOUT ROWID" if dialect == "sqlite" else ""
    return [
        f"""CREATE TABLE IF NOT EXISTS ledger_accounts (
            code TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            region TEXT,
            owner TEXT,
            may_go_negative INTEGER NOT NULL CHECK (may_go_negative IN (0, 1)),
            debits_posted BIGINT NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
            credits_posted BIGINT NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
            created_at TEXT NOT NULL,
            CHECK (may_go_negative = 1 OR credits_posted >= debits_posted)
        ){without_rowid}""",
        f"""CREATE TABLE IF NOT EXISTS ledger_postings (
            {seq},
            key TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            links_to TEXT REFERENCES ledger_postings (key),
            payload TEXT NOT NULL,
            request_hash TEXT NOT NULL,
            created_at TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('posted', 'reversed'))
        )""",
        "CREATE INDEX IF NOT EXISTS ledger_postings_links_to ON ledger_postings (links_to)",
        f"""CREATE TABLE IF NOT EXISTS ledger_transfers (
            posting_seq BIGINT NOT NULL REFERENCES ledger_postings (seq),
            idx INTEGER NOT NULL,
            debit TEXT NOT NULL REFERENCES ledger_accounts (code),
            credit TEXT NOT NULL REFERENCES ledger_accounts (code),
            amount BIGINT NOT NULL CHECK (amount > 0),
            memo TEXT NOT NULL,
            PRIMARY KEY (posting_seq, idx),
            CHECK (debit <> credit)
        ){without_rowid}""",
    ]


_CLAIM = (
    "INSERT INTO ledger_postings (key, kind, payload, request_hash, created_at, status)"
    " VALUES (?, ?, ?, ?, ?, 'posted') ON CONFLICT (key) DO NOTHING RETURNING seq"
)
# Multi-row statements: one statement (one sqlite3_step, one round trip) per up to _ROWS rows.
_ROWS = 64
_CLAIM_HEAD = "INSERT INTO ledger_postings (key, kind, payload, request_hash, created_at, status) VALUES "
_CLAIM_ROW = "(?, ?, ?, ?, ?, 'posted')"
_CLAIM_TAIL = " ON CONFLICT (key) DO NOTHING RETURNING key, seq"
_JOURNAL_HEAD = "INSERT INTO ledger_transfers (posting_seq, idx, debit, credit, amount, memo) VALUES "
_JOURNAL_ROW = "(?, ?, ?, ?, ?, ?)"
_APPLY_HEAD = (
    "UPDATE ledger_accounts SET debits_posted = debits_posted + v.column2,"
    " credits_posted = credits_posted + v.column3 FROM (VALUES "
)
_APPLY_TAIL = ") AS v WHERE code = v.column1"
_APPLY = (
    "UPDATE ledger_accounts SET debits_posted = debits_posted + ?, credits_posted = credits_posted + ?"
    " WHERE code = ?"
)


class Ledger:
    """The ledger over a store. Thread-safe; every write is one atomic, durable unit of the store."""

    def __init__(self, store: Store, *, stamp: Callable[[], str] | None = None) -> None:
        """`stamp()` gives the UTC ISO 8601 time written on accounts and postings (default: the wall
        clock); the engine passes its own clock so that postings fall on the business day it reasons in."""
        self.store = store
        self._stamp = stamp or _now
        self._may_go_negative: dict[str, bool] = {}  # immutable per account: a cache, never a truth
        store.ensure_schema(schema(store.dialect))

    def transaction(self) -> Any:
        """`with ledger.transaction() as tx:` one atomic unit spanning several ledger calls and SQL."""
        return self.store.transaction()

    # -- accounts ----------------------------------------------------------------------------------
    def open_account(
        self,
        code: str,
        kind: AccountKind | str,
        *,
        region: str | None = None,
        owner: str | None = None,
        may_go_negative: bool | None = None,
    ) -> Account:
        """Create an account, or return it if it exists with the same attributes (else IdempotencyConflict).

        `may_go_negative` defaults to False for personal and pensioner accounts, True otherwise; when
        None and the account exists, the existing setting is accepted.
        """
        _check_code(code, "account code")
        try:
            k = AccountKind(kind)
        except ValueError:
            raise InvalidRequest(f"unknown account kind {kind!r}") from None
        for name, v in (("region", region), ("owner", owner)):
            if v is not None and type(v) is not str:
                raise InvalidRequest(f"{name} must be a string or None")
        if may_go_negative is not None and type(may_go_negative) is not bool:
            raise InvalidRequest("may_go_negative must be a bool")
        mgn = may_go_negative if may_go_negative is not None else k not in NON_NEGATIVE_KINDS

        def unit(tx: Tx) -> Account:
            tx.execute(
                "INSERT INTO ledger_accounts (code, kind, region, owner, may_go_negative, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (code) DO NOTHING",
                (code, k.value, region, owner, int(mgn), self._stamp()),
            )
            acct = self._account(tx, code)
            assert acct is not None
            wanted = (k, region, owner, acct.may_go_negative if may_go_negative is None else mgn)
            if (acct.kind, acct.region, acct.owner, acct.may_go_negative) != wanted:
                raise IdempotencyConflict(f"account {code!r} exists with different attributes", account=code)
            return acct

        acct = self.store.run(unit)
        self._may_go_negative[code] = acct.may_go_negative
        return acct

    def account(self, code: str) -> Account:
        """The account with this code, or UnknownAccount."""
        acct = self.store.read(lambda tx: self._account(tx, code))
        if acct is None:
            raise UnknownAccount(f"no account {code!r}", account=code)
        return acct

    def accounts(self) -> list[Account]:
        """All accounts, by code."""
        rows = self.store.read(
            lambda tx: tx.rows(
                "SELECT code, kind, region, owner, may_go_negative FROM ledger_accounts ORDER BY code"
            )
        )
        return [Account(c, AccountKind(k), r, o, bool(m)) for c, k, r, o, m in rows]

    @staticmethod
    def _account(tx: Tx, code: str) -> Account | None:
        rows = tx.rows(
            "SELECT kind, region, owner, may_go_negative FROM ledger_accounts WHERE code = ?", (code,)
        )
        if not rows:
            return None
        k, r, o, m = rows[0]
        return Account(code, AccountKind(k), r, o, bool(m))

    def balance(self, account_code: str) -> int:
        """credits_posted - debits_posted of one account, in fen."""
        return self.balances([account_code])[account_code]

    def balances(self, codes: Iterable[str]) -> dict[str, int]:
        """Balances of several accounts; UnknownAccount if any is missing."""
        wanted = list(dict.fromkeys(codes))
        if not wanted:
            return {}
        marks = ",".join("?" * len(wanted))
        rows = self.store.read(
            lambda tx: tx.rows(
                f"SELECT code, credits_posted - debits_posted FROM ledger_accounts WHERE code IN ({marks})",
                wanted,
            )
        )
        found = {c: int(b) for c, b in rows}
        for c in wanted:
            if c not in found:
                raise UnknownAccount(f"no account {c!r}", account=c)
        return {c: found[c] for c in wanted}

    # -- postings ----------------------------------------------------------------------------------
    def post(
        self,
        key: str,
        kind: str,
        transfers: Sequence[Transfer],
        *,
        links_to: str | None = None,
        payload: dict[str, Any] | None = None,
        request_hash: str | None = None,
        extra: Callable[[Tx, Posting], None] | None = None,
    ) -> Posting:
        """Post `transfers` atomically under idempotency `key`; return the (first) posting.

        `links_to` makes this a refund of that original posting (bounded by what it moved).
        `request_hash` fingerprints the request for repeats; by default kind+links_to+transfers.
        `extra(tx, posting)` runs in the same unit when the key is new (higher layers' own tables).
        Raises InvalidAmount / InvalidRequest / UnknownAccount / InsufficientFunds / UnknownTransaction /
        RefundTooLarge / AlreadyReversed / InvalidState / IdempotencyConflict; then nothing is posted.
        """
        _check_code(key, "key")
        kind = _check_kind(kind)
        ts = _check_transfers(transfers)
        if links_to is not None:
            _check_code(links_to, "links_to")
            if links_to == key:
                raise InvalidRequest("a posting cannot link to itself")
        payload_json = _dump_payload(payload)
        rhash = request_hash if request_hash is not None else fingerprint(kind, ts, links_to)
        if type(rhash) is not str:
            raise InvalidRequest("request_hash must be a string")
        created = self._stamp()
        if links_to is None and extra is None:  # the hot path: concurrent posts share one commit and SQL
            req = _post_req(key, kind, ts, payload, payload_json, rhash, created)
            return self.store.run_batched(self._post_many, req)  # type: ignore[no-any-return]

        def unit(tx: Tx) -> Posting:
            seq = _claim(tx, key, kind, payload_json, rhash, created)
            if seq is None:
                return self._replay(tx, key, rhash)
            return self._apply(tx, seq, key, kind, ts, links_to, payload_json, created, rhash, extra)

        return self.store.run(unit)

    def post_with(self, key: str, build: Callable[[Tx], Draft], *, request_hash: str) -> Posting:
        """Claim `key`; if new, call `build(tx)` in the same unit and post the Draft it returns.

        For postings computed from state the caller updates in the same unit (accumulators): a repeat
        of `key` returns the first posting without calling `build` (IdempotencyConflict if
        `request_hash`, the fingerprint of the caller's raw request, differs). If `build` raises,
        nothing is posted and nothing it wrote is kept.
        """
        _check_code(key, "key")
        if type(request_hash) is not str or not request_hash:
            raise InvalidRequest("post_with needs the request_hash of the caller's request")
        created = self._stamp()

        def unit(tx: Tx) -> Posting:
            seq = _claim(tx, key, _PENDING, "{}", request_hash, created)
            if seq is None:
                return self._replay(tx, key, request_hash)
            draft = build(tx)
            if type(draft) is not Draft:
                raise InvalidRequest("build must return a Draft")
            kind = _check_kind(draft.kind)
            ts = _check_transfers(draft.transfers)
            if draft.links_to is not None:
                _check_code(draft.links_to, "links_to")
                if draft.links_to == key:
                    raise InvalidRequest("a posting cannot link to itself")
            payload_json = _dump_payload(draft.payload)
            tx.execute(
                "UPDATE ledger_postings SET kind = ?, payload = ? WHERE key = ?", (kind, payload_json, key)
            )
            return self._apply(
                tx, seq, key, kind, ts, draft.links_to, payload_json, created, request_hash, None
            )

        return self.store.run(unit)

    def reverse(self, key: str, original_key: str, *, payload: dict[str, Any] | None = None) -> Posting:
        """Undo `original_key` (冲正): post the opposite of its transfers (less any refunds), linked to it.

        A second reversal of the same original raises AlreadyReversed; repeating `key` returns the
        first reversal.
        """
        _check_code(key, "key")
        _check_code(original_key, "original_key")
        if key == original_key:
            raise InvalidRequest("a reversal needs its own key")
        payload_json = _dump_payload(payload)
        rhash = hashlib.blake2b(f"reversal\x00{original_key}".encode(), digest_size=16).hexdigest()
        created = self._stamp()

        def unit(tx: Tx) -> Posting:
            seq = _claim(tx, key, REVERSAL, payload_json, rhash, created)
            if seq is None:
                return self._replay(tx, key, rhash)
            original, remaining = self._lock_original(tx, original_key)
            ts: list[Transfer] = []
            for t in original.transfers:  # reverse each transfer of the original, less what came back
                pair = (t.debit, t.credit)
                give = min(t.amount, remaining.get(pair, 0))
                if give > 0:
                    remaining[pair] -= give
                    ts.append(Transfer(t.credit, t.debit, give, t.memo))
            if not ts:
                raise AlreadyReversed(f"posting {original_key!r} was fully refunded", key=original_key)
            tx.execute("UPDATE ledger_postings SET status = 'reversed' WHERE key = ?", (original_key,))
            return self._apply(
                tx,
                seq,
                key,
                REVERSAL,
                tuple(ts),
                original_key,
                payload_json,
                created,
                rhash,
                None,
                checked=True,
            )

        return self.store.run(unit)

    def get(self, key: str) -> Posting | None:
        """The posting under `key`, or None."""
        return self.store.read(lambda tx: self._load(tx, key))

    def linked(self, original_key: str) -> list[Posting]:
        """Refunds and reversals linked to `original_key`, oldest first."""

        def q(tx: Tx) -> list[Posting]:
            keys = tx.rows("SELECT key FROM ledger_postings WHERE links_to = ? ORDER BY seq", (original_key,))
            return [p for (k,) in keys if (p := self._load(tx, k)) is not None]

        return self.store.read(q)

    def refunded(self, original_key: str) -> dict[tuple[str, str], int]:
        """Fen already moved back, per (debit, credit) pair *of the original*, by linked postings."""
        return self.store.read(lambda tx: self._refunded(tx, original_key))

    def refundable(self, original_key: str) -> dict[tuple[str, str], int]:
        """Fen that may still be moved back per (debit, credit) pair of the original (0 once reversed)."""

        def q(tx: Tx) -> dict[tuple[str, str], int]:
            original = self._load(tx, original_key)
            if original is None:
                raise UnknownTransaction(f"no posting {original_key!r}", key=original_key)
            total = _pair_sums(original.transfers)
            if original.status == REVERSED:
                return {p: 0 for p in total}
            back = self._refunded(tx, original_key)
            return {p: a - back.get(p, 0) for p, a in total.items()}

        return self.store.read(q)

    def postings(self, *, after_seq: int = 0, limit: int = 1000) -> list[tuple[int, Posting]]:
        """(seq, posting) after `after_seq`, in seq order: for reconciliation and exports.

        seq is insertion order; on SQLite that is commit order. On PostgreSQL a lower seq may commit
        after a higher one, so a reader paging by seq must first lock out writers (as reconcile does)
        or re-read a margin."""

        def q(tx: Tx) -> list[tuple[int, Posting]]:
            rows = tx.rows(
                "SELECT seq, key FROM ledger_postings WHERE seq > ? AND kind <> ? ORDER BY seq LIMIT ?",
                (after_seq, _PENDING, limit),
            )
            return [(s, p) for s, k in rows if (p := self._load(tx, k)) is not None]

        return self.store.read(q)

    # -- internals (run inside a unit) -------------------------------------------------------------
    def _post_many(self, tx: Tx, reqs: list[_PostReq]) -> list[Posting | Exception]:
        """Apply plain posts handed over together by the store; one result per request, in order.

        One request: claim the key, check, apply; raise on error (the store undoes the unit).
        Several: claim all keys with one statement, read (on a server: lock in code order) the
        accounts to check, decide every request in Python against running balances, then delete the
        refused requests' claims and write the rest with two statements. A refused request gets its
        exception as its result and keeps nothing. Anything unexpected raises, and the store then
        runs the requests one by one.
        """
        if len(reqs) == 1:
            r = reqs[0]
            seq = _claim(tx, r.key, r.kind, r.payload_json, r.rhash, r.created)
            if seq is None:
                return [self._replay(tx, r.key, r.rhash)]
            return [
                self._apply(
                    tx, seq, r.key, r.kind, r.ts, None, r.payload_json, r.created, r.rhash, None, r.deltas
                )
            ]
        if len({r.key for r in reqs}) != len(reqs):
            raise _OneByOne("the same key twice in one batch")  # rare: let the store run them in order
        # 1. claim every key in one statement (in key order: a global lock order on a server);
        #    a key not returned was posted before, and its request is a repeat
        claimed: dict[str, int] = {}
        flat: list[Any] = []
        for r in sorted(reqs, key=lambda r: r.key):
            flat += r.claim
        for i in range(0, len(flat), _ROWS * 5):
            chunk = flat[i : i + _ROWS * 5]
            for k, seq in tx.rows(_values_sql(_CLAIM_HEAD, _CLAIM_ROW, len(chunk) // 5, _CLAIM_TAIL), chunk):
                claimed[k] = int(seq)
        # 2. read (on a server: lock, in code order) the accounts whose balance must be checked
        cache = self._may_go_negative
        need: set[str] = set()
        for r in reqs:
            if r.key in claimed:
                for c in r.deltas:
                    if c not in cache:
                        need.add(c)
                for c in r.debited:
                    if cache.get(c) is False:
                        need.add(c)
        running: dict[str, int] = {}  # balance as of the request being decided, for accounts to check
        if need:
            codes = sorted({c for r in reqs if r.key in claimed for c in r.deltas} if tx.for_update else need)
            found = set()
            for c, m, b in tx.rows(
                "SELECT code, may_go_negative, credits_posted - debits_posted FROM ledger_accounts"
                f" WHERE code IN ({_marks(len(codes))}) ORDER BY code{tx.for_update}",
                codes,
            ):
                found.add(c)
                cache[c] = bool(m)
                if not m:
                    running[c] = int(b)
            for c in codes:
                if c not in found:
                    cache.pop(c, None)  # unknown account
        # 3. decide each request, in arrival order, against the running balances
        results: list[Posting | Exception | None] = [None] * len(reqs)
        new: list[_PostReq] = []
        refused: list[int] = []
        for i, r in enumerate(reqs):
            if r.key not in claimed:
                continue  # answered below, as a repeat
            err = _overdraft(r, running, cache)
            if err is not None:
                results[i] = err
                refused.append(claimed[r.key])
                continue
            if running:
                for c, (d, cr) in r.deltas.items():
                    if c in running:
                        running[c] += cr - d
            new.append(r)
            results[i] = r.posting
        # 4. write: drop refused claims, move the money, journal the transfers
        if refused:
            tx.execute(f"DELETE FROM ledger_postings WHERE seq IN ({_marks(len(refused))})", refused)
        if new:
            journal: list[Any] = []
            total: dict[str, list[int]] = {}
            for r in new:
                jr = r.journal
                jr[0::6] = [claimed[r.key]] * len(r.ts)
                journal += jr
                for c, (d, cr) in r.deltas.items():
                    a = total.get(c)
                    if a is None:
                        total[c] = [d, cr]
                    else:
                        a[0] += d
                        a[1] += cr
            if not _apply_totals(tx, total):
                raise InvalidState("an account vanished during a batch")  # the store retries one by one
            _write_flat(tx, _JOURNAL_HEAD, _JOURNAL_ROW, 6, journal)
        for i, r in enumerate(reqs):
            if results[i] is None:  # posted before this batch
                try:
                    results[i] = self._replay(tx, r.key, r.rhash)
                except IdempotencyConflict as e:
                    results[i] = e
        return results  # type: ignore[return-value]

    def _apply(
        self,
        tx: Tx,
        seq: int,
        key: str,
        kind: str,
        ts: tuple[Transfer, ...],
        links_to: str | None,
        payload_json: str,
        created: str,
        rhash: str,
        extra: Callable[[Tx, Posting], None] | None,
        deltas: dict[str, list[int]] | None = None,
        *,
        checked: bool = False,
    ) -> Posting:
        if links_to is not None:
            if not checked:
                self._check_refund(tx, links_to, ts)
            tx.execute("UPDATE ledger_postings SET links_to = ? WHERE key = ?", (links_to, key))
        if deltas is None:
            deltas = _deltas(ts)
        codes = sorted(deltas)
        cache = self._may_go_negative
        risky = [c for c in codes if cache.get(c) is not True and deltas[c][0] > deltas[c][1]]
        if risky:
            # server store: lock every account in code order (a global lock order), then check;
            # single-writer store: nothing can interleave, read only the accounts that could overdraw
            self._check_funds(tx, codes if tx.for_update else risky, deltas)
        if not _apply_totals(tx, deltas):
            self._check_funds(tx, codes, deltas)  # raises UnknownAccount (cache was stale)
            raise InvalidState("accounts changed during the posting")  # pragma: no cover
        _journal(tx, [(seq, i, t.debit, t.credit, t.amount, t.memo) for i, t in enumerate(ts)])
        posting = Posting(key, kind, ts, links_to, json.loads(payload_json), created, POSTED, rhash)
        if extra is not None:
            extra(tx, posting)
        return posting

    def _check_funds(self, tx: Tx, codes: list[str], deltas: dict[str, list[int]]) -> None:
        """Lock the accounts (in code order) and refuse unknown ones and overdrafts."""
        where = "code = ?" if len(codes) == 1 else f"code IN ({','.join('?' * len(codes))}) ORDER BY code"
        rows = tx.rows(
            "SELECT code, may_go_negative, credits_posted - debits_posted FROM ledger_accounts"
            f" WHERE {where}{tx.for_update}",
            codes,
        )
        found = {c: (bool(m), int(b)) for c, m, b in rows}
        for code in codes:
            if code not in found:
                self._may_go_negative.pop(code, None)
                raise UnknownAccount(f"no account {code!r}", account=code)
            mgn, bal = found[code]
            self._may_go_negative[code] = mgn
            debit, credit = deltas[code]
            if not mgn and bal - debit + credit < 0:
                raise InsufficientFunds(
                    f"account {code!r} has {bal} fen, the posting needs {debit - credit}",
                    account=code,
                    balance=bal,
                    needed=debit - credit,
                )

    def _lock_original(self, tx: Tx, original_key: str) -> tuple[Posting, dict[tuple[str, str], int]]:
        """Lock an original posting for linking; return it and what may still move back per pair."""
        rows = tx.rows(f"SELECT key FROM ledger_postings WHERE key = ?{tx.for_update}", (original_key,))
        original = self._load(tx, original_key) if rows else None
        if original is None or original.kind == _PENDING:
            raise UnknownTransaction(f"no posting {original_key!r}", key=original_key)
        if original.links_to is not None or original.kind == REVERSAL:
            raise InvalidState(f"posting {original_key!r} is itself a refund or reversal", key=original_key)
        if original.status == REVERSED:
            raise AlreadyReversed(f"posting {original_key!r} was already reversed", key=original_key)
        total = _pair_sums(original.transfers)
        back = self._refunded(tx, original_key)
        return original, {p: a - back.get(p, 0) for p, a in total.items()}

    def _check_refund(self, tx: Tx, original_key: str, ts: tuple[Transfer, ...]) -> None:
        _, remaining = self._lock_original(tx, original_key)
        for (debit, credit), amount in _pair_sums(ts).items():
            pair = (credit, debit)  # a refund moves money back along a transfer of the original
            if pair not in remaining:
                raise InvalidRequest(
                    f"refund transfer {debit}->{credit} does not reverse any transfer of {original_key!r}",
                    key=original_key,
                )
            if amount > remaining[pair]:
                raise RefundTooLarge(
                    f"refund of {amount} fen {debit}->{credit} exceeds the {remaining[pair]} fen refundable",
                    key=original_key,
                    refundable=remaining[pair],
                    requested=amount,
                )

    @staticmethod
    def _refunded(tx: Tx, original_key: str) -> dict[tuple[str, str], int]:
        rows = tx.rows(
            "SELECT t.credit, t.debit, SUM(t.amount) FROM ledger_transfers t"
            " JOIN ledger_postings p ON p.seq = t.posting_seq WHERE p.links_to = ?"
            " GROUP BY t.credit, t.debit",
            (original_key,),
        )
        return {(d, c): int(a) for d, c, a in rows}

    def _replay(self, tx: Tx, key: str, rhash: str) -> Posting:
        posting = self._load(tx, key)
        assert posting is not None, key
        if posting.request_hash != rhash:
            raise IdempotencyConflict(f"key {key!r} was already used for a different request", key=key)
        return _replayed(posting)

    @staticmethod
    def _load(tx: Tx, key: str) -> Posting | None:
        rows = tx.rows(
            "SELECT seq, kind, links_to, payload, created_at, status, request_hash"
            " FROM ledger_postings WHERE key = ?",
            (key,),
        )
        if not rows:
            return None
        seq, kind, links_to, payload, created, status, rhash = rows[0]
        ts = tuple(
            Transfer(d, c, int(a), m)
            for d, c, a, m in tx.rows(
                "SELECT debit, credit, amount, memo FROM ledger_transfers WHERE posting_seq = ? ORDER BY idx",
                (seq,),
            )
        )
        return Posting(key, kind, ts, links_to, json.loads(payload), created, status, rhash)

    # -- invariants --------------------------------------------------------------------------------
    def check_invariants(self) -> None:
        """Check invariants 1-5 over the whole ledger; raise InvariantViolation listing every breach."""
        self.store.read(_check_all)


class _OneByOne(Exception):
    """Raised by a batch handler to have the store run the batch's requests one at a time."""


@dataclass(slots=True)
class _PostReq:
    """A validated plain post on its way to the store, with everything the writer needs precomputed
    by the caller's thread (the writer thread is the bottleneck; callers run while it waits on I/O)."""

    key: str
    kind: str
    ts: tuple[Transfer, ...]
    payload_json: str
    rhash: str
    created: str
    deltas: dict[str, list[int]]  # account -> [debited, credited]
    debited: tuple[str, ...]  # accounts whose balance the posting lowers
    posting: Posting  # the answer if it is posted
    claim: list[Any]  # ledger_postings values for the claim
    journal: list[Any]  # ledger_transfers values, flat, six per transfer, seq first (set by the writer)


_SCALARS = (str, int, bool, type(None))


def _post_req(
    key: str,
    kind: str,
    ts: tuple[Transfer, ...],
    payload: dict[str, Any] | None,
    payload_json: str,
    rhash: str,
    created: str,
) -> _PostReq:
    deltas = _deltas(ts)
    if not payload:
        payload = {}
    elif all(type(k) is str and type(v) in _SCALARS for k, v in payload.items()):
        payload = dict(payload)  # what json.loads(payload_json) would give, for less
    else:
        payload = json.loads(payload_json)
    return _PostReq(
        key,
        kind,
        ts,
        payload_json,
        rhash,
        created,
        deltas,
        tuple(c for c, (d, cr) in deltas.items() if d > cr),
        Posting(key, kind, ts, None, payload, created, POSTED, rhash),
        [key, kind, payload_json, rhash, created],
        [x for i, t in enumerate(ts) for x in (0, i, t.debit, t.credit, t.amount, t.memo)],
    )


def _deltas(ts: Iterable[Transfer]) -> dict[str, list[int]]:
    """Per account: [fen debited, fen credited] by these transfers."""
    out: dict[str, list[int]] = {}
    for t in ts:
        d = out.get(t.debit)
        if d is None:
            out[t.debit] = d = [0, 0]
        d[0] += t.amount
        c = out.get(t.credit)
        if c is None:
            out[t.credit] = c = [0, 0]
        c[1] += t.amount
    return out


def _overdraft(r: _PostReq, running: dict[str, int], cache: dict[str, bool]) -> Exception | None:
    """The error that posting `r` now would raise (unknown account, overdraft), or None."""
    for c in r.deltas:
        if c not in cache:
            return UnknownAccount(f"no account {c!r}", account=c)
    for c in r.debited:
        bal = running.get(c)
        if bal is not None:
            d, cr = r.deltas[c]
            if bal - d + cr < 0:
                return InsufficientFunds(
                    f"account {c!r} has {bal} fen, the posting needs {d - cr}",
                    account=c,
                    balance=bal,
                    needed=d - cr,
                )
    return None


def _replayed(p: Posting) -> Posting:
    return Posting(
        p.key, p.kind, p.transfers, p.links_to, p.payload, p.created_at, p.status, p.request_hash, True
    )


def _marks(n: int) -> str:
    return ",".join("?" * n)


@cache
def _values_sql(head: str, row: str, n: int, tail: str) -> str:
    return head + ",".join([row] * n) + tail


def _write_rows(tx: Tx, head: str, row: str, rows: Sequence[tuple[Any, ...]], tail: str = "") -> int:
    """Run `head (row),(row),... tail` over `rows`, _ROWS rows per statement; total rows changed."""
    n = 0
    for i in range(0, len(rows), _ROWS):
        chunk = rows[i : i + _ROWS]
        n += tx.execute(_values_sql(head, row, len(chunk), tail), [v for r in chunk for v in r])
    return n


def _write_flat(tx: Tx, head: str, row: str, ncols: int, flat: list[Any]) -> None:
    """Like _write_rows, for values already flattened (`ncols` per row)."""
    step = _ROWS * ncols
    for i in range(0, len(flat), step):
        chunk = flat[i : i + step]
        tx.execute(_values_sql(head, row, len(chunk) // ncols, ""), chunk)


def _journal(tx: Tx, rows: Sequence[tuple[Any, ...]]) -> None:
    _write_rows(tx, _JOURNAL_HEAD, _JOURNAL_ROW, rows)


def _apply_totals(tx: Tx, totals: dict[str, list[int]]) -> bool:
    """Add [debits, credits] to each account, in code order; False if an account is missing."""
    codes = sorted(totals)
    if tx.for_update:  # server: row locks are taken statement by statement, in code order
        n = tx.executemany(_APPLY, [(totals[c][0], totals[c][1], c) for c in codes])
    else:  # single writer: one UPDATE ... FROM (VALUES ...) statement
        rows = [(c, totals[c][0], totals[c][1]) for c in codes]
        n = _write_rows(tx, _APPLY_HEAD, "(?, ?, ?)", rows, _APPLY_TAIL)
    return n == len(codes)


def _claim(tx: Tx, key: str, kind: str, payload_json: str, rhash: str, created: str) -> int | None:
    """Insert the posting row if `key` is new and return its seq; None if the key exists.

    On PostgreSQL a concurrent claim of the same key waits here until the first one commits."""
    rows = tx.rows(_CLAIM, (key, kind, payload_json, rhash, created))
    return int(rows[0][0]) if rows else None


def _pair_sums(ts: Iterable[Transfer]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for t in ts:
        out[(t.debit, t.credit)] = out.get((t.debit, t.credit), 0) + t.amount
    return out


_INVARIANT_QUERIES: list[tuple[str, str]] = [
    (
        "1: sum of all balances is not 0",
        "SELECT s FROM (SELECT COALESCE(SUM(credits_posted - debits_posted), 0) AS s FROM ledger_accounts) x"
        " WHERE s <> 0",
    ),
    (
        "1: posting without transfers",
        "SELECT p.key FROM ledger_postings p WHERE NOT EXISTS"
        " (SELECT 1 FROM ledger_transfers t WHERE t.posting_seq = p.seq)",
    ),
    (
        "1: transfer with non-positive amount or same account",
        "SELECT posting_seq, idx FROM ledger_transfers WHERE amount <= 0 OR debit = credit",
    ),
    (
        "1: transfer names an unknown account",
        "SELECT t.posting_seq, t.idx FROM ledger_transfers t WHERE NOT EXISTS"
        " (SELECT 1 FROM ledger_accounts a WHERE a.code = t.debit)"
        " OR NOT EXISTS (SELECT 1 FROM ledger_accounts a WHERE a.code = t.credit)",
    ),
    (
        "2: non-negative account below zero",
        "SELECT code, credits_posted - debits_posted FROM ledger_accounts"
        " WHERE may_go_negative = 0 AND credits_posted < debits_posted",
    ),
    (
        "3: key posted more than once",
        "SELECT key, COUNT(*) FROM ledger_postings GROUP BY key HAVING COUNT(*) > 1",
    ),
    (
        "4: link to a missing posting or to another link",
        "SELECT p.key, p.links_to FROM ledger_postings p LEFT JOIN ledger_postings o ON o.key = p.links_to"
        " WHERE p.links_to IS NOT NULL AND (o.key IS NULL OR o.links_to IS NOT NULL OR o.kind = 'reversal')",
    ),
    (
        "4: reversal not linked to an original",
        "SELECT key FROM ledger_postings WHERE kind = 'reversal' AND links_to IS NULL",
    ),
    (
        "4: original reversed more than once",
        "SELECT links_to, COUNT(*) FROM ledger_postings WHERE kind = 'reversal'"
        " GROUP BY links_to HAVING COUNT(*) > 1",
    ),
    (
        "4: status 'reversed' disagrees with reversals",
        "SELECT o.key, o.status FROM ledger_postings o WHERE (o.status = 'reversed') <>"
        " EXISTS (SELECT 1 FROM ledger_postings r WHERE r.links_to = o.key AND r.kind = 'reversal')",
    ),
    (
        "4: linked postings move back more than the original moved (or along no transfer of it)",
        "WITH o AS (SELECT p.key AS okey, t.debit, t.credit, SUM(t.amount) AS amt"
        "  FROM ledger_transfers t JOIN ledger_postings p ON p.seq = t.posting_seq WHERE p.links_to IS NULL"
        "  GROUP BY p.key, t.debit, t.credit),"
        " r AS (SELECT p.links_to AS okey, t.credit AS debit, t.debit AS credit, SUM(t.amount) AS amt"
        "  FROM ledger_transfers t JOIN ledger_postings p ON p.seq = t.posting_seq"
        "  WHERE p.links_to IS NOT NULL"
        "  GROUP BY p.links_to, t.credit, t.debit)"
        " SELECT r.okey, r.debit, r.credit, r.amt, o.amt FROM r LEFT JOIN o"
        "  ON o.okey = r.okey AND o.debit = r.debit AND o.credit = r.credit"
        " WHERE o.amt IS NULL OR r.amt > o.amt",
    ),
    (
        "5: account totals disagree with the journal",
        "SELECT a.code, a.debits_posted, COALESCE(d.s, 0), a.credits_posted, COALESCE(c.s, 0)"
        " FROM ledger_accounts a"
        " LEFT JOIN (SELECT debit AS code, SUM(amount) AS s FROM ledger_transfers GROUP BY debit) d"
        "  ON d.code = a.code"
        " LEFT JOIN (SELECT credit AS code, SUM(amount) AS s FROM ledger_transfers GROUP BY credit) c"
        "  ON c.code = a.code"
        " WHERE a.debits_posted <> COALESCE(d.s, 0) OR a.credits_posted <> COALESCE(c.s, 0)",
    ),
]


def _check_all(tx: Tx) -> None:
    problems: list[str] = []
    for what, sql in _INVARIANT_QUERIES:
        rows = tx.rows(sql)
        problems.extend(f"invariant {what}: {tuple(r)}" for r in rows[:20])
    if problems:
        raise InvariantViolation(problems)
