"""Enrolment imports: setting a centre up from files, without Python (plan, show, then apply).

Four kinds, each a CSV file (a header naming the fields, UTF-8 or `encoding`) or a JSON array of objects:

  institutions    code, name, region, level (community | 1 | 2 | 3)
  persons         person_id, name, region, category (employee | retiree | resident), card_no, assistance_class,
                  personal_account (the opening balance of the personal medical account, in yuan: "1200.50")
  pin-references  person_id, card_no, reference (the HSM's 16-byte PIN reference, 32 hex digits: never shown)
  terminals       terminal_id, institution, key_sha256, operator (true | false)

Every row is checked first (`parse`), and an error names the file, the row (1 = first data row) and the field;
then the rows are compared with what the centre holds (`plan`): each is `add` (new), `same` (already there:
importing a file again changes nothing) or `replace` (a PIN reference after a PIN change, shown as such); a
row that contradicts the record (a person with another name, an opening balance that differs) is an
ENROLMENT_CONFLICT naming the row, and nothing is applied. `apply` runs the plan through the registry's own
idempotent operations (an opening balance is a deposit under `ENROL:<person_id>`), so an import cut short is
finished by importing the same file again. Terminals are registered with their institution for
reconciliation here; their API keys live in the service's keys file, written by `sscard centre import
terminals --keys-file`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from settlement.errors import EnrolmentConflict, InvalidEnrolmentRow, SettlementError
from settlement.ledger import Tx
from settlement.schemes.policy import CATEGORIES, LEVELS, parse_yuan
from settlement.schemes.records import load_institutions, load_persons, load_pin_reference
from settlement.wire import CARD_NO_FORM, ID_FORM, MAX_FEN, yuan

if TYPE_CHECKING:
    from settlement.schemes.engine import Engine

KINDS = ("institutions", "persons", "pin-references", "terminals")
MAX_ROWS = 1_000_000
_PART = 2_000
_TEXT = r"^\S(.{0,62}\S)?$"  # 1-64 characters, no blank at either end
_HEX64 = r"^[0-9a-f]{64}$"


def _card_no(v: str) -> str:
    if not CARD_NO_FORM.fullmatch(v):
        raise ValueError("a card number is 1-20 letters and digits")
    return v


CardNo = Annotated[str, AfterValidator(_card_no)]


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    def key(self) -> str:
        raise NotImplementedError


class InstitutionRow(_Row):
    code: str = Field(pattern=_TEXT)
    name: str = Field(pattern=_TEXT)
    region: str = Field(pattern=r"^\d{6}$")
    level: str

    @field_validator("level")
    @classmethod
    def _level(cls, v: str) -> str:
        if v not in LEVELS:
            raise ValueError(f"use one of {', '.join(LEVELS)}")
        return v

    def key(self) -> str:
        return self.code


class PersonRow(_Row):
    person_id: str = Field(pattern=_TEXT)
    name: str = Field(pattern=_TEXT)
    region: str = Field(pattern=r"^\d{6}$")
    category: str
    card_no: CardNo | None = None
    assistance_class: str | None = Field(None, pattern=_TEXT)
    personal_account: int = 0  # fen (the file gives yuan)

    @field_validator("category")
    @classmethod
    def _category(cls, v: str) -> str:
        if v not in CATEGORIES:
            raise ValueError(f"use one of {', '.join(CATEGORIES)}")
        return v


    @field_validator("personal_account", mode="before")
    @classmethod
    def _yuan(cls, v: object) -> int:
        fen = parse_yuan("0" if v in ("", None) else v)
        if fen > MAX_FEN:
            raise ValueError(f"more than {yuan(MAX_FEN)} yuan")
        return fen

    def key(self) -> str:
        return self.person_id


class PinReferenceRow(_Row):
    person_id: str = Field(pattern=_TEXT)
    card_no: CardNo
    reference: str = Field(pattern=r"^[0-9a-fA-F]{32}$", repr=False)


    def key(self) -> str:
        return self.person_id


class TerminalRow(_Row):
    terminal_id: str
    institution: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    key_sha256: str = Field(pattern=_HEX64)
    operator: bool = False

    @field_validator("terminal_id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not ID_FORM.fullmatch(v):
            raise ValueError("1-64 letters, digits, '_', '.' or '-'")
        return v

    def key(self) -> str:
        return self.terminal_id


MODELS: dict[str, type[_Row]] = {"institutions": InstitutionRow, "persons": PersonRow,
                                 "pin-references": PinReferenceRow, "terminals": TerminalRow}


def _kind(kind: str) -> type[_Row]:
    if kind not in MODELS:
        raise InvalidEnrolmentRow(f"unknown kind {kind!r}; use {', '.join(KINDS)}", field="kind")
    return MODELS[kind]


# -- reading and checking ------------------------------------------------------------------------------------
def read_records(path: str | Path, encoding: str = "utf-8") -> list[dict[str, Any]]:
    """The records of an enrolment file: a JSON array of objects (`.json`), else CSV with a header."""
    name = Path(path).name
    try:
        text = Path(path).read_text(encoding=encoding)
    except OSError as e:
        raise InvalidEnrolmentRow(f"cannot read {name}: {e.strerror}", file=name, row=0) from None
    except UnicodeDecodeError as e:
        row = text_row(Path(path).read_bytes(), e.start)
        raise InvalidEnrolmentRow(f"{name} row {row}: not {encoding.upper()} text (give the file's encoding)",
                                  file=name, row=row) from None
    return parse_records(text, name, json_=str(path).endswith(".json"))


def text_row(data: bytes, offset: int) -> int:
    """The CSV data row (1 = first after the header) holding byte `offset`."""
    return data.count(b"\n", 0, offset)


def parse_records(text: str, name: str, *, json_: bool) -> list[dict[str, Any]]:
    """Records of an enrolment file's text (JSON array of objects, or CSV with a header)."""
    if json_:
        try:
            data = json.loads(text)
        except ValueError as e:
            raise InvalidEnrolmentRow(f"{name}: not JSON: {e}", file=name, row=0) from None
        if not isinstance(data, list):
            raise InvalidEnrolmentRow(f"{name}: a JSON array of objects, one per row", file=name, row=0)
        return data
    try:
        reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""), strict=True)
        rows = [dict(r) for r in reader]
    except csv.Error as e:
        raise InvalidEnrolmentRow(f"{name}: unreadable CSV: {e}", file=name, row=0) from None
    for n, r in enumerate(rows, 1):
        if None in r or None in r.values():
            raise InvalidEnrolmentRow(f"{name} row {n}: {len(reader.fieldnames or [])} fields in the header, "
                                      "another number here", file=name, row=n)
    return [{k: (None if v == "" else v) for k, v in r.items()} for r in rows]


