"""The registry's records: persons, enrolments, PIN references and institutions, their tables and readers.

Every flow reads them (a settlement loads its person and institution); only settlement/schemes/registry.py
writes them (and settlement/schemes/cards.py a person's card of record, `card_no`: the latest card issued),
so the flows share data here instead of calling the registry.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict

from settlement.errors import UnknownInstitution, UnknownPerson
from settlement.ledger import Tx, marks
from settlement.wire import Person


def schema(dialect: str) -> list[str]:
    return [
        """CREATE TABLE IF NOT EXISTS reg_persons (
            person_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            card_no TEXT,
            region TEXT NOT NULL,
            category TEXT NOT NULL,
            assistance_class TEXT,
            death_date TEXT,
            death_reported_at TEXT,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS reg_enrolments (
            person_id TEXT NOT NULL REFERENCES reg_persons (person_id),
            region TEXT NOT NULL,
            category TEXT NOT NULL,
            active INTEGER NOT NULL CHECK (active IN (0, 1)),
            since TEXT NOT NULL,
            PRIMARY KEY (person_id, region)
        )""",
        """CREATE TABLE IF NOT EXISTS reg_pin_references (
            person_id TEXT PRIMARY KEY REFERENCES reg_persons (person_id),
            card_no TEXT NOT NULL,
            reference TEXT NOT NULL,
            set_at TEXT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS reg_institutions (
            code TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            region TEXT NOT NULL,
            level TEXT NOT NULL
        )""",
    ]


class Institution(BaseModel):
    """A designated institution (hospital, pharmacy, service hall) with its region and level."""

    model_config = ConfigDict(frozen=True)

    code: str
    name: str
    region: str
    level: str


class PinReference(BaseModel):
    """The PIN reference recorded for a person's card (centre-internal: never in an API answer)."""

    model_config = ConfigDict(frozen=True)

    card_no: str
    reference: bytes
    set_at: str


PIN_REFERENCE_SIZE = 16
PERSON_COLS = "person_id, name, card_no, region, category, assistance_class, death_date"


def load_person(tx: Tx, person_id: str, *, lock: bool = False) -> Person:
    """The person, or UnknownPerson. `lock` serialises a person's settlements (FOR UPDATE)."""
    found = load_persons(tx, [person_id], lock=lock)
    if person_id not in found:
        raise UnknownPerson(f"no insured person {person_id!r}", person_id=person_id)
    return found[person_id]


def load_persons(tx: Tx, person_ids: Iterable[str], *, lock: bool = False) -> dict[str, Person]:
    """The persons of record among `person_ids`, by id (one query; with `lock`, locked in id order)."""
    ids = sorted(set(person_ids))
    if not ids:
        return {}
    where = "person_id = ?" if len(ids) == 1 else f"person_id IN ({marks(len(ids))}) ORDER BY person_id"
    cols, rows = tx.fetch(f"SELECT {PERSON_COLS} FROM reg_persons WHERE {where}{tx.for_update if lock else ''}", ids)
    return {r[0]: Person(**dict(zip(cols, r, strict=True))) for r in rows}


def load_pin_reference(tx: Tx, person_id: str) -> PinReference | None:
    """The PIN reference recorded for the person's card, or None."""
    row = tx.one("SELECT card_no, reference, set_at FROM reg_pin_references WHERE person_id = ?", (person_id,))
    if row is None:
        return None
    return PinReference(card_no=row["card_no"], reference=bytes.fromhex(row["reference"]), set_at=row["set_at"])


def load_institution(tx: Tx, code: str) -> Institution:
    found = load_institutions(tx, [code])
    if code not in found:
        raise UnknownInstitution(f"no designated institution {code!r}", institution=code)
    return found[code]


def load_institutions(tx: Tx, codes: Iterable[str]) -> dict[str, Institution]:
    """The institutions among `codes`, by code (one query)."""
    wanted = sorted(set(codes))
    if not wanted:
        return {}
    rows = tx.rows(f"SELECT code, name, region, level FROM reg_institutions WHERE code IN ({marks(len(wanted))})",
                   wanted)
    return {c: Institution(code=c, name=n, region=r, level=lv) for c, n, r, lv in rows}
