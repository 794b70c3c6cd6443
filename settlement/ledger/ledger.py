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

Higher layers that settle many requests at once (the schemes' batch handlers) read and decide
set-based themselves and hand the ledger their postings with `post_batch(tx, reqs)` in the same unit.

Tables (ledger_accounts, ledger_postings, ledger_transfers; see `schema()`) belong to the ledger;
other modules may read them. Posts without `extra` (plain posts and refunds) from concurrent callers
are applied as one batch by `post_batch` (one pass of SQL per group commit, settlement/ledger/batch.py);
the rest run one by one. Accounts that may not go negative are read (on a server: locked, in code order)
and updated at once; every other account is only incremented, from increments deferred to the end of
the transaction (settlement.ledger.store.base: the hot fund and hospital rows are written once per batch,
last). The model (accounts, transfers, postings, tables) is settlement/ledger/model.py, the invariants'
SQL settlement/ledger/invariants.py.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from settlement.errors import (
    AlreadyReversed,
    IdempotencyConflict,
    InvalidRequest,
    InvalidState,
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
from settlement.ledger.store.batching import Retry


def _checked(key: str, kind: str, transfers: Sequence[Transfer],
             links_to: str | None) -> tuple[str, tuple[Transfer, ...]]:
    """A posting's key, kind, transfers and link checked (`post()` and `request()` alike): (kind, transfers)."""
    check_code(key, "key")
    kind = check_kind(kind)
    ts = check_transfers(transfers)
    if links_to is not None:
        check_code(links_to, "links_to")
        if links_to == key:
            raise InvalidRequest("a posting cannot link to itself")
    return kind, ts


class Ledger:
    """The ledger over a store. Thread-safe; every write is one atomic, durable unit of the store."""

    def __init__(self, store: Store, *, clock: Clock | None = None) -> None:
        """`clock` stamps accounts and postings (default: the wall clock); the engine passes its own, so
        that postings fall on the business day it reasons in."""
        self.store = store
        self._stamp = (clock or Clock()).stamp
        self._may_go_negative: dict[str, bool] = {}  # immutable per account: a cache, never a truth
        self._flush = self._flush_totals  # one object: the key of this ledger's deferred increments
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

        def q(tx: Tx) -> dict[str, int]:
            rows = tx.rows(
                f"SELECT code, credits_posted - debits_posted FROM ledger_accounts WHERE code IN ({marks})", wanted
            )
            found = {c: int(b) for c, b in rows}
            for c, (d, cr) in tx.deferred(self._flush).items():  # inside a unit: what it adds before COMMIT
                if c in found:
                    found[c] += cr - d
            return found

        found = self.store.read(q)
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
        kind, ts = _checked(key, kind, transfers, links_to)
        payload_json = dump_payload(payload)
        rhash = request_hash if request_hash is not None else fingerprint(kind, ts, links_to)
        if type(rhash) is not str:
            raise InvalidRequest("request_hash must be a string")
        created = self._stamp()
        if extra is None:  # the hot path: concurrent posts share one commit and SQL
            req = batch.post_req(key, kind, ts, payload, payload_json, rhash, created, links_to)
            return self.store.run_batched(self.post_batch, req)  # type: ignore[no-any-return]

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

    # -- batches (run inside a unit) ---------------------------------------------------------------
    def request(self, key: str, kind: str, transfers: Sequence[Transfer], *, payload_json: str = "{}",
                request_hash: str, links_to: str | None = None) -> batch.PostReq:
        """A posting checked as `post()` checks it, ready for `post_batch` (a scheme's batch handler builds
        one per request it decided to post). `payload_json`: the payload as JSON text of an object (a
        scheme that serialised its answer once passes that text)."""
        kind, ts = _checked(key, kind, transfers, links_to)
        if type(payload_json) is not str or not payload_json.startswith("{"):
            raise InvalidRequest("payload_json must be the JSON text of an object")
        return batch.post_req(key, kind, ts, None, payload_json, request_hash, self._stamp(), links_to, answer=False)

    def existing(self, tx: Tx, keys: Sequence[str]) -> dict[str, Posting]:
        """In a unit: the postings already made under any of `keys` (one query; the rare repeats then load theirs),
        with `replayed=True`: a scheme's batch handler answers repeats with them."""
        found = [k for (k,) in tx.rows(f"SELECT key FROM ledger_postings WHERE key IN ({batch.marks(len(keys))})"
                                        f" AND kind <> ?", [*keys, PENDING])] if keys else []
        out = {}
        for k in found:
            p = self._load(tx, k)
            assert p is not None
            out[k] = batch.replayed(p)
        return out

    def guarded_balances(self, tx: Tx, codes: Iterable[str]) -> dict[str, int]:
        """In a unit: the balances of those of `codes` that may not go negative (on a server: locked, in code
        order, until COMMIT); pass them to `post_batch(locked=...)`. Unknown accounts are left out."""
        running: dict[str, int] = {}
        self._guard(tx, codes, running)
        return running

    def post_decided(self, tx: Tx, reqs: list[batch.PostReq], *, locked: dict[str, int] | None = None) -> None:
        """`post_batch` for a scheme that checked its requests against the state it read (and, on a server,
        locked) in this unit: every request must be new and accepted. A refusal raises (the request's own
        error when it is alone, else OneByOne: the store then runs the scheme's items one at a time); a key
        another process posted meanwhile raises Retry (the store runs the whole batch again)."""
        self.post_batch(tx, reqs, locked=locked, _decided=True)

    def post_batch(self, tx: Tx, reqs: list[batch.PostReq], *, locked: dict[str, int] | None = None,
                   _decided: bool = False) -> list[Posting | Exception]:
        """Post several requests in the current unit at once; one result per request, in order: its Posting,
        the first posting of a key posted before (replayed; IdempotencyConflict if the request differs), or
        the exception refusing it (the request then wrote nothing). The store hands concurrent `post()`
        calls here; a scheme's batch handler calls it with the postings it decided.

        Locks the originals of refunds (in key order), claims every key with one statement, reads (on a
        server: locks, in code order) the guarded accounts, decides every request in arrival order against running
        balances and refundable amounts, then deletes the refused claims, journals the transfers and moves
        the money (guarded accounts now, the rest deferred to COMMIT). `locked`: balances of guarded
        accounts the caller read (on a server: locked) in this unit already. Anything unexpected raises.
        """
        if len({r.key for r in reqs}) != len(reqs):
            raise batch.OneByOne("the same key twice in one batch")  # rare: let the store run them in order
        links = sorted({r.links_to for r in reqs if r.links_to is not None})
        remaining = self._originals(tx, links) if links else {}
        for r in reqs:
            if r.links_to is not None and isinstance(remaining[r.links_to], UnknownTransaction):
                r.claim[5] = None  # refused below; the claim cannot name a posting that does not exist
        claimed = self._claim(tx, reqs)
        fresh = [r for r in reqs if r.key in claimed]
        running = dict(locked) if locked else {}
        self._guard(tx, {c for r in fresh for c in r.deltas}, running)
        cache = self._may_go_negative
        results: list[Posting | Exception | None] = [None] * len(reqs)
        new: list[batch.PostReq] = []
        refused: list[int] = []
        for i, r in enumerate(reqs):
            if r.key not in claimed:
                continue  # answered below, as a repeat
            err = None
            if r.links_to is not None:
                left = remaining[r.links_to]
                err = left if isinstance(left, Exception) else batch.refund_error(r.links_to, r.ts, left)
            err = err or batch.overdraft(r.deltas, running, cache)
            if err is not None:
                results[i] = err
                refused.append(claimed[r.key])
                continue
            if r.links_to is not None:
                batch.take_back(r.ts, remaining[r.links_to])  # type: ignore[arg-type]
            for c, (d, cr) in r.deltas.items():
                if c in running:
                    running[c] += cr - d
            new.append(r)
            results[i] = r if _decided else r.answer()
        if _decided:
            for res in results:
                if isinstance(res, Exception):
                    raise res if len(reqs) == 1 else batch.OneByOne(f"the ledger refused a posting: {res}")
            if len(fresh) != len(reqs):
                raise Retry("a key was posted by another process meanwhile")
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
            self._move(tx, total)
            batch.write_flat(tx, batch.JOURNAL_HEAD, batch.JOURNAL_ROW, 6, journal)
        if _decided:
            return []
        for i, r in enumerate(reqs):
            if results[i] is None:  # posted before this batch
                try:
                    results[i] = self._replay(tx, r.key, r.rhash)
                except IdempotencyConflict as e:
                    results[i] = e
        return results  # type: ignore[return-value]

    def _claim(self, tx: Tx, reqs: list[batch.PostReq]) -> dict[str, int]:
        """Claim the keys (one statement per ROWS, in key order: a global lock order on a server); the seq of
        each key claimed now. A key not returned was posted before."""
        claimed: dict[str, int] = {}
        flat: list[Any] = []
        for r in sorted(reqs, key=lambda r: r.key):
            flat += r.claim
        n = batch.CLAIM_COLS
        for i in range(0, len(flat), batch.ROWS * n):
            chunk = flat[i : i + batch.ROWS * n]
            sql = batch.values_sql(batch.CLAIM_HEAD, batch.CLAIM_ROW, len(chunk) // n, batch.CLAIM_TAIL)
            for k, seq in tx.rows(sql, chunk):
                claimed[k] = int(seq)
        return claimed

    def _guard(self, tx: Tx, codes: Iterable[str], running: dict[str, int]) -> None:
        """Learn whether each account may go negative (an unknown account stays out of the cache) and put the
        balance of every guarded account of `codes` not yet in `running` into it; on a server those rows are
        locked, in code order, before anything is decided on them."""
        cache = self._may_go_negative
        unknown = sorted(c for c in codes if c not in cache)
        if unknown:
            for c, m in tx.rows(
                f"SELECT code, may_go_negative FROM ledger_accounts WHERE code IN ({batch.marks(len(unknown))})",
                unknown,
            ):
                cache[c] = bool(m)
        guarded = sorted(c for c in codes if cache.get(c) is False and c not in running)
        if guarded:
            for c, b in tx.rows(
                "SELECT code, credits_posted - debits_posted FROM ledger_accounts"
                f" WHERE code IN ({batch.marks(len(guarded))}) ORDER BY code{tx.for_update}",
                guarded,
            ):
                running[c] = int(b)

    def _move(self, tx: Tx, totals: dict[str, list[int]]) -> None:
        """Apply [debits, credits] per account: guarded accounts now (they are locked already), the others
        deferred to COMMIT (every account was checked to exist)."""
        cache = self._may_go_negative
        now = {c: v for c, v in totals.items() if cache[c] is False}
        if now:
            self._flush_totals(tx, now)
        later = {c: v for c, v in totals.items() if cache[c] is True} if now else totals
        if later:
            tx.defer(self._flush, later)

    def _flush_totals(self, tx: Tx, totals: dict[str, list[int]]) -> None:
        """Add [debits, credits] per account. Every account was known: if one is missing, the cache of accounts
        saw a unit that was rolled back; forget it (the caller's unit fails: its callers retry)."""
        if not batch.apply_totals(tx, totals):
            self._may_go_negative.clear()
            raise InvalidState("an account vanished before COMMIT; retry with the same key")

    def _originals(self, tx: Tx, keys: list[str]) -> dict[str, dict[tuple[str, str], int] | Exception]:
        """Lock originals for linking (in key order); for each: what may still move back per (debit, credit)
        pair of the original, or the error that refuses any link to it."""
        out: dict[str, dict[tuple[str, str], int] | Exception] = {}
        found = {k: (int(seq), kind, lt, st) for k, seq, kind, lt, st in tx.rows(
            "SELECT key, seq, kind, links_to, status FROM ledger_postings"
            f" WHERE key IN ({batch.marks(len(keys))}) ORDER BY key{tx.for_update}", keys)}
        ok: dict[int, str] = {}
        for k in keys:
            seq, kind, links_to, status = found.get(k, (0, PENDING, None, POSTED))
            if kind == PENDING:
                out[k] = UnknownTransaction(f"no posting {k!r}", key=k)
            elif links_to is not None or kind == REVERSAL:
                out[k] = InvalidState(f"posting {k!r} is itself a refund or reversal", key=k)
            elif status == REVERSED:
                out[k] = AlreadyReversed(f"posting {k!r} was already reversed", key=k)
            else:
                ok[seq] = k
                out[k] = {}
        if ok:
            for seq, d, c, a in tx.rows(
                "SELECT posting_seq, debit, credit, SUM(amount) FROM ledger_transfers"
                f" WHERE posting_seq IN ({batch.marks(len(ok))}) GROUP BY posting_seq, debit, credit",
                list(ok),
            ):
                out[ok[int(seq)]][(d, c)] = int(a)  # type: ignore[index]
            for k, d, c, a in tx.rows(
                "SELECT p.links_to, t.credit, t.debit, SUM(t.amount) FROM ledger_transfers t"
                " JOIN ledger_postings p ON p.seq = t.posting_seq"
                f" WHERE p.links_to IN ({batch.marks(len(ok))}) GROUP BY p.links_to, t.credit, t.debit",
                list(ok.values()),
            ):
                left = out[k]
                assert isinstance(left, dict)
                left[(d, c)] -= int(a)
        return out

    # -- one posting at a time (run inside a unit) ---------------------------------------------------
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
        *,
        checked: bool = False,
    ) -> Posting:
        if links_to is not None:
            if not checked:
                left = self._originals(tx, [links_to])[links_to]
                err = left if isinstance(left, Exception) else batch.refund_error(links_to, ts, left)
                if err is not None:
                    raise err
            tx.execute("UPDATE ledger_postings SET links_to = ? WHERE key = ?", (links_to, key))
        deltas = batch.deltas_of(ts)
        running: dict[str, int] = {}
        self._guard(tx, deltas, running)
        err = batch.overdraft(deltas, running, self._may_go_negative)
        if err is not None:
            raise err
        self._move(tx, deltas)
        batch.journal(tx, [(seq, i, t.debit, t.credit, t.amount, t.memo) for i, t in enumerate(ts)])
        posting = Posting(key, kind, ts, links_to, json.loads(payload_json), created, POSTED, rhash)
        if extra is not None:
            extra(tx, posting)
        return posting

    def _lock_original(self, tx: Tx, original_key: str) -> tuple[Posting, dict[tuple[str, str], int]]:
        """Lock an original posting for linking; return it and what may still move back per pair."""
        left = self._originals(tx, [original_key])[original_key]
        if isinstance(left, Exception):
            raise left
        original = self._load(tx, original_key)
        assert original is not None
        return original, left

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


