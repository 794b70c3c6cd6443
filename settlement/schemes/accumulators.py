"""Per-person yearly accumulators: what a settlement adds, and what a refund takes back.

Stored as named counters (person, year, counter) -> fen, changed only by deltas written in the same
transaction as the posting that caused them. Outpatient and inpatient care keep separate deductibles,
cumulative in-policy amounts and fund totals; the critical-illness and assistance layers and the count
of admissions are yearly across both.
"""

from __future__ import annotations

from collections.abc import Iterable

from settlement.ledger import Tx, marks, write_rows
from settlement.wire import COUNTERS, Accumulators


def load_accumulators(tx: Tx, person_id: str, year: int) -> Accumulators:
    return Accumulators.from_counters(year, load_counters(tx, [person_id], year).get(person_id, {}))


def load_counters(tx: Tx, person_ids: Iterable[str], year: int | None = None) -> dict[str, dict[str, int]]:
    """The counters of several persons (one query) by person: of `year`, or of every year keyed
    "YEAR:counter" when `year` is None."""
    ids = sorted(set(person_ids))
    out: dict[str, dict[str, int]] = {}
    if not ids:
        return out
    if year is None:
        rows = tx.rows("SELECT person_id, year || ':' || counter, value FROM med_accumulators"
                       f" WHERE person_id IN ({marks(len(ids))})", ids)
    else:
        rows = tx.rows("SELECT person_id, counter, value FROM med_accumulators"
                       f" WHERE year = ? AND person_id IN ({marks(len(ids))})", [year, *ids])
    for pid, c, v in rows:
        out.setdefault(pid, {})[c] = int(v)
    return out


def add_to_accumulators(tx: Tx, person_id: str, year: int, deltas: dict[str, int]) -> None:
    add_to_counters(tx, {(person_id, year, c): v for c, v in deltas.items()})


def add_to_counters(tx: Tx, deltas: dict[tuple[str, int, str], int]) -> None:
    """Add `deltas` keyed (person, year, counter), set-based: one upsert for the increases, one update for the
    decreases (which must find their counter)."""
    unknown = {c for _, _, c in deltas} - set(COUNTERS)
    assert not unknown, unknown
    up = [(p, y, c, v) for (p, y, c), v in sorted(deltas.items()) if v > 0]
    write_rows(tx, "INSERT INTO med_accumulators (person_id, year, counter, value) VALUES ", "(?, ?, ?, ?)", up,
               " ON CONFLICT (person_id, year, counter) DO UPDATE SET value = med_accumulators.value + excluded.value")
    down = [(p, y, c, -v) for (p, y, c), v in sorted(deltas.items()) if v < 0]
    changed = write_rows(tx, "UPDATE med_accumulators SET value = value - v.column4 FROM (VALUES ", "(?, ?, ?, ?)",
                         down, ") AS v WHERE person_id = v.column1 AND year = v.column2 AND counter = v.column3")
    assert changed == len(down), "an accumulator to roll back is missing"
