"""The ledger's invariants (listed in settlement/ledger/ledger.py) as SQL: each query returns the rows that
break one; `check_all` raises InvariantViolation listing every breach."""

from __future__ import annotations

from settlement.errors import InvariantViolation
from settlement.ledger.store.base import Tx

QUERIES: list[tuple[str, str]] = [
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


def check_all(tx: Tx) -> None:
    problems: list[str] = []
    for what, sql in QUERIES:
        rows = tx.rows(sql)
        problems.extend(f"invariant {what}: {tuple(r)}" for r in rows[:20])
    if problems:
        raise InvariantViolation(problems)
