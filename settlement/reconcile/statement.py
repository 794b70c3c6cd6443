"""Bank or fund statement files, to reconcile the ledger's fund accounts against.

CSV layout (UTF-8, comma-separated, this exact header on line 1):

    value_date,account,reference,debit,credit,description

  value_date   YYYY-MM-DD, the business day the movement belongs to
  account      the ledger account the statement is for, e.g. 110000/fund/hifp (settlement/schemes/chart.py)
  reference    a ledger posting key (a settlement "T0001:000123", a refund, a void, a clearing posting),
               or a batch id: the part of keys before a ':' (e.g. "T0001" stands for everything terminal
               T0001 moved on the account that day)
  debit        money out of the account, in yuan with exactly two decimals ("1234.56"); or empty
  credit       money into the account, same format; exactly one of debit and credit is given, above 0
  description  free text, may be empty

The ledger's sign agrees: a debit lowers the account's balance (credits_posted - debits_posted).
`InvalidStatementRow` names the file, the row (1 = first data row) and the field of any mistake.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from settlement.errors import InvalidStatementRow
from settlement.reconcile.encoding import DEFAULT, hint, undecodable
from settlement.wire import check_day, yuan

FIELDS = ("value_date", "account", "reference", "debit", "credit", "description")
CSV_HEADER = ",".join(FIELDS)
_YUAN = re.compile(r"(\d{1,13})\.(\d{2})")
_REF = re.compile(r"[A-Za-z0-9_.:\-/]{1,200}")


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One statement movement; `debit`/`credit` in fen (one of them 0)."""

    value_date: str
    account: str
    reference: str
    debit: int = 0
    credit: int = 0
    description: str = ""

    @property
    def net(self) -> int:
        """Credit minus debit, in fen (the ledger's sign)."""
        return self.credit - self.debit


class _Bad(Exception):
    def __init__(self, fld: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = fld, message


def _amount(text: str, fld: str) -> int:
    if not text:
        return 0
    m = _YUAN.fullmatch(text)
    if m is None:
        raise _Bad(fld, f"{fld} must be yuan with exactly two decimals, e.g. 1234.50, got {text!r}")
    return int(m.group(1)) * 100 + int(m.group(2))


def parse_values(values: list[str]) -> StatementLine:
    """Validate one CSV record into a StatementLine."""
    if len(values) != len(FIELDS):
        raise _Bad("(row)", f"expected {len(FIELDS)} columns ({CSV_HEADER}), got {len(values)}")
    day, account, ref, debit_t, credit_t, desc = (v.strip() for v in values)
    try:
        check_day(day)
    except ValueError as e:
        raise _Bad("value_date", str(e)) from None
    if not account or len(account) > 200:
        raise _Bad("account", "account must name a ledger account, e.g. 110000/fund/hifp")
    if not _REF.fullmatch(ref):
        raise _Bad("reference", f"reference must be a posting key or batch id, got {ref!r}")
    debit, credit = _amount(debit_t, "debit"), _amount(credit_t, "credit")
    if bool(debit_t) == bool(credit_t):
        raise _Bad("debit", "give exactly one of debit and credit")
    if debit + credit == 0:
        raise _Bad("debit" if debit_t else "credit", "the amount must be above 0.00")
    return StatementLine(day, account, ref, debit, credit, desc)


def iter_statement(src: str | Path | IO[str], *, encoding: str = DEFAULT) -> Iterator[tuple[int, StatementLine]]:
    """(row number, line) for every data row of a statement CSV; InvalidStatementRow on any mistake."""
    if isinstance(src, (str, Path)):
        try:
            f = open(src, encoding=encoding, newline="")  # noqa: SIM115
        except OSError as e:
            raise InvalidStatementRow(f"cannot read statement file {src}: {e.strerror}", file=str(src), row=0) from None
        name, close = Path(src).name, True
    else:
        f, name, close = src, getattr(src, "name", "statement"), False
    try:
        reader = csv.reader(f, strict=True)
        n = 0
        try:
            header = next(reader, None)
            if header is None or [h.strip().lstrip("\ufeff") for h in header] != list(FIELDS):
                raise InvalidStatementRow(f"{name}: line 1 must be the header {CSV_HEADER}", file=name, row=0)
            for values in reader:
                n += 1
                if not values:
                    continue
                try:
                    yield n, parse_values(values)
                except _Bad as e:
                    raise InvalidStatementRow(f"{name} row {n}: {e.field}: {e.message}", file=name, row=n,
                                              field=e.field) from None
        except UnicodeDecodeError:
            row, what = (undecodable(src, encoding, header=True) if isinstance(src, (str, Path))
                         else (n + 1, f"not {encoding.upper()} text"))
            raise InvalidStatementRow(f"{name} row {row}: {what}; {hint(encoding)}", file=name, row=row,
                                      field="(encoding)", encoding=encoding) from None
        except csv.Error as e:
            raise InvalidStatementRow(f"{name} row {n + 1}: unreadable CSV: {e}", file=name, row=n + 1) from None
    finally:
        if close:
            f.close()


def read_statement(src: str | Path | IO[str], *, encoding: str = DEFAULT) -> list[StatementLine]:
    return [line for _, line in iter_statement(src, encoding=encoding)]


def write_statement(lines: Iterable[StatementLine], dest: str | Path | IO[str]) -> int:
    """Write a statement CSV; returns the number of lines."""
    if isinstance(dest, (str, Path)):
        with open(dest, "w", encoding="utf-8", newline="") as f:
            return write_statement(lines, f)
    w = csv.writer(dest, lineterminator="\n")
    w.writerow(FIELDS)
    n = 0
    for ln in lines:
        w.writerow([ln.value_date, ln.account, ln.reference, yuan(ln.debit) if ln.debit else "",
                    yuan(ln.credit) if ln.credit else "", ln.description])
        n += 1
    return n
