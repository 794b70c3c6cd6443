"""Regional medical insurance policy as data: TOML files under settlement/policies/, one per region.

A file is parsed with tomllib into frozen pydantic models. Amounts are written in yuan as strings with at
most two decimals ("1300.00") or as whole-yuan integers, and are held as integer fen; ratios are strings
("85%" or "0.85") held as exact Fractions. Floats are refused: they cannot say 0.1 exactly. Any mistake
raises `InvalidPolicy` naming the file and the field. Layout of a file (see beijing.toml for a full one):

    region = "110000"                     # 6-digit administrative region code
    name = "..."; source = "..."          # where the numbers come from
    effective_from = 2024-01-01           # the newest file effective on the visit date applies
    [catalogue.A]                         # catalogue classes: covered, and the share paid first
    [catalogue.B] self_pay_first = "10%"  #   by the patient (先行自付)
    [catalogue.C] covered = false         #   not covered at all (自费)
    [[scheme]]                            # one per (category, care)
    category = "employee"                 # employee | retiree | resident
    care = "inpatient"                    # outpatient | inpatient
    personal_account = "in_policy"        # none | in_policy | all: what the personal account may pay
    deductible = { per = "admission", first = "1300.00", later = "650.00" }
    caps = { hifp = "..." }               # optional yearly caps on what each fund pays for this care
    [[scheme.segment]]                    # by cumulative in-policy amount in the year, ascending
    fund = "hifp"                         # hifp (pooled fund) | hifob (employees' large-amount aid)
    up_to = "30000.00"                    # omitted on the last segment: no upper bound
    ratio = { community = "90%", "1" = "90%", "2" = "87%", "3" = "85%" }
    [critical_illness]                    # optional: 大病保险 on the yearly in-policy amount left to the
    categories = ["resident"]             #   patient after hifp/hifob, above `threshold`, by segment
    threshold = "15000.00"; cap = "400000.00"
    [[critical_illness.segment]] up_to = "65000.00"; ratio = "60%"   # bounds on that cumulative base
    [medical_assistance.classes.dibao]    # optional: 医疗救助 per eligibility class: a ratio of the
    ratio = "70%"; yearly_cap = "30000.00"  #   in-policy amount still left, up to a yearly cap
    [limits]                              # optional: what one bill may be (BILL_TOO_LARGE beyond)
    max_bill = "5000000.00"               #   ceiling per bill, yuan (default 5,000,000.00)
    max_fee_lines = 5000                  #   fee lines per bill (default and at most 5,000)

A value given per institution level may be one value for every level or a table keyed by "community",
"1", "2", "3", with an optional "default" for the levels not named.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from settlement.errors import InvalidPolicy, UnknownPolicy, UnknownRegion
from settlement.ledger import Fen, ratio
from settlement.wire import MAX_FEE_LINES, MAX_FEN

Category = Literal["employee", "retiree", "resident"]
Care = Literal["outpatient", "inpatient"]
Level = Literal["community", "1", "2", "3"]
Fund = Literal["hifp", "hifob"]
AccountUse = Literal["none", "in_policy", "all"]

CATEGORIES: tuple[str, ...] = ("employee", "retiree", "resident")
CARES: tuple[str, ...] = ("outpatient", "inpatient")
LEVELS: tuple[str, ...] = ("community", "1", "2", "3")
POLICY_DIR = Path(__file__).parent / "policies"


def parse_yuan(value: object) -> Fen:
    """Policy amount in yuan ("1300.00" or 1300) -> fen, exactly; floats and sub-fen digits refused."""
    if isinstance(value, (bool, float)):
        raise ValueError(f"write amounts as yuan strings like \"1300.00\", not {value!r}")
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, str) and re.fullmatch(r"\d+(\.\d{1,2})?", value.strip()):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation as exc:  # pragma: no cover - the regex already guards
            raise ValueError(f"not an amount: {value!r}") from exc
    else:
        raise ValueError(f"not an amount in yuan with at most two decimals: {value!r}")
    if amount < 0:
        raise ValueError(f"amount must not be negative: {value!r}")
    return int(amount * 100)


def parse_ratio(value: object) -> Fraction:
    """Policy ratio ("85%", "0.85", 0 or 1) -> exact Fraction in [0, 1]; floats refused."""
    if isinstance(value, (bool, float)):
        raise ValueError(f"write ratios as strings like \"85%\" or \"0.85\", not {value!r}")
    if not isinstance(value, (str, int, Fraction)):
        raise ValueError(f"not a ratio: {value!r}")
    try:
        return ratio(value)
    except (ValueError, ZeroDivisionError) as exc:
        raise ValueError(f"not a ratio in [0, 1]: {value!r}") from exc


def _by_level(parse: Any) -> BeforeValidator:
    """Accept one value for every level, or a table keyed by level (with an optional "default")."""

    def convert(value: object) -> dict[str, object]:
        if isinstance(value, Mapping):
            unknown = set(value) - set(LEVELS) - {"default"}
            if unknown:
                raise ValueError(f"unknown level(s) {sorted(unknown)}; use {list(LEVELS)} or default")
            missing = [lv for lv in LEVELS if lv not in value and "default" not in value]
            if missing:
                raise ValueError(f"no value for level(s) {missing} and no default")
            return {lv: parse(value.get(lv, value.get("default"))) for lv in LEVELS}
        return {lv: parse(value) for lv in LEVELS}

    return BeforeValidator(convert)


Yuan = Annotated[int, BeforeValidator(parse_yuan)]
Ratio = Annotated[Fraction, BeforeValidator(parse_ratio)]
YuanByLevel = Annotated[dict[str, int], _by_level(parse_yuan)]
RatioByLevel = Annotated[dict[str, Fraction], _by_level(parse_ratio)]


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", arbitrary_types_allowed=True, populate_by_name=True
    )


class CatalogueClass(_Model):
    """A catalogue class: covered or not, and the share of a covered item the patient pays first."""

    covered: bool = True
    self_pay_first: Ratio = Fraction(0)

    @model_validator(mode="after")
    def _not_covered_means_no_ratio(self) -> CatalogueClass:
        if not self.covered and self.self_pay_first:
            raise ValueError("a class that is not covered has no self_pay_first ratio")
        return self


class Deductible(_Model):
    """起付线: yearly (`per = "year"`, `first` is the yearly amount) or per admission (first / later)."""

    per: Literal["year", "admission"] = "year"
    first: YuanByLevel
    later: YuanByLevel | None = None

    def amount(self, level: str, admissions_before: int) -> Fen:
        """The deductible that applies to one visit's settlement before anything already used."""
        if self.per == "admission" and admissions_before > 0 and self.later is not None:
            return self.later[level]
        return self.first[level]


