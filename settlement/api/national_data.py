"""The national platform interface as data, and its edge conversions.

`load_codes()` reads settlement/api/national_codes.toml (transactions and their input nodes, fields with the
specification's Chinese labels, code tables, error texts; the file names its sources) and `load_catalogue()`
settlement/api/national_catalogue.toml (the medical list: each item's class and price ceiling). `Codes`
checks an envelope and a transaction's input against them, returning plain Python values: amounts in yuan
(a JSON number, parsed exactly, or a numeric string) become integer fen, with at most two decimals and
nothing lost; dates become dates; a code must be in its table. Every refusal is a `NationalError` whose
message names the field in Chinese, as the platform does ("明细项目费用总额(det_item_fee_sumamt)最多两位小数").
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Any

CODES_FILE = Path(__file__).with_name("national_codes.toml")
CATALOGUE_FILE = Path(__file__).with_name("national_catalogue.toml")
MAX_YUAN = Decimal("99999999999999.99")  # 16,2
MAX_LIST = 5000  # lines in one list node
MAX_FILE = 8 * 1024 * 1024  # bytes of one uploaded file
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_ADMDVS = re.compile(r"\d{6}")
_PLACES = {"yuan": 2, "signed_yuan": 2, "quantity": 4, "price": 6}


class NationalError(Exception):
    """A refusal on the national interface (infcode -1): `message` is Chinese and names the field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class FieldSpec:
    name: str
    label: str
    kind: str
    max: int | None = None
    table: str | None = None

    @property
    def who(self) -> str:
        return f"{self.label}({self.name})"


@dataclass(frozen=True)
class TxSpec:
    infno: str
    name: str
    nodes: dict[str, str]
    required: dict[str, tuple[str, ...]]
    signed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Item:
    """One medical list item: class (chrgitm_lv), charge type and optional price ceiling (yuan)."""

    code: str
    name: str
    chrgitm_lv: str
    med_chrgitm_type: str
    pric_uplmt_amt: Decimal | None = None


def decimal_places(value: Decimal) -> int:
    exp = value.normalize().as_tuple().exponent
    return max(0, -exp) if isinstance(exp, int) else 0


def to_fen(value: Decimal) -> int:
    """Yuan with at most two decimals -> fen, exactly."""
    return int(value * 100)


def yuan_out(fen: int) -> float:
    """Fen -> yuan as the JSON number the platform answers (the nearest double; it prints as the exact
    two-decimal value for any amount below 2**53 fen)."""
    return fen / 100


