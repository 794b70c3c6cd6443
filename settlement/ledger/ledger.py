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
applied as one batch by `_post_many` (one pass of SQL per group commit, settlement/ledger/batch.py); the
rest run one by one. The model (accounts, transfers, postings, tables) is settlement/ledger/model.py, the
invariants' SQL settlement/ledger/invariants.py.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from settlement.errors import (
    AlreadyReversed,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidRequest,
    InvalidState,
    RefundTooLarge,
    UnknownAccount,
    UnknownTransaction,
)
from settlement.ledger import batch
from settlement.ledger.clock import Clock
from settlement.ledger.invariants import check_all
from settlement.ledger.model import (
    NON_NEGATIVE_KINDS,
    PENDING,
    POSTED,
    REVERSAL,
    REVERSED,
    Account,
    AccountKind,
    Draft,
    Posting,
    Transfer,
    check_code,
    check_kind,
    check_transfers,
    dump_payload,
    fingerprint,
    schema,
)
from settlement.ledger.store.base import Store, Tx


class Ledger:
    """The ledger over a store. Thread-safe; every write is one atomic, durable unit of the store."""

    def __init__(self, store: Store, *, clock: Clock | None = None) -> None:
        """`clock` stamps accounts and postings (default: the wall clock); the engine passes its own, so
        that postings fall on the business day it reasons in."""
        self.store = store
        self._stamp = (clock or Clock()).stamp
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
        check_code(code, "account code")
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
        check_code(key, "key")
        kind = check_kind(kind)
        ts = check_transfers(transfers)
        if links_to is not None:
            check_code(links_to, "links_to")
            if links_to == key:
                raise InvalidRequest("a posting cannot link to itself")
        payload_json = dump_payload(payload)
        rhash = request_hash if request_hash is not None else fingerprint(kind, ts, links_to)
        if type(rhash) is not str:
            raise InvalidRequest("request_hash must be a string")
        created = self._stamp()
        if links_to is None and extra is None:  # the hot path: concurrent posts share one commit and SQL
            req = batch.post_req(key, kind, ts, payload, payload_json, rhash, created)
            return self.store.run_batched(self._post_many, req)  # type: ignore[no-any-return]

        def unit(tx: Tx) -> Posting:
            seq = batch.claim(tx, key, kind, payload_json, rhash, created)
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
        check_code(key, "key")
        if type(request_hash) is not str or not request_hash:
            raise InvalidRequest("post_with needs the request_hash of the caller's request")
        created = self._stamp()

        def unit(tx: Tx) -> Posting:
            seq = batch.claim(tx, key, PENDING, "{}", request_hash, created)
            if seq is None:
                return self._replay(tx, key, request_hash)
            draft = build(tx)
            if type(draft) is not Draft:
                raise InvalidRequest("build must return a Draft")
            kind = check_kind(draft.kind)
            ts = check_transfers(draft.transfers)
            if draft.links_to is not None:
                check_code(draft.links_to, "links_to")
                if draft.links_to == key:
                    raise InvalidRequest("a posting cannot link to itself")
            payload_json = dump_payload(draft.payload)
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
        check_code(key, "key")
        check_code(original_key, "original_key")
        if key == original_key:
            raise InvalidRequest("a reversal needs its own key")
        payload_json = dump_payload(payload)
        rhash = hashlib.blake2b(f"reversal\x00{original_key}".encode(), digest_size=16).hexdigest()
        created = self._stamp()

        def unit(tx: Tx) -> Posting:
            seq = batch.claim(tx, key, REVERSAL, payload_json, rhash, created)
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
            total = batch.pair_sums(original.transfers)
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
                (after_seq, PENDING, limit),
            )
            return [(s, p) for s, k in rows if (p := self._load(tx, k)) is not None]

        return self.store.read(q)

    # -- internals (run inside a unit) -------------------------------------------------------------
    def _post_many(self, tx: Tx, reqs: list[batch.PostReq]) -> list[Posting | Exception]:
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
            seq = batch.claim(tx, r.key, r.kind, r.payload_json, r.rhash, r.created)
            if seq is None:
                return [self._replay(tx, r.key, r.rhash)]
            return [
                self._apply(
                    tx, seq, r.key, r.kind, r.ts, None, r.payload_json, r.created, r.rhash, None, r.deltas
                )
            ]
        if len({r.key for r in reqs}) != len(reqs):
            raise batch.OneByOne("the same key twice in one batch")  # rare: let the store run them in order
        # 1. claim every key in one statement (in key order: a global lock order on a server);
        #    a key not returned was posted before, and its request is a repeat
        claimed: dict[str, int] = {}
        flat: list[Any] = []
        for r in sorted(reqs, key=lambda r: r.key):
            flat += r.claim
        for i in range(0, len(flat), batch.ROWS * 5):
            chunk = flat[i : i + batch.ROWS * 5]
            sql = batch.values_sql(batch.CLAIM_HEAD, batch.CLAIM_ROW, len(chunk) // 5, batch.CLAIM_TAIL)
            for k, seq in tx.rows(sql, chunk):
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
                f" WHERE code IN ({batch.marks(len(codes))}) ORDER BY code{tx.for_update}",
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
        new: list[batch.PostReq] = []
        refused: list[int] = []
        for i, r in enumerate(reqs):
            if r.key not in claimed:
                continue  # answered below, as a repeat
            err = batch.overdraft(r, running, cache)
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
            tx.execute(f"DELETE FROM ledger_postings WHERE seq IN ({batch.marks(len(refused))})", refused)
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
            if not batch.apply_totals(tx, total):
                raise InvalidState("an account vanished during a batch")  # the store retries one by one
            batch.write_flat(tx, batch.JOURNAL_HEAD, batch.JOURNAL_ROW, 6, journal)
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
            deltas = batch.deltas_of(ts)
        codes = sorted(deltas)
        cache = self._may_go_negative
        risky = [c for c in codes if cache.get(c) is not True and deltas[c][0] > deltas[c][1]]
        if risky:
            # server store: lock every account in code order (a global lock order), then check;
            # single-writer store: nothing can interleave, read only the accounts that could overdraw
            self._check_funds(tx, codes if tx.for_update else risky, deltas)
        if not batch.apply_totals(tx, deltas):
            self._check_funds(tx, codes, deltas)  # raises UnknownAccount (cache was stale)
            raise InvalidState("accounts changed during the posting")  # pragma: no cover
        batch.journal(tx, [(seq, i, t.debit, t.credit, t.amount, t.memo) for i, t in enumerate(ts)])
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
        if original is None or original.kind == PENDING:
            raise UnknownTransaction(f"no posting {original_key!r}", key=original_key)
        if original.links_to is not None or original.kind == REVERSAL:
            raise InvalidState(f"posting {original_key!r} is itself a refund or reversal", key=original_key)
        if original.status == REVERSED:
            raise AlreadyReversed(f"posting {original_key!r} was already reversed", key=original_key)
        total = batch.pair_sums(original.transfers)
        back = self._refunded(tx, original_key)
        return original, {p: a - back.get(p, 0) for p, a in total.items()}

    def _check_refund(self, tx: Tx, original_key: str, ts: tuple[Transfer, ...]) -> None:
        _, remaining = self._lock_original(tx, original_key)
        for (debit, credit), amount in batch.pair_sums(ts).items():
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
        return batch.replayed(posting)

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
        self.store.read(check_all)