class Segment(_Model):
    """Fund ratios for the cumulative in-policy amount of the year up to `up_to` (None: no bound)."""

    fund: Fund = "hifp"
    up_to: Yuan | None = None
    ratio: RatioByLevel


class Scheme(_Model):
    """How one insured category is reimbursed for one kind of care."""

    category: Category
    care: Care
    deductible: Deductible
    segments: tuple[Segment, ...] = Field(alias="segment", min_length=1)
    caps: dict[Fund, Yuan] = Field(default_factory=dict)
    personal_account: AccountUse = "none"
    illustrative: bool = False
    note: str = ""

    @model_validator(mode="after")
    def _segments_ascend(self) -> Scheme:
        if self.deductible.per == "admission" and self.care != "inpatient":
            raise ValueError("a per-admission deductible needs care = \"inpatient\"")
        bounds = [s.up_to for s in self.segments]
        if any(b is None for b in bounds[:-1]):
            raise ValueError("only the last segment may omit up_to")
        finite = [b for b in bounds if b is not None]
        if any(b2 <= b1 for b1, b2 in zip(finite, finite[1:], strict=False)):
            raise ValueError(f"segment up_to values must increase: {finite}")
        return self

    def bounds(self) -> list[tuple[Fen, Fen | None, Segment]]:
        """Each segment as (lower, upper, segment) on the cumulative in-policy amount."""
        out, lower = [], 0
        for seg in self.segments:
            out.append((lower, seg.up_to, seg))
            lower = seg.up_to if seg.up_to is not None else lower
        return out


class CriticalIllnessSegment(_Model):
    up_to: Yuan | None = None
    ratio: Ratio


class CriticalIllness(_Model):
    """大病保险: pays a ratio of the yearly in-policy patient share above `threshold`, by segment."""

    categories: tuple[Category, ...]
    threshold: Yuan
    segments: tuple[CriticalIllnessSegment, ...] = Field(alias="segment", min_length=1)
    cap: Yuan | None = None
    illustrative: bool = False

    @model_validator(mode="after")
    def _segments_ascend(self) -> CriticalIllness:
        lower = self.threshold
        for i, seg in enumerate(self.segments):
            if seg.up_to is None and i != len(self.segments) - 1:
                raise ValueError("only the last segment may omit up_to")
            if seg.up_to is not None and seg.up_to <= lower:
                raise ValueError(f"up_to must exceed the threshold and the previous up_to: {seg.up_to}")
            lower = seg.up_to if seg.up_to is not None else lower
        return self

    def bounds(self) -> list[tuple[Fen, Fen | None, Fraction]]:
        out, lower = [], self.threshold
        for seg in self.segments:
            out.append((lower, seg.up_to, seg.ratio))
            lower = seg.up_to if seg.up_to is not None else lower
        return out