def parse(kind: str, records: Sequence[object], source: str) -> list[tuple[int, _Row]]:
    """Each record checked as a row of `kind`: (row number, row). The first bad row raises
    InvalidEnrolmentRow naming `source`, the row and the field; a key given twice names both rows."""
    model = _kind(kind)
    if len(records) > MAX_ROWS:
        raise InvalidEnrolmentRow(f"{source}: more than {MAX_ROWS:,} rows; split the file", file=source, row=0)
    out: list[tuple[int, _Row]] = []
    seen: dict[str, int] = {}
    for n, rec in enumerate(records, 1):
        if not isinstance(rec, dict):
            raise InvalidEnrolmentRow(f"{source} row {n}: not an object", file=source, row=n)
        try:
            row = model.model_validate(rec)
        except ValidationError as e:
            err = e.errors()[0]
            fld = ".".join(str(x) for x in err["loc"]) or "(row)"
            msg = err["msg"].removeprefix("Value error, ")
            if fld == "reference" or err["type"] == "extra_forbidden":  # never echo a reference; name extras
                msg = "32 hex digits" if fld == "reference" else "unknown field"
            raise InvalidEnrolmentRow(f"{source} row {n}: {fld}: {msg}", file=source, row=n, field=fld) from None
        first = seen.setdefault(row.key(), n)
        if first != n:
            raise InvalidEnrolmentRow(f"{source} row {n}: {row.key()} is already on row {first}", file=source, row=n)
        out.append((n, row))
    return out


