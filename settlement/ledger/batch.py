"""The ledger's SQL for postings, shared by one-by-one posts and group commits.

A batch of plain posts handed over by the store (`Ledger._post_many`) claims its keys with one multi-row
statement, decides every request in Python against running balances, then moves the money and journals
the transfers with one statement each (up to ROWS rows per statement). Everything a batch needs of a
request is precomputed by its caller's thread (`PostReq`), because the writer thread is the bottleneck.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from settlement.errors import InsufficientFunds, UnknownAccount
from settlement.ledger.model import POSTED, Posting, Transfer
from settlement.ledger.store.base import Tx

_CLAIM = (
    "INSERT INTO ledger_postings (key, kind, payload, request_hash, created_at, status)"
    " VALUES (?, ?, ?, ?, ?, 'posted') ON CONFLICT (key) DO NOTHING RETURNING seq"
)
# Multi-row statements: one statement (one sqlite3_step, one round trip) per up to ROWS rows.
ROWS = 64
CLAIM_HEAD = "INSERT INTO ledger_postings (key, kind, payload, request_hash, created_at, status) VALUES "
CLAIM_ROW = "(?, ?, ?, ?, ?, 'posted')"
CLAIM_TAIL = " ON CONFLICT (key) DO NOTHING RETURNING key, seq"
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


def post_req(
    key: str,
    kind: str,
    ts: tuple[Transfer, ...],
    payload: dict[str, Any] | None,
    payload_json: str,
    rhash: str,
    created: str,
) -> PostReq:
    deltas = deltas_of(ts)
    if not payload:
        payload = {}
    elif all(type(k) is str and type(v) in _SCALARS for k, v in payload.items()):
        payload = dict(payload)  # what json.loads(payload_json) would give, for less
    else:
        payload = json.loads(payload_json)
    return PostReq(
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


def overdraft(r: PostReq, running: dict[str, int], cache: dict[str, bool]) -> Exception | None:
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


