"""The ledger's model: accounts and their kinds, transfers, postings, drafts, the request checks and the
tables (`schema()`). See settlement/ledger/ledger.py for the sign convention and the invariants."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from settlement.errors import InvalidAmount, InvalidRequest
from settlement.ledger.money import fen
from settlement.wire import MAX_FEN

MAX_AMOUNT = MAX_FEN  # the contract's largest amount (settlement.wire)
"""Largest single transfer in fen (10 trillion yuan): keeps every total far inside 64-bit integers."""

MAX_CODE_LENGTH = 200
REVERSAL = "reversal"
"""Posting kind reserved for `Ledger.reverse()`."""
POSTED, REVERSED = "posted", "reversed"
PENDING = "(pending)"


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
            check_code(d, "debit")
            check_code(c, "credit")
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


def check_code(code: object, what: str) -> None:
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


def dump_payload(payload: dict[str, Any] | None) -> str:
    if payload is None:
        return "{}"
    if not isinstance(payload, dict):
        raise InvalidRequest("payload must be a dict")
    try:
        return _canonical(payload)
    except (TypeError, ValueError) as e:
        raise InvalidRequest(f"payload is not JSON-serialisable: {e}") from e


def check_transfers(transfers: object) -> tuple[Transfer, ...]:
    if isinstance(transfers, (str, bytes)) or not isinstance(transfers, Iterable):
        raise InvalidRequest("transfers must be a sequence of Transfer")
    ts = tuple(transfers)
    if not ts:
        raise InvalidRequest("a posting needs at least one transfer")
    for t in ts:
        if type(t) is not Transfer:
            raise InvalidRequest(f"not a Transfer: {t!r}")
    return ts


def check_kind(kind: object) -> str:
    if type(kind) is not str or not kind or len(kind) > MAX_CODE_LENGTH:
        raise InvalidRequest("kind must be a non-empty string")
    if kind in (REVERSAL, PENDING):
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