def ratio_out(r: Fraction) -> float:
    """A ratio with the specification's four decimals (5,4), half up."""
    d = (Decimal(r.numerator) / Decimal(r.denominator)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
    return float(d)


class Codes:
    """The tables of national_codes.toml, and the checks made with them."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.tables: dict[str, dict[str, str]] = data["tables"]
        self.fields = {n: FieldSpec(n, **f) for n, f in data["fields"].items()}
        self.envelope_required: tuple[str, ...] = tuple(data["envelope"]["required"])
        self.envelope_optional: tuple[str, ...] = tuple(data["envelope"]["optional"])
        self.transactions = {
            n: TxSpec(n, t["name"], dict(t["nodes"]), {k: tuple(v) for k, v in t["required"].items()},
                      tuple(t.get("signed", ())))
            for n, t in data["transaction"].items()
        }
        self.errors: dict[str, str] = data["errors"]
        self.fund_pay_type: dict[str, Any] = data["fund_pay_type"]
        self.fund_pay_type_name: dict[str, str] = data["fund_pay_type_name"]
        self.category: dict[str, dict[str, str]] = data["category"]
        self.care: dict[str, dict[str, str]] = data["care"]
        for f in self.fields.values():
            if f.kind == "code" and f.table not in self.tables:
                raise ValueError(f"national codes: field {f.name} names unknown table {f.table!r}")
        for t in self.transactions.values():
            for node, names in t.required.items():
                unknown = [n for n in names if n not in self.fields]
                if unknown or node not in t.nodes:
                    raise ValueError(f"national codes: transaction {t.infno} node {node}: unknown {unknown or node}")
        self._check = {n: self._checker(f) for n, f in self.fields.items()}

    def who(self, name: str) -> str:
        f = self.fields.get(name)
        return f.who if f else name

    def label(self, table: str, code: str) -> str:
        return self.tables[table][code]

    def category_of(self, insutype: str, psn_type: str | None = None) -> list[str]:
        return [c for c, m in self.category.items()
                if m["insutype"] == insutype and (psn_type is None or m["psn_type"] == psn_type)]

    def care_of(self, med_type: str) -> str:
        return next(c for c, m in self.care.items() if m["med_type"] == med_type)

    # -- checks ------------------------------------------------------------------------------------------
    def value(self, name: str, raw: Any, where: str = "", kind: str | None = None) -> Any:
        """One field's value, checked and converted by its kind (see national_codes.toml [fields]; `kind`
        overrides it, e.g. signed_yuan for a reconciliation total)."""
        if kind is None:
            return self._check[name](raw, where)
        return self._value(name, raw, where, kind)

    def _checker(self, f: FieldSpec) -> Callable[[Any, str], Any]:
        """`f`'s check, made once: the common well-formed values accepted with a test or two, anything else
        (and every refusal, with its message) through `_value`."""
        name, kind, limit = f.name, f.kind, f.max

        def slow(raw: Any, where: str) -> Any:
            return self._value(name, raw, where, None)

        if kind == "text":
            def text(raw: Any, where: str) -> Any:
                return raw if type(raw) is str and (limit is None or len(raw) <= limit) else slow(raw, where)
            return text
        if kind == "code":
            table = self.tables[f.table]  # type: ignore[index]

            def code(raw: Any, where: str) -> Any:
                return raw if type(raw) is str and raw in table else slow(raw, where)
            return code
        if kind in ("yuan", "quantity", "price"):
            places = -_PLACES[kind]
            fen = kind == "yuan"

            def number(raw: Any, where: str) -> Any:
                # a JSON number (Decimal) with few enough decimals as written, in range: no need to normalize
                if type(raw) is Decimal and raw.is_finite():
                    exp = raw.as_tuple().exponent
                    if places <= exp <= 0 and 0 <= raw <= MAX_YUAN:  # type: ignore[operator]
                        return int(raw * 100) if fen else raw
                return slow(raw, where)
            return number
        if kind == "datetime":
            def when(raw: Any, where: str) -> Any:
                if type(raw) is str and _DATETIME.fullmatch(raw):
                    try:
                        return dt.datetime.fromisoformat(raw)
                    except ValueError:
                        pass
                return slow(raw, where)
            return when
        return slow

    def _value(self, name: str, raw: Any, where: str, kind: str | None) -> Any:
        f = self.fields[name]
        who = where + f.who
        kind = kind or f.kind
        if kind in _PLACES:
            return self._number(f, kind, raw, who)
        if kind == "count":
            if type(raw) is int or (isinstance(raw, str) and re.fullmatch(r"-?\d{1,10}", raw)):
                return int(raw)
            raise NationalError(f"{who}应为整数，收到 {raw!r}", name)
        if not isinstance(raw, str):
            raise NationalError(f"{who}应为字符串，收到 {raw!r}", name)
        if kind == "text":
            if f.max is not None and len(raw) > f.max:
                raise NationalError(f"{who}超长：最多 {f.max} 个字符", name)
            return raw
        if kind == "code":
            assert f.table is not None
            if raw not in self.tables[f.table]:
                allowed = "、".join(f"{k} {v}" for k, v in self.tables[f.table].items())
                raise NationalError(f"{who}的值 {raw!r} 不在代码表中（可用：{allowed}）", name)
            return raw
        if kind == "admdvs":
            if not _ADMDVS.fullmatch(raw):
                raise NationalError(f"{who}应为6位医保区划代码，收到 {raw!r}", name)
            return raw
        if kind in ("datetime", "date"):
            pattern, form = (_DATETIME, "yyyy-MM-dd HH:mm:ss") if kind == "datetime" else (_DATE, "yyyy-MM-dd")
            try:
                if not pattern.fullmatch(raw):
                    raise ValueError
                t = dt.datetime.fromisoformat(raw)
            except ValueError:
                raise NationalError(f"{who}格式应为 {form}，收到 {raw!r}", name) from None
            return t if kind == "datetime" else t.date()
        if kind == "base64":
            try:
                data = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                raise NationalError(f"{who}应为 Base64 编码的文件内容", name) from None
            if len(data) > MAX_FILE:
                raise NationalError(f"{who}超过 {MAX_FILE // (1024 * 1024)} MB", name)
            return data
        raise AssertionError(f"unknown field kind {kind!r}")

    def _number(self, f: FieldSpec, kind: str, raw: Any, who: str) -> Any:
        if type(raw) is int:
            d = Decimal(raw)
        elif isinstance(raw, Decimal):
            d = raw
        elif isinstance(raw, str) and _NUMBER.fullmatch(raw.strip()):
            d = Decimal(raw.strip())
        else:
            raise NationalError(f"{who}应为数值，收到 {raw!r}", f.name)
        try:
            if not d.is_finite():
                raise InvalidOperation
            places = decimal_places(d)
        except InvalidOperation:
            raise NationalError(f"{who}应为数值，收到 {raw!r}", f.name) from None
        limit = _PLACES[kind]
        if places > limit:
            word = {2: "两", 4: "四", 6: "六"}[limit]
            raise NationalError(f"{who}最多{word}位小数，收到 {raw}", f.name)
        if kind != "signed_yuan" and d < 0:
            raise NationalError(f"{who}不能为负数，收到 {raw}", f.name)
        if abs(d) > MAX_YUAN:
            raise NationalError(f"{who}超出范围（16位，其中2位小数），收到 {raw}", f.name)
        return to_fen(d) if kind in ("yuan", "signed_yuan") else d

    def node(self, tx: TxSpec, name: str, raw: Any, where: str) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise NationalError(f"{where}应为 JSON 对象", name)
        out: dict[str, Any] = {}
        checks, signed = self._check, tx.signed
        for key, value in raw.items():
            if value is None or value == "":
                continue
            check = checks.get(key)
            if check is None:
                out[key] = value
            elif key in signed:
                out[key] = self._value(key, value, where, "signed_yuan")
            else:
                out[key] = check(value, where)
        for key in tx.required.get(name, ()):
            if key not in out:
                raise NationalError(f"{where}{self.who(key)}不能为空", key)
        return out

    def check_input(self, tx: TxSpec, raw: Any) -> dict[str, Any]:
        """The transaction's input nodes, checked: {node: dict} or {node: [dict, ...]}; an optional node
        left out is absent."""
        if not isinstance(raw, dict):
            raise NationalError("交易输入(input)应为 JSON 对象", "input")
        out: dict[str, Any] = {}
        for name, shape in tx.nodes.items():
            value = raw.get(name)
            if value is None:
                if shape.endswith("?"):
                    continue
                raise NationalError(f"交易输入缺少节点 {name}", name)
            if shape.startswith("list"):
                if not isinstance(value, list) or not value:
                    raise NationalError(f"节点 {name} 应为非空的 JSON 数组", name)
                if len(value) > MAX_LIST:
                    raise NationalError(f"节点 {name} 超过 {MAX_LIST} 条", name)
                out[name] = [self.node(tx, name, v, f"{name}第{i + 1}条：") for i, v in enumerate(value)]
            else:
                out[name] = self.node(tx, name, value, "")
        return out


def load_codes(path: str | Path | None = None) -> Codes:
    return Codes(tomllib.loads(Path(path or CODES_FILE).read_text(encoding="utf-8")))


def load_catalogue(path: str | Path | None = None, codes: Codes | None = None) -> dict[str, Item]:
    """The medical list (see national_catalogue.toml); ValueError naming the item if one is malformed."""
    where = Path(path or CATALOGUE_FILE)
    data = tomllib.loads(where.read_text(encoding="utf-8"))
    tables = (codes or load_codes()).tables
    out = {}
    for code, entry in data.get("item", {}).items():
        unknown = set(entry) - {"name", "chrgitm_lv", "med_chrgitm_type", "pric_uplmt_amt"}
        if unknown or entry.get("chrgitm_lv") not in tables["chrgitm_lv"] \
                or entry.get("med_chrgitm_type") not in tables["med_chrgitm_type"]:
            raise ValueError(f"{where}: item {code}: needs name, chrgitm_lv and med_chrgitm_type from the code "
                             f"tables, and nothing else but pric_uplmt_amt")
        ceiling = entry.get("pric_uplmt_amt")
        if ceiling is not None and not (isinstance(ceiling, str) and re.fullmatch(r"\d+(\.\d{1,6})?", ceiling)):
            raise ValueError(f"{where}: item {code}: pric_uplmt_amt must be a yuan string like \"25.00\"")
        out[code] = Item(code, entry["name"], entry["chrgitm_lv"], entry["med_chrgitm_type"],
                         Decimal(ceiling) if ceiling is not None else None)
    return out
