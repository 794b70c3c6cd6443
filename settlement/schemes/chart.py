"""Chart of accounts: the ledger account codes the settlement flows use, in one place.

Ledger sign convention: a transfer's debit side gives and its credit side receives (balance = credits -
debits). Funds and sources (patient cash, external money) therefore run negative as they pay out;
what an institution is owed, and what a region owes another, run positive.

    {region}/fund/hifp|hifob|hifmi|maf   the region's pooled, large-amount, critical-illness, assistance funds
    {region}/fund/pension                 the region's pension fund
    {region}/patient-cash                 source of the cash patients pay at counters (psn_cash_pay)
    {region}/external                     money entering the books (contributions, allocations)
    {region}/payable/{other}              what `region` owes `other` for cross-region care or collection
    {region}/receivable/{other}           what `other` owes `region` (negative while unpaid)
    inst/{code}/payable                   what the funds owe institution `code` (fund + account part)
    inst/{code}/cash                      cash taken (medical) or paid out (pension) at the counter
    person/{id}/account                   personal medical account (个人账户), never negative
    person/{id}/pension                   pensioner account, never negative
"""

from __future__ import annotations

from collections.abc import Iterable

from settlement.ledger import AccountKind, Ledger, Tx, marks

FUND_KINDS = {
    "hifp": AccountKind.POOLED_FUND,
    "hifob": AccountKind.LARGE_AMOUNT_FUND,
    "hifmi": AccountKind.CRITICAL_ILLNESS_FUND,
    "maf": AccountKind.MEDICAL_ASSISTANCE_FUND,
}


def fund(region: str, name: str) -> str:
    return f"{region}/fund/{name}"


def pension_fund(region: str) -> str:
    return f"{region}/fund/pension"


def patient_cash(region: str) -> str:
    return f"{region}/patient-cash"


def external(region: str) -> str:
    return f"{region}/external"


def payable(region: str, other: str) -> str:
    return f"{region}/payable/{other}"


def receivable(region: str, other: str) -> str:
    return f"{region}/receivable/{other}"


def institution_payable(code: str) -> str:
    return f"inst/{code}/payable"


def institution_cash(code: str) -> str:
    return f"inst/{code}/cash"


def personal_account(person_id: str) -> str:
    return f"person/{person_id}/account"


def pensioner_account(person_id: str) -> str:
    return f"person/{person_id}/pension"


def open_region(ledger: Ledger, region: str) -> None:
    """Open a region's fund and source accounts (idempotent)."""
    for name, kind in FUND_KINDS.items():
        ledger.open_account(fund(region, name), kind, region=region)
    ledger.open_account(pension_fund(region), AccountKind.PENSION_FUND, region=region)
    ledger.open_account(patient_cash(region), AccountKind.PATIENT_CASH, region=region)
    ledger.open_account(external(region), AccountKind.EXTERNAL, region=region)


def open_between(ledger: Ledger, creditor: str, debtor: str) -> None:
    """Open the pair of accounts for `debtor` owing `creditor` (idempotent)."""
    ledger.open_account(receivable(creditor, debtor), AccountKind.INTERREGIONAL_RECEIVABLE, region=creditor)
    ledger.open_account(payable(debtor, creditor), AccountKind.INTERREGIONAL_PAYABLE, region=debtor)


def ensure_between(ledger: Ledger, tx: Tx, pairs: Iterable[tuple[str, str]]) -> None:
    """In a unit: open the accounts of each (creditor, debtor) pair that are missing (one query to find them)."""
    wanted = sorted(set(pairs))
    if not wanted:
        return
    codes = [c for x, y in wanted for c in (receivable(x, y), payable(y, x))]
    have = {c for (c,) in tx.rows(f"SELECT code FROM ledger_accounts WHERE code IN ({marks(len(codes))})", codes)}
    for x, y in wanted:
        if receivable(x, y) not in have or payable(y, x) not in have:
            open_between(ledger, x, y)


def open_institution(ledger: Ledger, code: str, region: str) -> None:
    ledger.open_account(institution_payable(code), AccountKind.HOSPITAL_PAYABLE, region=region, owner=code)
    ledger.open_account(institution_cash(code), AccountKind.CASH, region=region, owner=code)


def open_person(ledger: Ledger, person_id: str, region: str) -> None:
    ledger.open_account(personal_account(person_id), AccountKind.PERSONAL_ACCOUNT, region=region, owner=person_id)
    ledger.open_account(pensioner_account(person_id), AccountKind.PENSIONER_ACCOUNT, region=region,
                        owner=person_id)
