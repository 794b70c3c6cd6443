"""Per-person yearly accumulators: what a settlement adds, and what a refund takes back.

Stored as named counters (person, year, counter) -> fen, changed only by deltas written in the same
transaction as the posting that caused them. Outpatient and inpatient care keep separate deductibles,
cumulative in-policy amounts and fund totals; the critical-illness and assistance layers and the count
of admissions are yearly across both.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

CARE_COUNTERS = ("deductible_used", "inscp_cum", "hifp_paid", "hifob_paid")
YEAR_COUNTERS = ("admissions", "hifmi_base_cum", "hifmi_paid", "maf_paid")
COUNTERS: tuple[str, ...] = tuple(
    f"{care}.{name}" for care in ("outpatient", "inpatient") for name in CARE_COUNTERS
) + YEAR_COUNTERS


class CareTotals(BaseModel):
    """Running totals for one kind of care (fen)."""

    model_config = ConfigDict(frozen=True)

    deductible_used: int = 0
    inscp_cum: int = 0
    hifp_paid: int = 0
    hifob_paid: int = 0


class Accumulators(BaseModel):
    """One person's totals for one calendar year: deductible used, in-policy cumulative amount, what each
    fund paid, the critical-illness base (in-policy amount left to the patient after hifp and hifob),
    critical-illness and assistance paid (fen), and the number of admissions settled."""

    model_config = ConfigDict(frozen=True)

    year: int
    outpatient: CareTotals = CareTotals()
    inpatient: CareTotals = CareTotals()
    admissions: int = 0
    hifmi_base_cum: int = 0
    hifmi_paid: int = 0
    maf_paid: int = 0

    def care(self, care: str) -> CareTotals:
        return self.inpatient if care == "inpatient" else self.outpatient

    @classmethod
    def from_counters(cls, year: int, counters: Mapping[str, int]) -> Accumulators:
        def care(name: str) -> CareTotals:
            return CareTotals(**{c: counters.get(f"{name}.{c}", 0) for c in CARE_COUNTERS})

        return cls(
            year=year,
            outpatient=care("outpatient"),
            inpatient=care("inpatient"),
            **{c: counters.get(c, 0) for c in YEAR_COUNTERS},
        )

    def counters(self) -> dict[str, int]:
        out = {f"{care}.{c}": getattr(self.care(care), c) for care in ("outpatient", "inpatient")
               for c in CARE_COUNTERS}
        out.update({c: getattr(self, c) for c in YEAR_COUNTERS})
        return out

    def plus(self, deltas: Mapping[str, int]) -> Accumulators:
        merged = self.counters()
        for name, value in deltas.items():
            merged[name] = merged.get(name, 0) + value
        return Accumulators.from_counters(self.year, merged)
