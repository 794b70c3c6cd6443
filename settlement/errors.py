"""Typed settlement errors: every one carries a stable code and a message a counter clerk can read.

Codes are data: the table below is the one place they are defined, and the service maps them to HTTP
statuses. A failed request raises one of these before anything is posted.
"""

from __future__ import annotations


class SettlementError(Exception):
    """Base class: `code` is stable (clients switch on it), `message` is for people."""

    code: str = "SETTLEMENT_ERROR"
    http_status: int = 400

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "details": self.details}


def _error(name: str, code: str, http_status: int = 400, doc: str = "",
           base: type[SettlementError] = SettlementError) -> type[SettlementError]:
    return type(name, (base,), {"code": code, "http_status": http_status, "__doc__": doc})


InvalidAmount = _error(
    "InvalidAmount",
    "INVALID_AMOUNT",
    422,
    "An amount is negative, zero where not allowed, or not integer fen.",
)
UnknownPerson = _error("UnknownPerson", "UNKNOWN_PERSON", 404, "No insured person with that id.")
UnknownRegion = _error("UnknownRegion", "UNKNOWN_REGION", 404, "No region with that code.")
UnknownPolicy = _error("UnknownPolicy", "UNKNOWN_POLICY", 404, "No policy for that region, category or year.")
UnknownAccount = _error("UnknownAccount", "UNKNOWN_ACCOUNT", 404, "No ledger account with that code.")
UnknownTransaction = _error("UnknownTransaction", "UNKNOWN_TRANSACTION", 404, "No posting with that key.")
UnbalancedPosting = _error("UnbalancedPosting", "UNBALANCED_POSTING", 500, "Transfers would not sum to zero.")
InsufficientFunds = _error(
    "InsufficientFunds", "INSUFFICIENT_FUNDS", 409, "An account may not go below zero."
)
IdempotencyConflict = _error(
    "IdempotencyConflict", "IDEMPOTENCY_CONFLICT", 409, "The key was used before with a different request."
)
RefundTooLarge = _error(
    "RefundTooLarge", "REFUND_TOO_LARGE", 409, "A refund exceeds what was paid and not yet refunded."
)
AlreadyReversed = _error(
    "AlreadyReversed", "ALREADY_REVERSED", 409, "The transaction was already reversed or voided."
)
NotCertified = _error(
    "NotCertified", "NOT_CERTIFIED", 403, "No valid eligibility certification in the last 12 months."
)
BenefitSuspended = _error(
    "BenefitSuspended", "BENEFIT_SUSPENDED", 403, "The benefit is suspended or terminated."
)
InvalidState = _error("InvalidState", "INVALID_STATE", 409, "The operation does not fit the current state.")
InvalidRequest = _error("InvalidRequest", "INVALID_REQUEST", 422, "The request is malformed.")
StoreUnavailable = _error(
    "StoreUnavailable",
    "STORE_UNAVAILABLE",
    503,
    "The store could not commit; nothing was posted, retry with the same key.",
)
Overloaded = _error(
    "Overloaded",
    "OVERLOADED",
    503,
    "The service has more requests waiting than it can answer in time; nothing was done: retry with the same key "
    "after the seconds the Retry-After header says.",
)


