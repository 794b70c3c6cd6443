"""Issue simulated cards from a holder description (TOML or JSON).

A holder file has a `[card]` table (EF05 items, and the card's behaviour: `t0`, `identifier_mode` (default
true: READ RECORD by identifier too), `ef06_requires_auth` (a third-generation card that refuses EF06 with
6982 until the terminal authenticates)), a `[holder]` table (EF06 items), a `[pin]` table with the test
card's initial PIN, and optional `[applications.DF0x]` tables with DF items. Every value is written through
cardlib's layout, so a wrong length or format is refused here, naming the field. Each item file holds one
record per item in layout order (an item the holder file leaves out is written empty), as cards are issued.
Cards with bytes our personalisation would never write are built from card images (sim.images).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from cardlib import layout
from cardlib.errors import FieldError
from cardlib.layout import DataItem, RecordFile
from cardlib.profiles import suite_for_spec
from cardlib.tlv import build_record
from sim.card import DF, EF, SimCard
from sim.issuer import DEFAULT_ISSUER, Issuer

SSSE_FID = 0xDDF1


class HolderError(ValueError):
    """A holder file is missing a field or has a value the card cannot hold."""


@dataclass
class Holder:
    """A card holder and their card, as written in a holder file."""

    card: dict[str, Any]
    holder: dict[str, Any]
    pin: str = "123456"
    applications: dict[str, dict[str, Any]] = field(default_factory=dict)
    t0: bool = False
    source: str = "<dict>"
    identifier_mode: bool = True
    ef06_requires_auth: bool = False

    @property
    def name(self) -> str:
        return str(self.holder.get("name", ""))

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<dict>") -> Holder:
        try:
            card = dict(d["card"])
            holder = dict(d["holder"])
        except (KeyError, TypeError) as e:
            raise HolderError(f"{source}: needs [card] and [holder] tables") from e
        t0 = bool(card.pop("t0", False))
        identifier_mode = bool(card.pop("identifier_mode", True))
        ef06_requires_auth = bool(card.pop("ef06_requires_auth", False))
        pin = str(d.get("pin", {}).get("initial", "123456"))
        apps = {k: dict(v) for k, v in d.get("applications", {}).items()}
        return cls(card, holder, pin, apps, t0, source, identifier_mode, ef06_requires_auth)


def save_holder(h: Holder, path: str | Path) -> None:
    """Write `h` as a JSON holder file that `load_holder` reads back (dates as ISO text)."""
    card = {**h.card, "t0": h.t0, "identifier_mode": h.identifier_mode, "ef06_requires_auth": h.ef06_requires_auth}
    d = {"card": card, "holder": h.holder, "pin": {"initial": h.pin}, "applications": h.applications}

    def plain(v: object) -> str:
        if isinstance(v, dt.date):
            return v.isoformat()
        raise HolderError(f"{h.source}: a {type(v).__name__} value cannot be written to a JSON holder file")

    Path(path).write_text(json.dumps(d, ensure_ascii=False, indent=1, default=plain), encoding="utf-8")


def load_holder(path: str | Path) -> Holder:
    """Read a holder file (.toml or .json)."""
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as e:
        raise HolderError(f"cannot read holder file {p}: {e.strerror}") from e
    try:
        d = json.loads(text) if p.suffix == ".json" else tomllib.loads(text.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise HolderError(f"{p}: not valid {'JSON' if p.suffix == '.json' else 'TOML'}: {e}") from e
    return Holder.from_dict(d, str(p))


def sample_holders() -> dict[str, Path]:
    """The sample holder files shipped in sim/holders/, by stem."""
    base = resources.files("sim") / "holders"
    return {Path(str(f)).stem: Path(str(f)) for f in base.iterdir() if str(f).endswith((".toml", ".json"))}


def _value(item: DataItem, v: Any, where: str) -> bytes:
    if item.fmt.kind == "date" and isinstance(v, str):
        try:
            v = dt.date.fromisoformat(v)
        except ValueError as e:
            raise HolderError(f"{where}: not a date: {v!r}") from e
    if item.fmt.kind == "b" and isinstance(v, str):
        try:
            v = bytes.fromhex(v)
        except ValueError as e:
            raise HolderError(f"{where}: not hex: {v!r}") from e
    if item.fmt.kind in ("an", "cn", "gbk") and not isinstance(v, str):
        v = str(v)
    try:
        return item.fmt.build(v)
    except FieldError as e:
        raise HolderError(f"{where}: {e}") from e


def item_records(f: RecordFile, values: dict[str, Any], spec: str, source: str, required: bool) -> list[bytes]:
    """The raw records of item file `f` holding `values` (by item name), in layout order."""
    recs = []
    for item in f.items_for(spec):
        if item.name not in values and required and item.name != "name_extension":
            raise HolderError(f"{source}: missing {f.name} item {item.name!r} ({item.label})")
        value = values.get(item.name, "")
        recs.append(build_record(item.tag, _value(item, value, f"{source}: {item.name}")))
    unknown = set(values) - {i.name for i in f.items}
    if unknown:
        raise HolderError(f"{source}: unknown {f.name} items: {', '.join(sorted(unknown))}")
    return recs


def ssse_filesystem(ef05: list[bytes], ef06: list[bytes], *, photo: bytes = b"",
                    applications: dict[str, dict[str, list[bytes]]] | None = None,
                    ef06_requires_auth: bool = False) -> DF:
    """The MF with SSSE, EF05/EF06 holding these raw records, EF07/EF08 and DF01..DF04 (`applications`:
    raw records by DF and file name; cyclic files start empty)."""
    mf = DF(layout.MF_FID, "MF")
    ssse = mf.add(DF(SSSE_FID, "SSSE", layout.SSSE_AID))
    assert isinstance(ssse, DF)
    ssse.add(EF.from_layout(layout.EF05, ef05))
    ef = EF.from_layout(layout.EF06, ef06)
    ef.read_needs_auth = ef06_requires_auth
    ssse.add(ef)
    ssse.add(EF(0xEF07, "EF07", 7, binary=bytearray()))  # fingerprint template (empty on test cards)
    ssse.add(EF(0xEF08, "EF08", 8, binary=bytearray(photo)))
    for app in layout.APPLICATIONS:
        df = ssse.add(DF(app.fid, app.name))
        assert isinstance(df, DF)
        for f in app.files:
            df.add(EF.from_layout(f, (applications or {}).get(app.name, {}).get(f.name, [])))
    return mf


def build_filesystem(h: Holder) -> DF:
    """The MF with SSSE, EF05/EF06, EF07/EF08 and DF01..DF04, filled from the holder."""
    spec = str(h.card.get("spec_version", "2.00"))
    known = {a.name for a in layout.APPLICATIONS}
    unknown = set(h.applications) - known
    if unknown:
        raise HolderError(f"{h.source}: unknown applications: {', '.join(sorted(unknown))}")
    apps = {
        app.name: {f.name: item_records(f, h.applications.get(app.name, {}), spec, h.source, False)
                   for f in app.files if f.kind is layout.RecordKind.ITEMS}
        for app in layout.APPLICATIONS
    }
    return ssse_filesystem(
        item_records(layout.EF05, h.card, spec, h.source, True),
        item_records(layout.EF06, h.holder, spec, h.source, True),
        photo=bytes(h.card.get("photo", b"") or b""),
        applications=apps,
        ef06_requires_auth=h.ef06_requires_auth,
    )


def issue_card(h: Holder, *, t0: bool | None = None, issuer: Issuer | None = None,
               ef06_requires_auth: bool | None = None) -> SimCard:
    """A fresh simulated card for holder `h` (PIN counter full, nothing selected), with keys diversified
    by `issuer` (default: the process-wide test issuer) for the suite its spec version uses.
    `ef06_requires_auth` overrides the holder file's (a third-generation card that wants the terminal
    authenticated before EF06)."""
    if ef06_requires_auth is not None:
        h = dataclasses.replace(h, ef06_requires_auth=ef06_requires_auth)
    mf = build_filesystem(h)
    spec = str(h.card.get("spec_version", "2.00"))
    card_id = bytes.fromhex(str(h.card["card_id"]))
    keys = (issuer or DEFAULT_ISSUER).card_keys(card_id, suite_for_spec(spec))
    return SimCard(mf, h.pin, t0=h.t0 if t0 is None else t0, label=h.name, keys=keys,
                   identifier_mode=h.identifier_mode)


def issue_sample(stem: str = "zhang_san", **kw: Any) -> SimCard:
    """A card for one of the shipped sample holders."""
    holders = sample_holders()
    if stem not in holders:
        raise HolderError(f"no sample holder {stem!r}; have: {', '.join(sorted(holders))}")
    return issue_card(load_holder(holders[stem]), **kw)