# -- plan and apply ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedRow:
    row: int
    key: str
    action: str  # add | same | replace
    detail: str = ""


@dataclass
class EnrolmentPlan:
    """What importing `source` would do (`rows` in file order)."""

    kind: str
    source: str
    rows: list[PlannedRow]
    items: list[tuple[int, _Row]]

    def counts(self) -> dict[str, int]:
        out = {"add": 0, "same": 0, "replace": 0}
        for r in self.rows:
            out[r.action] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source, "counts": self.counts(),
                "rows": [{"row": r.row, "key": r.key, "action": r.action, "detail": r.detail} for r in self.rows]}


def opening_key(person_id: str) -> str:
    """The deposit key of a person's opening personal-account balance."""
    return f"ENROL:{person_id}"


def _conflict(source: str, row: int, key: str, what: str) -> EnrolmentConflict:
    return EnrolmentConflict(f"{source} row {row}: {key}: {what}; nothing was imported", file=source, row=row, key=key)


def plan(engine: Engine, kind: str, items: list[tuple[int, _Row]], source: str, *,
         terminals: Mapping[str, str | None] | None = None) -> EnrolmentPlan:
    """Compare checked rows with the centre's records: add, same or replace per row; a row contradicting the
    record raises EnrolmentConflict (naming it), as does one naming what the centre does not hold (a PIN
    reference of an unknown person, a terminal of an unknown institution). `terminals`: the terminals already
    registered and their institutions (the Reconciler's `terminals()`), for kind terminals."""
    _kind(kind)

    def part(tx: Tx, some: list[tuple[int, _Row]]) -> list[PlannedRow]:
        keys = [r.key() for _, r in some]
        if kind == "institutions":
            return _plan_institutions(engine, tx, some, source, keys)
        if kind == "persons":
            return _plan_persons(engine, tx, some, source, keys)
        if kind == "pin-references":
            return _plan_pins(tx, some, source, keys)
        return _plan_terminals(tx, some, source, terminals or {})

    def q(tx: Tx) -> list[PlannedRow]:  # (in parts: a statement takes a few thousand parameters at most)
        return [p for i in range(0, len(items), _PART) for p in part(tx, items[i:i + _PART])]

    return EnrolmentPlan(kind, source, engine.store.read(q), items)


def _region(engine: Engine, source: str, n: int, region: str) -> None:
    try:
        engine.policies.get(region)
    except SettlementError as e:
        raise InvalidEnrolmentRow(f"{source} row {n}: region: {e.message}", file=source, row=n,
                                  field="region") from None


def _plan_institutions(engine: Engine, tx: Tx, items: list[tuple[int, Any]], source: str,
                       keys: list[str]) -> list[PlannedRow]:
    have = load_institutions(tx, keys)
    out = []
    for n, r in items:
        _region(engine, source, n, r.region)
        old = have.get(r.code)
        if old is None:
            out.append(PlannedRow(n, r.code, "add", f"{r.name}, level {r.level}, region {r.region}"))
        elif (old.name, old.region, old.level) != (r.name, r.region, r.level):
            raise _conflict(source, n, r.code, f"on record as {old.name}, level {old.level}, region {old.region}")
        else:
            out.append(PlannedRow(n, r.code, "same"))
    return out


