"""The ledger core: integer fen, accounts, balanced idempotent postings, their invariants, and the stores.

This package is the ledger's public API: the schemes, reconciliation and the service import what they use
from here (and a store backend from `settlement.ledger.store.sqlite` / `.postgres`), never a module inside
it. It imports nothing above it: no scheme, no reconciliation, no HTTP.
"""

from settlement.ledger.batch import OneByOne, PostReq, marks, write_rows
from settlement.ledger.clock import CST, Clock, utc_now
from settlement.ledger.idempotency import check_key, issued_by, make_key, request_hash
from settlement.ledger.ledger import Ledger
from settlement.ledger.model import MAX_AMOUNT, Account, AccountKind, Draft, Posting, Transfer
from settlement.ledger.money import Fen, apply_ratio, fen, ratio
from settlement.ledger.store.base import Store, Tx
from settlement.ledger.store.batching import Retry
from settlement.ledger.store.open import open_store

__all__ = [
    "CST", "MAX_AMOUNT", "Account", "AccountKind", "Clock", "Draft", "Fen", "Ledger", "OneByOne", "PostReq", "Posting",
    "Retry", "Store", "Transfer", "Tx", "apply_ratio", "check_key", "fen", "issued_by", "make_key", "marks",
    "open_store", "ratio",
    "request_hash", "utc_now", "write_rows",
]
