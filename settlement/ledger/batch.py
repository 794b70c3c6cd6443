"""The ledger's SQL for postings, shared by one-by-one posts and batches.

A batch of posts (`Ledger.post_batch`: the plain posts and refunds the store hands over together, or a
scheme's batch of settlements) claims its keys with one multi-row statement, decides every request in
Python against running balances, then journals the transfers with one statement (up to ROWS rows per
statement). Accounts that may not go negative are locked (on a server) and updated at once; the others
(funds, hospital and cash accounts) are incremented once per transaction, just before COMMIT, from
increments deferred on the transaction (settlement.ledger.store.base). Everything a plain post needs is
precomputed by its caller's thread (`PostReq`), because the writer thread is the bottleneck.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from settlement.errors import InsufficientFunds, InvalidRequest, RefundTooLarge, UnknownAccount
from settlement.ledger.model import POSTED, Posting, Transfer
from settlement.ledger.store.base import Tx

_CLAIM = (
    "INSERT INTO ledger_postings (key, kind, payload, request_hash, created_at, status)"
    " VALUES (?, ?, ?, ?, ?, 'posted') ON CONFLICT (key) DO NOTHING RETURNING seq"
)
# Multi-row statements: one statement (one sqlite3_step, one round trip) per up to ROWS rows.
ROWS = 64
CLAIM_HEAD = "INSERT INTO ledger_postings (key, kind, payload, request_hash, created_at, links_to, status) VALUES "
CLAIM_ROW = "(?, ?, ?, ?, ?, ?, 'posted')"
CLAIM_TAIL = " ON CONFLICT (key) DO NOTHING RETURNING key, seq"
CLAIM_COLS = 6
JOURNAL_HEAD = "INSERT INTO ledger_transfers (posting_seq, idx, debit, credit, amount, memo) VALUES "
JOURNAL_ROW = "(?, ?, ?, ?, ?, ?)"
_APPLY_HEAD = (
    "UPDATE ledger_accounts SET debits_posted = debits_posted + v.column2,"
    " credits_posted = credits_posted + v.column3 FROM (VALUES "
)
_APPLY_TAIL = ") AS v WHERE code = v.column1"
_APPLY = (
    "UPDATE ledger_accounts SET debits_posted = debits_posted + ?, credits_posted = credits_posted + ?"
    " WHERE code = ?"
)


class OneByOne(Exception):
    """Raised by a batch handler to have the store run the batch's requests one at a time."""


@dataclass(slots=True)
class PostReq:
    """A checked post on its way to `Ledger.post_batch`; for a plain `post()` everything the writer needs is
    precomputed by the caller's thread (the writer thread is the bottleneck; callers run while it waits)."""

    key: str
    kind: str
    ts: tuple[Transfer, ...]
    payload_json: str
    rhash: str
    created: str
    deltas: dict[str, list[int]]  # account -> [debited, credited]
    posting: Posting | None  # the answer if it is posted (None: built on demand, `answer()`)
    claim: list[Any]  # ledger_postings values for the claim (CLAIM_COLS)
    journal: list[Any]  # ledger_transfers values, flat, six per transfer, seq first (set by the writer)
    links_to: str | None = None  # a refund: the original it moves money back along

    def answer(self) -> Posting:
        """The posting this request makes, if it is posted."""
        if self.posting is None:
            self.posting = Posting(self.key, self.kind, self.ts, self.links_to, json.loads(self.payload_json),
                                   self.created, POSTED, self.rhash)
        return self.posting


_SCALARS = (str, int, bool, type(None))


def post_req(
    key: str,
    kind: str,
    ts: tuple[Transfer, ...],
    payload: dict[str, Any] | None,
    payload_json: str,
    rhash: str,
    created: str,
    links_to: str | None = None,
    *,
    answer: bool = True,
) -> PostReq:
    """A checked request (see `Ledger.post`) made ready for `Ledger.post_batch`; with `answer`, its Posting is
    built now (in the caller's thread) rather than on demand."""
    deltas = deltas_of(ts)
    posting = None
    if answer:
        if not payload:
            payload = {}
        elif all(type(k) is str and type(v) in _SCALARS for k, v in payload.items()):
            payload = dict(payload)  # what json.loads(payload_json) would give, for less
        else:
            payload = json.loads(payload_json)
        posting = Posting(key, kind, ts, links_to, payload, created, POSTED, rhash)
    return PostReq(
        key,
        kind,
        ts,
        payload_json,
        rhash,
        created,
        deltas,
        posting,
        [key, kind, payload_json, rhash, created, links_to],
        [x for i, t in enumerate(ts) for x in (0, i, t.debit, t.credit, t.amount, t.memo)],
        links_to,
    )


