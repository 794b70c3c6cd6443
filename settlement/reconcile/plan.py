"""Repair plans: what a repair would do, shown before anything is posted (plan, show, then apply).

A plan lists each repair (the difference, the action, the key it would post under and the money it moves)
and, per terminal, the share of its day the voids would take back: by count of the centre's settlements and
collections of that terminal's day, and by amount. A plan is refused when a terminal's share passes the
threshold and it voids more than one settlement there (a single orphan, an answer the terminal lost, is the
everyday case even on a day of one settlement) (REPAIR_THRESHOLD, unless the operator forces it with a
reason, audited), or when a terminal it
touches has a journal without a complete trailer (INCOMPLETE_JOURNAL: a file cut short would make every
settlement after the cut look missing at the terminal, and repair would void them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (the CLI imports DEFAULT_THRESHOLD without loading the rest)
    from settlement.reconcile.report import Difference, Report

DEFAULT_THRESHOLD = 0.2
"""The share of a terminal's day a repair may void without being forced."""


@dataclass(frozen=True)
class PlannedRepair:
    """One repair a plan would run."""

    diff: Difference
    posting_key: str
    amount: int  # fen: what a replay posts, or what a void takes back

    @property
    def action(self) -> str:
        return self.diff.repair


@dataclass(frozen=True)
class TerminalShare:
    """How much of a terminal's day (at the centre) a plan would void."""

    terminal_id: str
    voids: int
    settlements: int
    void_amount: int
    day_amount: int

    @property
    def share(self) -> float:
        """The larger of the count share and the amount share (1.0 when the day has nothing to void)."""
        if not self.voids:
            return 0.0
        by_count = self.voids / self.settlements if self.settlements else 1.0
        by_amount = self.void_amount / self.day_amount if self.day_amount else 1.0
        return max(by_count, by_amount)


@dataclass
class RepairPlan:
    """What `Reconciler.apply_repair` would do for a business day, from the report `before`."""

    business_day: str
    before: Report
    items: list[PlannedRepair]
    shares: list[TerminalShare]
    threshold: float
    incomplete: list[str] = field(default_factory=list)  # terminals whose journal has no complete trailer

    @property
    def over(self) -> list[TerminalShare]:
        """Terminals where the plan voids more than one settlement and more than the threshold's share."""
        return [s for s in self.shares if s.voids > 1 and s.share > self.threshold]

    def total(self, action: str) -> int:
        """Fen the plan's repairs of `action` (replay or void) move."""
        return sum(i.amount for i in self.items if i.action == action)

    def count(self, action: str) -> int:
        return sum(1 for i in self.items if i.action == action)


@dataclass(frozen=True)
class PlannedRestore:
    """A settlement voided by mistake that a restore would put back in force."""

    setl_id: str
    void_key: str
    restore_key: str
    amount: int  # fen the settlement held before the void (what comes back into force)
    person_id: str
    institution: str