class InvariantViolation(AssertionError):
    """A ledger invariant does not hold; `problems` lists each one. A bug, never a client error."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("ledger invariants violated:\n  " + "\n  ".join(problems))
        self.problems = problems


InvalidPolicy = _error(
    "InvalidPolicy",
    "INVALID_POLICY",
    500,
    "A policy file is malformed; the message names the file and field.",
)
UnknownVisit = _error("UnknownVisit", "UNKNOWN_VISIT", 404, "No registered visit with that id.")
DeathReported = _error(
    "DeathReported", "DEATH_REPORTED", 403, "The person has been reported dead; benefits are stopped."
)
Unauthorized = _error("Unauthorized", "UNAUTHORIZED", 401, "The terminal key is missing or not valid.")
RequestTooLarge = _error("RequestTooLarge", "REQUEST_TOO_LARGE", 413,
                         "The request body is over the service's limit; it was not read, nothing was done.")
UnknownInstitution = _error(
    "UnknownInstitution", "UNKNOWN_INSTITUTION", 404, "No designated institution with that code."
)
Forbidden = _error("Forbidden", "FORBIDDEN", 403, "This terminal may not make this request.")
# the scoping rules (settlement/api/scope.py): each refusal names its rule in details["rule"]
OtherInstitution = _error(
    "OtherInstitution", "OTHER_INSTITUTION", 403,
    "The terminal acts only for its own institution (rule own_institution).", Forbidden,
)
NotOwnKey = _error(
    "NotOwnKey", "NOT_OWN_KEY", 403,
    "A void, reversal or lookup names a key another terminal issued (rule own_key).", Forbidden,
)
CardProofRequired = _error(
    "CardProofRequired", "CARD_PROOF_REQUIRED", 403,
    "Person data and acts on a person need the person's card: its card number from a read in the same flow "
    "(rule card_proof).", Forbidden,
)
CardProofMismatch = _error(
    "CardProofMismatch", "CARD_PROOF_MISMATCH", 403,
    "The card number given is not the person's card on record (rule card_proof).", Forbidden,
)
ReasonRequired = _error(
    "ReasonRequired", "REASON_REQUIRED", 422,
    "An operator's void or refund, or a refund of another terminal's settlement, needs a reason (rule reason).",
)
BillTooLarge = _error(
    "BillTooLarge", "BILL_TOO_LARGE", 422,
    "The bill exceeds the policy's ceiling per bill (rule max_bill) or its number of fee lines (rule max_fee_lines).",
)
PinCheckUnavailable = _error(
    "PinCheckUnavailable",
    "PIN_CHECK_UNAVAILABLE",
    503,
    "The centre could not check the PIN block (no PIN verifier configured, or its HSM did not answer); "
    "nothing was recorded: try again.",
)
ServiceUnreachable = _error(
    "ServiceUnreachable",
    "SERVICE_UNREACHABLE",
    503,
    "The settlement service did not answer in time; the outcome is unknown: void with the same key.",
)
InvalidJournalRow = _error(
    "InvalidJournalRow",
    "INVALID_JOURNAL_ROW",
    422,
    "A row of a terminal journal file is malformed; the message names the file, row and field.",
)
InvalidStatementRow = _error(
    "InvalidStatementRow",
    "INVALID_STATEMENT_ROW",
    422,
    "A row of a bank or fund statement file is malformed; the message names the file, row and field.",
)
UnknownTerminal = _error("UnknownTerminal", "UNKNOWN_TERMINAL", 404, "No registered terminal with that id.")
DayClosed = _error(
    "DayClosed", "DAY_CLOSED", 409, "The business day is closed: it cannot be re-imported, reconciled or repaired."
)
PeriodOverlap = _error(
    "PeriodOverlap", "PERIOD_OVERLAP", 409, "The clearing period overlaps a period already cleared."
)
UnknownCard = _error(
    "UnknownCard", "UNKNOWN_CARD", 404,
    "The centre has no card with that number or identification code (or they do not belong together).",
)
CardReportedLost = _error("CardReportedLost", "CARD_REPORTED_LOST", 403, "The card was reported lost (挂失).")
CardCancelled = _error("CardCancelled", "CARD_CANCELLED", 403, "The card was cancelled (注销).")
CardReplaced = _error("CardReplaced", "CARD_REPLACED", 403, "The card was replaced by a new card (补换卡).")
CardExpired = _error("CardExpired", "CARD_EXPIRED", 403, "The card is past its expiry date.")
CardNotPersons = _error(
    "CardNotPersons", "CARD_NOT_PERSONS", 409, "The card belongs to another person than the one named."
)
NoCardOfRecord = _error(
    "NoCardOfRecord", "NO_CARD_OF_RECORD", 409, "The person has no card at the centre (issue one first)."
)
NoLedger = _error(
    "NoLedger",
    "NO_LEDGER",
    404,
    "There is no ledger where the command looked (a mistyped path or DSN?); a new one is only made when asked.",
)
IncompleteJournal = _error(
    "IncompleteJournal",
    "INCOMPLETE_JOURNAL",
    422,
    "A terminal journal has no complete trailer, or its trailer disagrees with the file (cut short or changed): "
    "repairs are refused on it.",
)
RepairThreshold = _error(
    "RepairThreshold",
    "REPAIR_THRESHOLD",
    409,
    "A repair would void more than the allowed share of a terminal's day; nothing was changed.",
)
InvalidEnrolmentRow = _error(
    "InvalidEnrolmentRow",
    "INVALID_ENROLMENT_ROW",
    422,
    "A row of an enrolment import is malformed (the message names the file, row and field); nothing was imported.",
)
EnrolmentConflict = _error(
    "EnrolmentConflict",
    "ENROLMENT_CONFLICT",
    409,
    "A row of an enrolment import contradicts what the centre holds (the message names it); nothing was imported.",
)
NoData = _error(
    "NoData",
    "NO_DATA",
    404,
    "The business day has no journal lines and no centre postings: nothing was reconciled (wrong day or ledger?).",
)