def deltas_of(ts: Iterable[Transfer]) -> dict[str, list[int]]:
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


def overdraft(deltas: dict[str, list[int]], running: dict[str, int], cache: dict[str, bool]) -> Exception | None:
    """The error that moving `deltas` now would raise (unknown account, overdraft of a guarded account
    whose running balance is in `running`), or None."""
    for c, (d, cr) in deltas.items():
        if c not in cache:
            return UnknownAccount(f"no account {c!r}", account=c)
        bal = running.get(c)
        if bal is not None and d > cr and bal - d + cr < 0:
            return InsufficientFunds(
                f"account {c!r} has {bal} fen, the posting needs {d - cr}",
                account=c,
                balance=bal,
                needed=d - cr,
            )
    return None


def refund_error(original_key: str, ts: Iterable[Transfer], remaining: dict[tuple[str, str], int]) -> Exception | None:
    """The error that linking `ts` to the original would raise, given what may still move back per pair of
    the original (`remaining`), or None."""
    sums = pair_sums(ts)
    for (debit, credit), amount in sums.items():
        pair = (credit, debit)  # a refund moves money back along a transfer of the original
        if pair not in remaining:
            return InvalidRequest(
                f"refund transfer {debit}->{credit} does not reverse any transfer of {original_key!r}",
                key=original_key,
            )
        if amount > remaining[pair]:
            return RefundTooLarge(
                f"refund of {amount} fen {debit}->{credit} exceeds the {remaining[pair]} fen refundable",
                key=original_key,
                refundable=remaining[pair],
                requested=amount,
            )
    return None


def take_back(ts: Iterable[Transfer], remaining: dict[tuple[str, str], int]) -> None:
    """Lower what may still move back per pair of an original by what a refund `ts` moves back."""
    for (debit, credit), amount in pair_sums(ts).items():
        remaining[(credit, debit)] -= amount


def replayed(p: Posting) -> Posting:
    return Posting(
        p.key, p.kind, p.transfers, p.links_to, p.payload, p.created_at, p.status, p.request_hash, True
    )


def marks(n: int) -> str:
    return ",".join("?" * n)


@cache
def values_sql(head: str, row: str, n: int, tail: str) -> str:
    return head + ",".join([row] * n) + tail


def write_rows(tx: Tx, head: str, row: str, rows: Sequence[tuple[Any, ...]], tail: str = "") -> int:
    """Run `head (row),(row),... tail` over `rows`, ROWS rows per statement; total rows changed."""
    n = 0
    for i in range(0, len(rows), ROWS):
        chunk = rows[i : i + ROWS]
        n += tx.execute(values_sql(head, row, len(chunk), tail), [v for r in chunk for v in r])
    return n


def write_flat(tx: Tx, head: str, row: str, ncols: int, flat: list[Any]) -> None:
    """Like write_rows, for values already flattened (`ncols` per row)."""
    step = ROWS * ncols
    for i in range(0, len(flat), step):
        chunk = flat[i : i + step]
        tx.execute(values_sql(head, row, len(chunk) // ncols, ""), chunk)


def journal(tx: Tx, rows: Sequence[tuple[Any, ...]]) -> None:
    write_rows(tx, JOURNAL_HEAD, JOURNAL_ROW, rows)


def apply_totals(tx: Tx, totals: dict[str, list[int]]) -> bool:
    """Add [debits, credits] to each account, in code order; False if an account is missing."""
    codes = sorted(totals)
    if tx.for_update:  # server: row locks are taken statement by statement, in code order
        n = tx.executemany(_APPLY, [(totals[c][0], totals[c][1], c) for c in codes])
    else:  # single writer: one UPDATE ... FROM (VALUES ...) statement
        rows = [(c, totals[c][0], totals[c][1]) for c in codes]
        n = write_rows(tx, _APPLY_HEAD, "(?, ?, ?)", rows, _APPLY_TAIL)
    return n == len(codes)


def claim(tx: Tx, key: str, kind: str, payload_json: str, rhash: str, created: str) -> int | None:
    """Insert the posting row if `key` is new and return its seq; None if the key exists.

    On PostgreSQL a concurrent claim of the same key waits here until the first one commits."""
    rows = tx.rows(_CLAIM, (key, kind, payload_json, rhash, created))
    return int(rows[0][0]) if rows else None


def pair_sums(ts: Iterable[Transfer]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for t in ts:
        out[(t.debit, t.credit)] = out.get((t.debit, t.credit), 0) + t.amount
    return out


