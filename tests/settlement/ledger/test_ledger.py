"""Ledger unit tests, on every store: balance, idempotency, refunds, reversals, typed refusals."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from settlement import errors
from settlement.ledger import (
    MAX_AMOUNT,
    AccountKind,
    Draft,
    Ledger,
    Posting,
    Transfer,
    Tx,
)

CODES = ["EXT", "POOL", "P1", "P2", "HOSP", "CASH"]


@pytest.fixture
def books(ledger: Ledger) -> Ledger:
    """A ledger with a funded personal account P1 (10,000 fen) and an empty P2."""
    ledger.open_account("EXT", AccountKind.EXTERNAL)
    ledger.open_account("POOL", AccountKind.POOLED_FUND, region="110000")
    ledger.open_account("P1", AccountKind.PERSONAL_ACCOUNT, region="110000", owner="110101199001011234")
    ledger.open_account("P2", AccountKind.PERSONAL_ACCOUNT, region="110000", owner="110101199001015678")
    ledger.open_account("HOSP", AccountKind.HOSPITAL_PAYABLE, owner="H001")
    ledger.open_account("CASH", AccountKind.PATIENT_CASH)
    ledger.post("alloc:1", "allocation", [Transfer("EXT", "P1", 10_000)])
    return ledger


def visit(pool: int = 5_000, acct: int = 3_000, cash: int = 2_000) -> list[Transfer]:
    return [
        Transfer("POOL", "HOSP", pool, "hifp_pay"),
        Transfer("P1", "HOSP", acct, "acct_pay"),
        Transfer("CASH", "HOSP", cash, "psn_cash_pay"),
    ]


def snapshot(ledger: Ledger) -> dict[str, int]:
    return ledger.balances(CODES)


def test_posting_is_balanced_and_sign_convention(books: Ledger) -> None:
    p = books.post("T1:0001", "medical", visit(), payload={"medfee_sumamt": 10_000})
    assert p.status == "posted" and not p.replayed and p.links_to is None
    assert p.payload == {"medfee_sumamt": 10_000}
    b = snapshot(books)
    # balance = credits - debits: the debit side gives, the credit side receives
    assert b == {"EXT": -10_000, "POOL": -5_000, "P1": 7_000, "P2": 0, "HOSP": 10_000, "CASH": -2_000}
    assert sum(b.values()) == 0
    assert books.get("T1:0001") == p
    books.check_invariants()


def test_repeat_returns_first_outcome(books: Ledger) -> None:
    first = books.post("T1:0002", "medical", visit(), payload={"try": 1})
    again = books.post("T1:0002", "medical", visit(), payload={"try": 2})
    assert again == first and again.replayed and again.payload == {"try": 1}
    assert again.created_at == first.created_at
    assert books.balance("P1") == 7_000
    books.check_invariants()


def test_conflicting_repeat_is_refused(books: Ledger) -> None:
    books.post("T1:0003", "medical", visit())
    before = snapshot(books)
    with pytest.raises(errors.IdempotencyConflict):
        books.post("T1:0003", "medical", visit(pool=4_999))
    with pytest.raises(errors.IdempotencyConflict):
        books.post("T1:0003", "medical", visit(), request_hash="something else")
    assert snapshot(books) == before


def test_explicit_request_hash(books: Ledger) -> None:
    first = books.post("T1:0004", "medical", visit(), request_hash="bill-abc")
    # the caller's fingerprint decides: recomputed transfers may differ, the answer is the first one
    assert books.post("T1:0004", "medical", visit(pool=1), request_hash="bill-abc") == first


@pytest.mark.parametrize("amount", [-1, 0, 1.5, 100.0, True, False, "100", None, MAX_AMOUNT + 1])
def test_bad_amount_is_typed_and_posts_nothing(books: Ledger, amount: Any) -> None:
    before = snapshot(books)
    with pytest.raises(errors.InvalidAmount):
        books.post("T1:bad", "medical", [Transfer("POOL", "HOSP", amount)])
    assert books.get("T1:bad") is None
    assert snapshot(books) == before


@pytest.mark.parametrize(
    "call",
    [
        lambda L: L.post("T1:bad", "medical", []),
        lambda L: L.post("T1:bad", "medical", [Transfer("POOL", "POOL", 1)]),
        lambda L: L.post("T1:bad", "medical", [("POOL", "HOSP", 1)]),
        lambda L: L.post("T1:bad", "medical", "POOL->HOSP"),
        lambda L: L.post("", "medical", [Transfer("POOL", "HOSP", 1)]),
        lambda L: L.post(7, "medical", [Transfer("POOL", "HOSP", 1)]),
        lambda L: L.post("T1:bad", "reversal", [Transfer("POOL", "HOSP", 1)]),
        lambda L: L.post("T1:bad", "", [Transfer("POOL", "HOSP", 1)]),
        lambda L: L.post("T1:bad", "medical", [Transfer("POOL", "HOSP", 1)], payload={"x": object()}),
        lambda L: L.post("T1:bad", "medical", [Transfer("POOL", "HOSP", 1)], payload=["x"]),
        lambda L: L.post("T1:bad", "medical", [Transfer("POOL", "HOSP", 1)], links_to="T1:bad"),
        lambda L: L.post("T1:bad", "medical", [Transfer("POOL", "", 1)]),
        lambda L: L.open_account("X", "no_such_kind"),
        lambda L: L.open_account("", AccountKind.CASH),
        lambda L: L.open_account("X", AccountKind.CASH, may_go_negative="yes"),
    ],
)
def test_bad_request_is_typed_and_posts_nothing(books: Ledger, call: Any) -> None:
    before = snapshot(books)
    with pytest.raises(errors.InvalidRequest):
        call(books)
    assert books.get("T1:bad") is None
    assert snapshot(books) == before
    books.check_invariants()


def test_unknown_account_posts_nothing(books: Ledger) -> None:
    before = snapshot(books)
    with pytest.raises(errors.UnknownAccount) as exc:
        books.post("T1:0005", "medical", [Transfer("POOL", "HOSP", 10), Transfer("NOPE", "HOSP", 10)])
    assert exc.value.details["account"] == "NOPE"
    assert books.get("T1:0005") is None
    assert snapshot(books) == before
    with pytest.raises(errors.UnknownAccount):
        books.balance("NOPE")
    with pytest.raises(errors.UnknownAccount):
        books.account("NOPE")
    books.check_invariants()


def test_overdraft_refused_posts_nothing(books: Ledger) -> None:
    before = snapshot(books)
    with pytest.raises(errors.InsufficientFunds) as exc:
        books.post("T1:0006", "medical", visit(acct=10_001))
    assert exc.value.details == {"account": "P1", "balance": 10_000, "needed": 10_001}
    assert books.get("T1:0006") is None
    assert snapshot(books) == before
    # to exactly zero is fine; the account then refuses one more fen
    books.post("T1:0007", "medical", visit(acct=10_000))
    assert books.balance("P1") == 0
    with pytest.raises(errors.InsufficientFunds):
        books.post("T1:0008", "medical", [Transfer("P1", "HOSP", 1)])
    # net effect counts: money in and out of P1 in one posting
    books.post("T1:0009", "transfer", [Transfer("EXT", "P1", 50), Transfer("P1", "HOSP", 50)])
    books.check_invariants()


def test_may_go_negative_defaults_and_open_is_idempotent(ledger: Ledger) -> None:
    a = ledger.open_account("P9", AccountKind.PERSONAL_ACCOUNT, owner="x")
    assert not a.may_go_negative
    assert ledger.open_account("PEN", AccountKind.PENSIONER_ACCOUNT).may_go_negative is False
    assert ledger.open_account("F", AccountKind.POOLED_FUND).may_go_negative is True
    assert ledger.open_account("P9", AccountKind.PERSONAL_ACCOUNT, owner="x") == a
    assert ledger.open_account("P9", "personal_account", owner="x", may_go_negative=False) == a
    with pytest.raises(errors.IdempotencyConflict):
        ledger.open_account("P9", AccountKind.PERSONAL_ACCOUNT, owner="y")
    with pytest.raises(errors.IdempotencyConflict):
        ledger.open_account("P9", AccountKind.PERSONAL_ACCOUNT, owner="x", may_go_negative=True)
    assert [x.code for x in ledger.accounts()] == ["F", "P9", "PEN"]
    assert ledger.account("P9") == a


def test_partial_refunds_are_linked_and_bounded(books: Ledger) -> None:
    orig = books.post("T1:0010", "medical", visit())
    r1 = books.post(
        "T1:0011",
        "refund",
        [Transfer("HOSP", "P1", 1_000), Transfer("HOSP", "POOL", 500)],
        links_to="T1:0010",
    )
    assert r1.links_to == "T1:0010"
    assert books.refunded("T1:0010") == {("P1", "HOSP"): 1_000, ("POOL", "HOSP"): 500}
    assert books.refundable("T1:0010") == {
        ("POOL", "HOSP"): 4_500,
        ("P1", "HOSP"): 2_000,
        ("CASH", "HOSP"): 2_000,
    }
    before = snapshot(books)
    with pytest.raises(errors.RefundTooLarge):
        books.post("T1:0012", "refund", [Transfer("HOSP", "P1", 2_001)], links_to="T1:0010")
    with pytest.raises(errors.InvalidRequest):  # P2 was never debited by the original
        books.post("T1:0012", "refund", [Transfer("HOSP", "P2", 1)], links_to="T1:0010")
    with pytest.raises(errors.InvalidRequest):  # same direction as the original: not a refund
        books.post("T1:0012", "refund", [Transfer("P1", "HOSP", 1)], links_to="T1:0010")
    with pytest.raises(errors.UnknownTransaction):
        books.post("T1:0012", "refund", [Transfer("HOSP", "P1", 1)], links_to="T1:nope")
    with pytest.raises(errors.InvalidState):  # a refund of a refund
        books.post("T1:0012", "refund", [Transfer("P1", "HOSP", 1)], links_to="T1:0011")
    assert books.get("T1:0012") is None and snapshot(books) == before
    books.post("T1:0012", "refund", [Transfer("HOSP", "P1", 2_000)], links_to="T1:0010")
    assert books.refundable("T1:0010")[("P1", "HOSP")] == 0
    assert [p.key for p in books.linked("T1:0010")] == ["T1:0011", "T1:0012"]
    assert books.get("T1:0010") == orig
    books.check_invariants()


def test_reversal_once(books: Ledger) -> None:
    before = snapshot(books)
    orig = books.post("T1:0020", "medical", visit())
    rev = books.reverse("T1:0021", "T1:0020", payload={"reason": "response lost"})
    assert rev.kind == "reversal" and rev.links_to == "T1:0020"
    assert rev.transfers == tuple(Transfer(t.credit, t.debit, t.amount, t.memo) for t in orig.transfers)
    assert snapshot(books) == before
    assert books.get("T1:0020").status == "reversed"
    again = books.reverse("T1:0021", "T1:0020")
    assert again == rev and again.replayed
    with pytest.raises(errors.AlreadyReversed):
        books.reverse("T1:0022", "T1:0020")
    with pytest.raises(errors.AlreadyReversed):
        books.post("T1:0022", "refund", [Transfer("HOSP", "P1", 1)], links_to="T1:0020")
    with pytest.raises(errors.InvalidState):
        books.reverse("T1:0022", "T1:0021")
    with pytest.raises(errors.UnknownTransaction):
        books.reverse("T1:0022", "T1:nope")
    with pytest.raises(errors.IdempotencyConflict):  # the key names a reversal of something else
        books.reverse("T1:0021", "alloc:1")
    with pytest.raises(errors.IdempotencyConflict):  # the key names a settlement, not a reversal
        books.reverse("T1:0020", "alloc:1")
    assert books.get("T1:0022") is None
    books.check_invariants()


def test_reversal_after_partial_refund_reverses_the_rest(books: Ledger) -> None:
    before = snapshot(books)
    books.post("T1:0030", "medical", visit())
    books.post("T1:0031", "refund", [Transfer("HOSP", "P1", 1_000)], links_to="T1:0030")
    rev = books.reverse("T1:0032", "T1:0030")
    assert Transfer("HOSP", "P1", 2_000, "acct_pay") in rev.transfers
    assert snapshot(books) == before
    books.post("T1:0033", "medical", [Transfer("POOL", "HOSP", 10)])
    books.post("T1:0034", "refund", [Transfer("HOSP", "POOL", 10)], links_to="T1:0033")
    with pytest.raises(errors.AlreadyReversed):  # nothing left to reverse
        books.reverse("T1:0035", "T1:0033")
    books.check_invariants()


def test_extra_runs_in_the_same_unit(books: Ledger) -> None:
    books.store.ensure_schema(
        ["CREATE TABLE IF NOT EXISTS t_acc (person TEXT PRIMARY KEY, spent BIGINT NOT NULL)"]
    )
    calls: list[str] = []

    def bump(tx: Tx, p: Posting) -> None:
        calls.append(p.key)
        tx.execute(
            "INSERT INTO t_acc (person, spent) VALUES (?, ?)"
            " ON CONFLICT (person) DO UPDATE SET spent = t_acc.spent + excluded.spent",
            ("P1", sum(t.amount for t in p.transfers)),
        )

    def fail(tx: Tx, p: Posting) -> None:
        bump(tx, p)
        raise errors.InvalidState("policy says no")

    books.post("T1:0040", "medical", visit(), extra=bump)
    books.post("T1:0040", "medical", visit(), extra=bump)  # repeat: extra not run again
    before = snapshot(books)
    with pytest.raises(errors.InvalidState):
        books.post("T1:0041", "medical", visit(), extra=fail)
    assert books.get("T1:0041") is None and snapshot(books) == before
    assert (
        books.store.read(lambda tx: tx.value("SELECT spent FROM t_acc WHERE person = ?", ("P1",))) == 10_000
    )
    assert calls == ["T1:0040", "T1:0041"]


def test_post_with_builds_once_from_state(books: Ledger) -> None:
    books.store.ensure_schema(
        ["CREATE TABLE IF NOT EXISTS t_ded (person TEXT PRIMARY KEY, used BIGINT NOT NULL)"]
    )
    builds: list[int] = []

    def build(tx: Tx) -> Draft:
        used = tx.value(f"SELECT used FROM t_ded WHERE person = ?{tx.for_update}", ("P1",)) or 0
        builds.append(used)
        pool = 8_000 if used else 6_000  # the split depends on the accumulator
        tx.execute(
            "INSERT INTO t_ded (person, used) VALUES (?, 1)"
            " ON CONFLICT (person) DO UPDATE SET used = t_ded.used + 1",
            ("P1",),
        )
        return Draft(
            "medical",
            [Transfer("POOL", "HOSP", pool), Transfer("CASH", "HOSP", 10_000 - pool)],
            payload={"used_before": used},
        )

    a = books.post_with("T1:0050", build, request_hash="bill-1")
    assert books.post_with("T1:0050", build, request_hash="bill-1") == a
    with pytest.raises(errors.IdempotencyConflict):
        books.post_with("T1:0050", build, request_hash="bill-2")
    b = books.post_with("T1:0051", build, request_hash="bill-1b")
    assert builds == [0, 1]
    assert a.transfers[0].amount == 6_000 and b.transfers[0].amount == 8_000
    assert books.get("T1:0051") == b and b.payload == {"used_before": 1}

    def bad(tx: Tx) -> Draft:
        tx.execute("UPDATE t_ded SET used = 99")
        return Draft("medical", [Transfer("P1", "HOSP", 10**9)])

    with pytest.raises(errors.InsufficientFunds):
        books.post_with("T1:0052", bad, request_hash="bill-3")
    assert books.store.read(lambda tx: tx.value("SELECT used FROM t_ded")) == 2
    assert books.get("T1:0052") is None
    assert [k for _, p in books.postings() for k in [p.key]] == ["alloc:1", "T1:0050", "T1:0051"]
    books.check_invariants()


def test_transaction_spans_several_calls(books: Ledger) -> None:
    before = snapshot(books)
    with pytest.raises(RuntimeError), books.transaction():
        books.post("T1:0060", "medical", visit())
        assert books.get("T1:0060") is not None  # visible inside the unit
        assert books.balance("P1") == 7_000
        raise RuntimeError("crash before commit")
    assert books.get("T1:0060") is None and snapshot(books) == before
    with books.transaction():
        books.post("T1:0061", "medical", visit())
        with pytest.raises(errors.InsufficientFunds):  # a failing inner call undoes only itself
            books.post("T1:0062", "medical", visit(acct=9_000))
        books.post("T1:0063", "medical", [Transfer("POOL", "HOSP", 1)])
    assert books.get("T1:0061") and books.get("T1:0063") and books.get("T1:0062") is None
    books.check_invariants()


def test_failing_requests_do_not_poison_a_batch(books: Ledger) -> None:
    """Many threads, half the requests fail: every good one is posted, every bad one is not."""
    books.post("fund:2", "allocation", [Transfer("EXT", "P2", 100)])
    results: dict[str, str] = {}

    def worker(i: int) -> None:
        for j in range(20):
            key = f"T{i}:{j}"
            src = "P2" if j % 2 else "POOL"  # P2 holds 100 fen: odd requests of 1,000 fail
            try:
                books.post(key, "medical", [Transfer(src, "HOSP", 1_000 if j % 2 else 1)])
                results[key] = "ok"
            except errors.InsufficientFunds:
                results[key] = "refused"

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(v == "ok" for v in results.values()) == 80
    for key, outcome in results.items():
        assert (books.get(key) is not None) == (outcome == "ok")
    assert books.balance("P2") == 100
    books.check_invariants()


def test_check_invariants_detects_tampering(books: Ledger) -> None:
    books.post("T1:0070", "medical", visit())
    books.check_invariants()
    books.store.run(
        lambda tx: tx.execute(
            "UPDATE ledger_accounts SET credits_posted = credits_posted + 1 WHERE code = 'HOSP'"
        )
    )
    with pytest.raises(errors.InvariantViolation) as exc:
        books.check_invariants()
    text = str(exc.value)
    assert "invariant 1" in text and "invariant 5" in text
