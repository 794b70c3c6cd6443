"""Per-person yearly accumulators: what a settlement adds, and what a refund takes back.

Stored as named counters (person, year, counter) -> fen, changed only by deltas written in the same
transaction as the posting that caused them. Outpatient and inpatient care keep separate deductibles,
cumulative in-policy amounts and fund totals; the critical-illness and assistance layers and the count
of admissions are yearly across both.
"""

from __future__ import annotations

from settlement.ledger import Tx
from settlement.wire import COUNTERS, Accumulators


def load_accumulators(tx: Tx, person_id: str, year: int) -> Accumulators:
    rows = tx.rows("SELECT counter, value FROM med_accumulators WHERE person_id = ? AND year = ?", (person_id, year))
    return Accumulators.from_counters(year, {c: int(v) for c, v in rows})


def add_to_accumulators(tx: Tx, person_id: str, year: int, deltas: dict[str, int]) -> None:
    unknown = set(deltas) - set(COUNTERS)
    assert not unknown, unknown
    tx.executemany(
        "INSERT INTO med_accumulators (person_id, year, counter, value) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (person_id, year, counter) DO UPDATE SET value = med_accumulators.value + excluded.value",
        [(person_id, year, c, v) for c, v in sorted(deltas.items()) if v > 0],
    )
    down = [(-v, person_id, year, c) for c, v in sorted(deltas.items()) if v < 0]
    changed = tx.executemany(
        "UPDATE med_accumulators SET value = value - ? WHERE person_id = ? AND year = ? AND counter = ?", down
    )
    assert changed == len(down), "an accumulator to roll back is missing"