def _plan_persons(engine: Engine, tx: Tx, items: list[tuple[int, Any]], source: str,
                  keys: list[str]) -> list[PlannedRow]:
    have = load_persons(tx, keys)
    deposits = {k: int(a) for k, a in tx.rows(
        "SELECT p.key, SUM(t.amount) FROM ledger_postings p JOIN ledger_transfers t ON t.posting_seq = p.seq"
        f" WHERE p.key IN ({', '.join('?' * len(keys))}) GROUP BY p.key", [opening_key(k) for k in keys])} \
        if keys else {}
    out = []
    for n, r in items:
        _region(engine, source, n, r.region)
        old = have.get(r.person_id)
        paid = deposits.get(opening_key(r.person_id))
        if paid is not None and paid != r.personal_account:
            raise _conflict(source, n, r.person_id, f"opened with {yuan(paid)} yuan, not {yuan(r.personal_account)}")
        if old is not None:
            mine = (old.name, old.region, old.category, old.card_no, old.assistance_class)
            if mine != (r.name, r.region, r.category, r.card_no, r.assistance_class):
                raise _conflict(source, n, r.person_id, "on record with other details (name, region, category, "
                                                        "card or assistance class)")
            if paid is None and r.personal_account:
                out.append(PlannedRow(n, r.person_id, "add", f"opening balance {yuan(r.personal_account)} yuan"))
            else:
                out.append(PlannedRow(n, r.person_id, "same"))
            continue
        if r.card_no is not None:
            holder = tx.value("SELECT person_id FROM card_cards WHERE card_no = ?", (r.card_no,))
            if holder is not None and holder != r.person_id:
                raise _conflict(source, n, r.person_id, f"card {r.card_no} belongs to another person")
        out.append(PlannedRow(n, r.person_id, "add", f"{r.category}, region {r.region}"
                              + (f", opening balance {yuan(r.personal_account)} yuan" if r.personal_account else "")))
    return out


def _plan_pins(tx: Tx, items: list[tuple[int, Any]], source: str, keys: list[str]) -> list[PlannedRow]:
    persons = load_persons(tx, keys)
    out = []
    for n, r in items:
        if r.person_id not in persons:
            raise _conflict(source, n, r.person_id, "no such person: import persons first")
        old = load_pin_reference(tx, r.person_id)
        if old is None:
            out.append(PlannedRow(n, r.person_id, "add", f"card {r.card_no}"))
        elif (old.card_no, old.reference) == (r.card_no, bytes.fromhex(r.reference)):
            out.append(PlannedRow(n, r.person_id, "same"))
        else:
            out.append(PlannedRow(n, r.person_id, "replace", f"card {old.card_no} -> {r.card_no}"))
    return out


def _plan_terminals(tx: Tx, items: list[tuple[int, Any]], source: str,
                    registered: Mapping[str, str | None]) -> list[PlannedRow]:
    insts = load_institutions(tx, [r.institution for _, r in items])
    out = []
    for n, r in items:
        if r.institution not in insts:
            raise _conflict(source, n, r.terminal_id, f"no institution {r.institution}: import institutions first")
        if r.terminal_id not in registered:
            out.append(PlannedRow(n, r.terminal_id, "add", f"institution {r.institution}"
                                  + (", operator" if r.operator else "")))
        elif registered[r.terminal_id] != r.institution:
            raise _conflict(source, n, r.terminal_id, f"registered for institution {registered[r.terminal_id]}")
        else:
            out.append(PlannedRow(n, r.terminal_id, "same"))
    return out


def apply(engine: Engine, p: EnrolmentPlan, *, actor: str,
          register_terminals: Callable[[list[tuple[str, str]]], object] | None = None) -> dict[str, int]:
    """Apply a plan's `add` and `replace` rows through the registry (each idempotent); returns the counts.
    `register_terminals` registers (terminal id, institution) pairs for reconciliation (the Reconciler's)."""
    if not actor:
        raise InvalidEnrolmentRow("an import needs an actor (who is importing)", field="actor")
    todo = {r.row for r in p.rows if r.action != "same"}
    reg = engine.registry
    terminals = []
    for n, r in p.items:
        if n not in todo:
            continue
        if isinstance(r, InstitutionRow):
            reg.add_institution(r.code, r.name, r.region, r.level)
        elif isinstance(r, PersonRow):
            reg.add_person(r.person_id, r.name, r.region, r.category, card_no=r.card_no,
                           assistance_class=r.assistance_class)
            if r.personal_account:
                reg.deposit(opening_key(r.person_id), r.person_id, r.personal_account)
        elif isinstance(r, PinReferenceRow):
            reg.set_pin_reference(r.person_id, r.card_no, bytes.fromhex(r.reference), actor=actor, source="import")
        else:
            terminals.append((r.terminal_id, r.institution))  # type: ignore[attr-defined]
    if terminals and register_terminals is not None:
        register_terminals(terminals)
    return p.counts()

