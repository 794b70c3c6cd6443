"""Reconciliation results: differences by class, totals per terminal and fund, statement differences;
written as CSV and JSON.

Difference classes (one row per affected idempotency key, the first class that applies):
  duplicate            the key appears more than once in the terminal journals
  missing_at_centre    confirmed in the journal, no posting at the centre        repair: replay
  missing_at_terminal  posted at the centre (and in force), no journal line      repair: void (settle)
  status_mismatch      in force at one side only: reversed_at_terminal_only, failed_at_terminal or
                       pending_at_terminal (repair: void, for a settle), reversed_at_centre_only (manual)
  amount_mismatch      both sides have it in the same state but amount or breakdown differ (manual)
  journal_missing      a terminal posted at the centre that day but its journal was not imported (manual)
Statement classes: statement_only, ledger_only, statement_amount_mismatch, statement_duplicate.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from settlement.wire import AMOUNTS, PARTS, yuan

CLASSES = ("missing_at_centre", "missing_at_terminal", "amount_mismatch", "status_mismatch", "duplicate",
           "journal_missing")
STATEMENT_CLASSES = ("statement_only", "ledger_only", "statement_amount_mismatch", "statement_duplicate")
TOTAL_FIELDS = ("count", "medfee_sumamt", *PARTS, "pension_pay")
REPAIRABLE = ("replay", "void")

_REASONS = {
    "missing_at_centre": "confirmed in the terminal journal, but the centre has no posting for it",
    "missing_at_terminal": "posted at the centre, but the terminal journal has no line for it",
    "reversed_at_terminal_only": "voided at the terminal, but still in force at the centre",
    "reversed_at_centre_only": "reversed at the centre, but confirmed in the terminal journal",
    "failed_at_terminal": "recorded as failed at the terminal, but posted at the centre",
    "pending_at_terminal": "still without an answer at the terminal (pending), but posted at the centre",
    "amount_mismatch": "amounts differ between the terminal journal and the centre",
    "kind": "the terminal and the centre record different kinds of transaction under this key",
    "duplicate": "the key appears more than once in the terminal journals",
    "journal_missing": "the terminal posted at the centre that day, but its journal was not imported",
}
_REPAIRS = {
    "replay": "repair replays it through the idempotent settlement path",
    "void": "repair voids it at the centre",
    "manual": "needs an operator (repair cannot fix it)",
}


@dataclass(frozen=True)
class Difference:
    """One difference of a business day; amounts (fen) by field name, None for the side without it."""

    business_day: str
    cls: str
    reason: str
    key: str
    terminal_id: str
    kind: str
    original_key: str
    institution_id: str
    journal_status: str
    centre_status: str
    journal: dict[str, int] | None
    centre: dict[str, int] | None
    repair: str
    accepted: bool = False

    @property
    def message(self) -> str:
        """A sentence a settlement operator can act on."""
        what = f"{self.kind} {self.key}"
        amounts = self.journal or self.centre
        if amounts and amounts.get("amount"):
            what += f" ({yuan(amounts['amount'])} yuan)"
        text = f"{what}: {_REASONS.get(self.reason, self.reason)}"
        if self.cls == "amount_mismatch" and self.journal and self.centre:
            deltas = [f"{f} {yuan(self.journal[f])} vs {yuan(self.centre[f])}" for f in AMOUNTS
                      if self.journal[f] != self.centre[f]]
            text += " (terminal vs centre: " + "; ".join(deltas) + ")" if deltas else ""
        text += f"; {_REPAIRS[self.repair]}"
        return text + (" [accepted]" if self.accepted else "")

    def parts_delta(self) -> str:
        """Compact "field:+fen" list of journal minus centre."""
        if not (self.journal and self.centre):
            return ""
        return " ".join(f"{f}:{self.journal[f] - self.centre[f]:+d}" for f in AMOUNTS
                        if self.journal[f] != self.centre[f])


@dataclass(frozen=True)
class Totals:
    """What is in force at the end of the day: count, medical amounts net of refunds, pension paid out."""

    count: int = 0
    medfee_sumamt: int = 0
    hifp_pay: int = 0
    hifob_pay: int = 0
    hifmi_pay: int = 0
    maf_pay: int = 0
    acct_pay: int = 0
    psn_cash_pay: int = 0
    pension_pay: int = 0


@dataclass(frozen=True)
class TerminalTotals:
    terminal_id: str
    journal: Totals
    centre: Totals
    journal_received: bool = True

    @property
    def agree(self) -> bool:
        return self.journal == self.centre


@dataclass(frozen=True)
class StatementDifference:
    """A statement line (or group of lines with one reference) against the ledger; amounts net, in fen."""

    value_date: str
    cls: str
    account: str
    reference: str
    statement_amount: int | None
    ledger_amount: int | None
    rows: tuple[int, ...] = ()
    accepted: bool = False

    @property
    def message(self) -> str:
        st = "none" if self.statement_amount is None else yuan(self.statement_amount)
        lg = "none" if self.ledger_amount is None else yuan(self.ledger_amount)
        where = f" (statement rows {', '.join(map(str, self.rows))})" if self.rows else ""
        return {
            "statement_only": f"{self.reference} on {self.account}: on the statement ({st} yuan) but not in the ledger",
            "ledger_only": f"{self.reference} on {self.account}: in the ledger ({lg} yuan) but not on the statement",
            "statement_amount_mismatch": f"{self.reference} on {self.account}: statement {st} yuan, ledger {lg} yuan",
            "statement_duplicate": f"{self.reference} on {self.account}: appears more than once on the statement",
        }[self.cls] + where


@dataclass(frozen=True)
class AccountTotals:
    account: str
    statement_debit: int
    statement_credit: int
    ledger_debit: int
    ledger_credit: int


@dataclass
class Report:
    """One reconciliation run of a business day."""

    business_day: str
    run_id: int
    at: str
    actor: str
    terminals: list[str]
    totals: list[TerminalTotals]
    differences: list[Difference]
    statement_differences: list[StatementDifference] = field(default_factory=list)
    statement_totals: list[AccountTotals] = field(default_factory=list)
    journal_lines: int = 0
    centre_postings: int = 0
    closed: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def open_differences(self) -> list[Difference]:
        return [d for d in self.differences if not d.accepted]

    @property
    def open_statement_differences(self) -> list[StatementDifference]:
        return [d for d in self.statement_differences if not d.accepted]

    @property
    def clean(self) -> bool:
        """True when nothing is left to explain (accepted differences do not count)."""
        return not self.open_differences and not self.open_statement_differences

    @property
    def empty(self) -> bool:
        """True when the day has no data at all (no journal line, no centre posting, no statement line): "no
        data" is not "clean" (a wrong day, or the wrong ledger)."""
        return not self.journal_lines and not self.centre_postings and not self.statement_totals

    def counts(self) -> dict[str, int]:
        """Open differences by class (every class listed, 0 when none)."""
        out = dict.fromkeys(CLASSES + STATEMENT_CLASSES, 0)
        for d in self.open_differences:
            out[d.cls] += 1
        for s in self.open_statement_differences:
            out[s.cls] += 1
        return out

    def fund_totals(self) -> dict[str, tuple[int, int]]:
        """Per total field: (journal, centre) over all terminals whose journal arrived."""
        out: dict[str, tuple[int, int]] = {}
        for f in TOTAL_FIELDS:
            j = sum(getattr(t.journal, f) for t in self.totals if t.journal_received)
            c = sum(getattr(t.centre, f) for t in self.totals if t.journal_received)
            out[f] = (j, c)
        return out

    # -- serialisation ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (what `dataclasses.asdict` gives, plus `clean`, `counts` and each
        difference's `message`), built field by field: asdict's deep copies cost ~35 us per difference."""
        d = dict(self.__dict__)
        d["terminals"] = list(self.terminals)
        d["totals"] = [{"terminal_id": t.terminal_id, "journal": dict(t.journal.__dict__),
                        "centre": dict(t.centre.__dict__), "journal_received": t.journal_received}
                       for t in self.totals]
        d["differences"] = [{**x.__dict__, "journal": None if x.journal is None else dict(x.journal),
                             "centre": None if x.centre is None else dict(x.centre), "message": x.message}
                            for x in self.differences]
        d["statement_differences"] = [{**x.__dict__, "message": x.message} for x in self.statement_differences]
        d["statement_totals"] = [dict(x.__dict__) for x in self.statement_totals]
        d["timings"] = dict(self.timings)
        d["clean"] = self.clean
        d["counts"] = self.counts()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        def tt(x: dict[str, Any]) -> TerminalTotals:
            return TerminalTotals(x["terminal_id"], Totals(**x["journal"]), Totals(**x["centre"]),
                                  x.get("journal_received", True))

        def sd(x: dict[str, Any]) -> StatementDifference:
            x = {k: v for k, v in x.items() if k != "message"}
            return StatementDifference(**{**x, "rows": tuple(x.get("rows", ()))})

        return cls(
            business_day=d["business_day"], run_id=d["run_id"], at=d["at"], actor=d["actor"],
            terminals=list(d["terminals"]), totals=[tt(x) for x in d["totals"]],
            differences=[Difference(**{k: v for k, v in x.items() if k != "message"}) for x in d["differences"]],
            statement_differences=[sd(x) for x in d.get("statement_differences", [])],
            statement_totals=[AccountTotals(**x) for x in d.get("statement_totals", [])],
            journal_lines=d.get("journal_lines", 0), centre_postings=d.get("centre_postings", 0),
            closed=d.get("closed", False), timings=d.get("timings", {}),
        )

    def write(self, directory: str | Path) -> list[Path]:
        """Write recon-DAY.json, recon-DAY-differences.csv, recon-DAY-totals.csv (and -statement.csv)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"recon-{self.business_day}"
        paths = [out / f"{stem}.json", out / f"{stem}-differences.csv", out / f"{stem}-totals.csv"]
        paths[0].write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        with paths[1].open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["business_day", "class", "reason", "key", "terminal_id", "institution_id", "kind",
                        "original_key", "journal_status", "centre_status", "journal_amount", "centre_amount",
                        "difference", "repair", "accepted", "message"])
            for d in self.differences:
                ja = d.journal["amount"] if d.journal else ""
                ca = d.centre["amount"] if d.centre else ""
                w.writerow([d.business_day, d.cls, d.reason, d.key, d.terminal_id, d.institution_id, d.kind,
                            d.original_key, d.journal_status, d.centre_status, ja, ca, d.parts_delta(), d.repair,
                            int(d.accepted), d.message])
        with paths[2].open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["business_day", "terminal_id", "journal_received", "side", *TOTAL_FIELDS])
            for t in self.totals:
                for side, tot in (("journal", t.journal), ("centre", t.centre)):
                    w.writerow([self.business_day, t.terminal_id, int(t.journal_received), side,
                                *(getattr(tot, f) for f in TOTAL_FIELDS)])
        if self.statement_differences or self.statement_totals:
            p = out / f"{stem}-statement.csv"
            with p.open("w", encoding="utf-8", newline="") as f:
                w = csv.writer(f, lineterminator="\n")
                w.writerow(["value_date", "class", "account", "reference", "statement_amount", "ledger_amount",
                            "rows", "accepted", "message"])
                for s in self.statement_differences:
                    w.writerow([s.value_date, s.cls, s.account, s.reference,
                                "" if s.statement_amount is None else s.statement_amount,
                                "" if s.ledger_amount is None else s.ledger_amount,
                                " ".join(map(str, s.rows)), int(s.accepted), s.message])
            paths.append(p)
        return paths