class AssistanceClass(_Model):
    """医疗救助 for one eligibility class: a ratio of the remaining in-policy share, up to a yearly cap."""

    ratio: Ratio
    yearly_cap: Yuan
    label: str = ""


class MedicalAssistance(_Model):
    classes: dict[str, AssistanceClass] = Field(min_length=1)
    illustrative: bool = False


class Limits(_Model):
    """What one bill may be: a ceiling in fen and a number of fee lines (the wire's MAX_FEE_LINES at most)."""

    max_bill: Yuan = 5_000_000_00
    max_fee_lines: int = Field(MAX_FEE_LINES, ge=1, le=MAX_FEE_LINES)

    @model_validator(mode="after")
    def _positive(self) -> Limits:
        if not 0 < self.max_bill <= MAX_FEN:
            raise ValueError(f"max_bill must be above 0 and at most {MAX_FEN // 100} yuan")
        return self


class Policy(_Model):
    """One region's medical policy, effective from a date until a newer file for the region."""

    region: Annotated[str, Field(pattern=r"^\d{6}$")]
    name: str
    source: str
    effective_from: dt.date
    catalogue: dict[str, CatalogueClass] = Field(min_length=1)
    schemes: tuple[Scheme, ...] = Field(alias="scheme", min_length=1)
    critical_illness: CriticalIllness | None = None
    medical_assistance: MedicalAssistance | None = None
    limits: Limits = Limits()
    file: str = ""

    @model_validator(mode="after")
    def _one_scheme_per_pair(self) -> Policy:
        seen: set[tuple[str, str]] = set()
        for s in self.schemes:
            if (s.category, s.care) in seen:
                raise ValueError(f"two schemes for {s.category} {s.care}")
            seen.add((s.category, s.care))
        return self

    def scheme(self, category: str, care: str) -> Scheme:
        for s in self.schemes:
            if s.category == category and s.care == care:
                return s
        raise UnknownPolicy(
            f"region {self.region} has no {care} policy for {category} insured",
            region=self.region, category=category, care=care,
        )

    def catalogue_class(self, cls: str) -> CatalogueClass:
        try:
            return self.catalogue[cls]
        except KeyError:
            raise UnknownPolicy(
                f"catalogue class {cls!r} is not in region {self.region}'s catalogue "
                f"({', '.join(self.catalogue)})",
                region=self.region, cls=cls,
            ) from None


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(file)"


def load_policy(path: str | Path) -> Policy:
    """Parse and validate one policy file; `InvalidPolicy` names the file and the field on any mistake."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidPolicy(f"{path.name}: {exc}", file=str(path)) from exc
    try:
        return Policy.model_validate({**data, "file": path.name})
    except ValidationError as exc:
        found = [
            (_field_path(tuple(p for p in e["loc"] if not str(p).startswith("function-"))),
             str(e["msg"]).removeprefix("Value error, "))
            for e in exc.errors()
        ]
        field, msg = found[0]
        raise InvalidPolicy(f"{path.name}: {field}: {msg}", file=str(path), field=field,
                            problems=[f"{f}: {m}" for f, m in found]) from exc


class PolicyBook:
    """All loaded policies by region; `get(region, on)` picks the newest effective on that date."""

    def __init__(self, policies: Iterable[Policy]) -> None:
        self._by_region: dict[str, list[Policy]] = {}
        for p in policies:
            self._by_region.setdefault(p.region, []).append(p)
        for lst in self._by_region.values():
            lst.sort(key=lambda p: p.effective_from)

    @classmethod
    def load(cls, directory: str | Path = POLICY_DIR) -> PolicyBook:
        return cls(load_policy(p) for p in sorted(Path(directory).glob("*.toml")))

    def regions(self) -> list[str]:
        return sorted(self._by_region)

    def get(self, region: str, on: dt.date | None = None) -> Policy:
        policies = self._by_region.get(region)
        if not policies:
            raise UnknownRegion(f"no medical policy is loaded for region {region}", region=region)
        if on is None:
            return policies[-1]
        effective = [p for p in policies if p.effective_from <= on]
        if not effective:
            raise UnknownPolicy(
                f"region {region} has no policy in force on {on.isoformat()}",
                region=region, on=on.isoformat(),
            )
        return effective[-1]
