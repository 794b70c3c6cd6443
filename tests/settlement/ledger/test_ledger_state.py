"""Hypothesis state machine: random posts, repeats, refunds, reversals and concurrent bursts against a
plain-Python model of the ledger; every invariant is checked after every step, on both stores."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from settlement import errors
from settlement.ledger import AccountKind, Ledger, Posting, Store, Transfer

FREE = ["EXT", "POOL", "HOSP", "CASH"]  # may go negative
GUARDED = ["P0", "P1", "P2"]  # personal accounts: never below zero
ACCOUNTS = FREE + GUARDED
KEYS = [f"T1:{i:04d}" for i in range(14)]

transfer = st.tuples(st.sampled_from(ACCOUNTS), st.sampled_from(ACCOUNTS), st.integers(1, 5_000)).filter(
    lambda t: t[0] != t[1]
)
transfers = st.lists(transfer, min_size=1, max_size=4)


def model_deltas(ts: list[tuple[str, str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d, c, a in ts:
        out[d] = out.get(d, 0) - a
        out[c] = out.get(c, 0) + a
    return out


class LedgerMachine(RuleBasedStateMachine):
    """The model: balances, and per key the request and its transfers; per original, what came back."""

    make_store: Callable[[], Store]

    def __init__(self) -> None:
        super().__init__()
        self.store = type(self).make_store()
        self.ledger = Ledger(self.store)
        for code in FREE:
            self.ledger.open_account(code, AccountKind.EXTERNAL if code == "EXT" else AccountKind.POOLED_FUND)
        for code in GUARDED:
            self.ledger.open_account(code, AccountKind.PERSONAL_ACCOUNT, owner=code)
        self.balances = dict.fromkeys(ACCOUNTS, 0)
        self.postings: dict[str, dict[str, Any]] = {}  # key -> {sig, transfers, links_to, status}
        self.back: dict[str, dict[tuple[str, str], int]] = {}  # original -> pair -> fen moved back
        self.last: tuple[str, list[tuple[str, str, int]]] | None = None

    def teardown(self) -> None:
        self.store.close()

    # -- helpers -----------------------------------------------------------------------------------
    def _expect_post(self, key: str, ts: list[tuple[str, str, int]], links_to: str | None) -> type | None:
        """The error the model predicts for this post, or None (posted, or replayed)."""
        sig = ("post", tuple(ts), links_to)
        if links_to == key:
            return errors.InvalidRequest
        if key in self.postings:
            return None if self.postings[key]["sig"] == sig else errors.IdempotencyConflict
        if links_to is not None:
            orig = self.postings.get(links_to)
            if orig is None:
                return errors.UnknownTransaction
            if orig["links_to"] is not None:
                return errors.InvalidState
            if orig["status"] == "reversed":
                return errors.AlreadyReversed
            paid: dict[tuple[str, str], int] = {}
            for d, c, a in orig["transfers"]:
                paid[(d, c)] = paid.get((d, c), 0) + a
            asked: dict[tuple[str, str], int] = {}
            for d, c, a in ts:
                asked[(c, d)] = asked.get((c, d), 0) + a
            for pair, a in asked.items():
                if pair not in paid:
                    return errors.InvalidRequest
                if a > paid[pair] - self.back.get(links_to, {}).get(pair, 0):
                    return errors.RefundTooLarge
        for code, delta in model_deltas(ts).items():
            if code in GUARDED and self.balances[code] + delta < 0:
                return errors.InsufficientFunds
        return None

    def _record(self, p: Posting, sig: tuple[Any, ...], ts: list[tuple[str, str, int]]) -> None:
        self.postings[p.key] = {"sig": sig, "transfers": ts, "links_to": p.links_to, "status": "posted"}
        for code, delta in model_deltas(ts).items():
            self.balances[code] += delta
        if p.links_to is not None:
            back = self.back.setdefault(p.links_to, {})
            for d, c, a in ts:
                back[(c, d)] = back.get((c, d), 0) + a

    def _post(self, key: str, ts: list[tuple[str, str, int]], links_to: str | None = None) -> None:
        expected = self._expect_post(key, ts, links_to)
        fresh = key not in self.postings
        kind = "refund" if links_to else "medical"
        try:
            p = self.ledger.post(key, kind, [Transfer(*t) for t in ts], links_to=links_to)
        except errors.SettlementError as e:
            assert expected is not None and isinstance(e, expected), (expected, e)
            return
        assert expected is None, f"expected {expected}, got {p}"
        assert p.replayed == (not fresh)
        if fresh:
            assert [(t.debit, t.credit, t.amount) for t in p.transfers] == ts
            self._record(p, ("post", tuple(ts), links_to), ts)
            self.last = (key, ts) if links_to is None else self.last

    # -- rules -------------------------------------------------------------------------------------
    @rule(code=st.sampled_from(GUARDED), amount=st.integers(1, 20_000), key=st.sampled_from(KEYS))
    def fund(self, code: str, amount: int, key: str) -> None:
        self._post(key, [("EXT", code, amount)])

    @rule(key=st.sampled_from(KEYS), ts=transfers)
    def post(self, key: str, ts: list[tuple[str, str, int]]) -> None:
        self._post(key, ts)

    @precondition(lambda self: self.last is not None)
    @rule()
    def repeat_last(self) -> None:
        assert self.last is not None
        key, ts = self.last
        before = self.ledger.get(key)
        p = self.ledger.post(key, "medical", [Transfer(*t) for t in ts])
        assert p.replayed and p == before

    @precondition(lambda self: bool(self.postings))
    @rule(data=st.data(), key=st.sampled_from(KEYS + [f"R1:{i:04d}" for i in range(6)]))
    def refund(self, data: st.DataObject, key: str) -> None:
        original = data.draw(st.sampled_from(sorted(self.postings)))
        ts = self.postings[original]["transfers"]
        picked = data.draw(st.lists(st.sampled_from(ts), min_size=1, max_size=2, unique=True))
        refund = [(c, d, data.draw(st.integers(1, a + 1))) for d, c, a in picked]  # a + 1: sometimes too much
        self._post(key, refund, links_to=original)

    @precondition(lambda self: bool(self.postings))
    @rule(data=st.data(), key=st.sampled_from([f"V1:{i:04d}" for i in range(6)]))
    def reverse(self, data: st.DataObject, key: str) -> None:
        original = data.draw(st.sampled_from(sorted(self.postings)))
        orig = self.postings[original]
        sig = ("reverse", original)
        remaining: dict[tuple[str, str], int] = {}
        for d, c, a in orig["transfers"]:
            remaining[(d, c)] = remaining.get((d, c), 0) + a
        for pair, a in self.back.get(original, {}).items():
            remaining[pair] -= a
        undo = []
        for d, c, a in orig["transfers"]:
            give = min(a, remaining[(d, c)])
            if give > 0:
                remaining[(d, c)] -= give
                undo.append((c, d, give))
        if key == original:
            expected = errors.InvalidRequest
        elif key in self.postings:
            expected = None if self.postings[key]["sig"] == sig else errors.IdempotencyConflict
        elif orig["links_to"] is not None:
            expected = errors.InvalidState
        elif orig["status"] == "reversed" or not undo:
            expected = errors.AlreadyReversed
        elif any(code in GUARDED and self.balances[code] + d < 0 for code, d in model_deltas(undo).items()):
            expected = errors.InsufficientFunds
        else:
            expected = None
        fresh = key not in self.postings
        try:
            p = self.ledger.reverse(key, original)
        except errors.SettlementError as e:
            assert expected is not None and isinstance(e, expected), (expected, e)
            return
        assert expected is None, f"expected {expected}, got {p}"
        if fresh:
            assert [(t.debit, t.credit, t.amount) for t in p.transfers] == undo
            self._record(p, sig, undo)
            orig["status"] = "reversed"
        else:
            assert p.replayed

    @rule(n=st.integers(2, 8), dup=st.booleans(), start=st.integers(0, 10**6))
    def concurrent_burst(self, n: int, dup: bool, start: int) -> None:
        """n threads post at once (one group commit on SQLite); with dup, two of them share a key."""
        keys = [f"B{start}:{i}" for i in range(n)]
        if dup:
            keys[-1] = keys[0]
        keys = [k for k in keys if k not in self.postings]
        if not keys:
            return
        results: list[Posting] = []
        ts = [("POOL", "HOSP", 100), ("CASH", "HOSP", 7)]
        gate = threading.Barrier(len(keys))

        def go(k: str) -> None:
            gate.wait()
            results.append(self.ledger.post(k, "medical", [Transfer(*t) for t in ts]))

        threads = [threading.Thread(target=go, args=(k,)) for k in keys]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == len(keys)
        for k in dict.fromkeys(keys):
            mine = [p for p in results if p.key == k]
            assert sum(not p.replayed for p in mine) == 1 and all(p == mine[0] for p in mine)
            self._record(mine[0], ("post", tuple(ts), None), ts)

    # -- invariants --------------------------------------------------------------------------------
    @invariant()
    def ledger_invariants_hold(self) -> None:
        self.ledger.check_invariants()

    @invariant()
    def balances_match_the_model(self) -> None:
        assert self.ledger.balances(ACCOUNTS) == self.balances

    @invariant()
    def postings_match_the_model(self) -> None:
        for key, m in self.postings.items():
            p = self.ledger.get(key)
            assert p is not None
            assert [(t.debit, t.credit, t.amount) for t in p.transfers] == m["transfers"]
            assert p.status == m["status"] and p.links_to == m["links_to"]


def test_ledger_state_machine(store_kind: str, make_store: Callable[[str], Store]) -> None:
    machine = type(
        f"LedgerMachine_{store_kind}", (LedgerMachine,), {"make_store": staticmethod(lambda: make_store(store_kind))}
    )
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=25 if store_kind == "sqlite" else 8,
            stateful_step_count=25 if store_kind == "sqlite" else 20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            database=None,
        ),
    )
