"""Card images: a card's EF05 and EF06 as raw records (hex), loaded into a simulated card byte for byte.

Personalisation (sim.personalize) writes what the layout allows; a card image holds whatever a card in the
field holds, including bytes our personalisation would never write (a spec version "0200", a name padded
with FF, an issuer code in ASCII, a v2 card without the 4E record). A TOML image file:

    [card]
    description = "what this card is and where its facts come from"
    t0 = true                     # T=0 rules (61xx/6Cxx); default false
    identifier_mode = false       # the card refuses READ RECORD by identifier; default true
    ef06_requires_auth = false    # third generation: EF06 answers 6982 until EXTERNAL AUTHENTICATE
    historical = "0086..."        # ATR historical bytes (hex), optional
    pin = "123456"

    [records]                     # each file's records in order: record n is the n-th string (tag len value)
    EF05 = ["01 10 330300D1...", "02 01 33", ...]
    EF06 = [...]

    [expect]                      # what a reader should make of it (used by tests; the card ignores it)

Its keys are diversified by the issuer (default: the process-wide test issuer) from the card identification
code in EF05 for the suite its spec version means (cardlib.profiles), so PSAMs and HSMs of that issuer can
authenticate it. `sscard sim run --image FILE` puts one behind vpcd or in a serial reader.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cardlib.profiles import suite_for_spec
from sim.card import SimCard, make_atr
from sim.issuer import DEFAULT_ISSUER, Issuer
from sim.personalize import HolderError, ssse_filesystem

FILES = ("EF05", "EF06")


@dataclass
class CardImage:
    """One card as raw records."""

    name: str
    description: str
    records: dict[str, list[bytes]]
    t0: bool = False
    identifier_mode: bool = True
    ef06_requires_auth: bool = False
    historical: bytes = b"MOHRSS-IMG"
    pin: str = "123456"
    expect: dict[str, Any] = field(default_factory=dict)

    def value(self, file: str, tag: int) -> bytes | None:
        """The value of the first record with `tag` in `file` (None if there is none or it is not a TLV)."""
        for rec in self.records.get(file, []):
            if len(rec) >= 2 and rec[0] == tag and len(rec) >= 2 + rec[1]:
                return rec[2 : 2 + rec[1]]
        return None


def load_image(path: str | Path) -> CardImage:
    """Read a card image file; HolderError naming what is wrong."""
    p = Path(path)
    try:
        d = tomllib.loads(p.read_text("utf-8"))
    except OSError as e:
        raise HolderError(f"cannot read card image {p}: {e.strerror}") from e
    except (ValueError, UnicodeDecodeError) as e:
        raise HolderError(f"{p}: not valid TOML: {e}") from e
    card, records = dict(d.get("card", {})), dict(d.get("records", {}))
    unknown = set(records) - set(FILES)
    if unknown or not records:
        raise HolderError(f"{p}: [records] holds {', '.join(FILES)} (got {', '.join(sorted(records)) or 'none'})")
    raw: dict[str, list[bytes]] = {}
    for name, recs in records.items():
        try:
            raw[name] = [bytes.fromhex(str(r)) for r in recs]
        except ValueError as e:
            raise HolderError(f"{p}: {name} has a record that is not hex: {e}") from e
    try:
        historical = bytes.fromhex(str(card.get("historical", b"MOHRSS-IMG".hex())))
    except ValueError as e:
        raise HolderError(f"{p}: historical bytes are not hex") from e
    return CardImage(p.stem, str(card.get("description", "")), raw, bool(card.get("t0", False)),
                     bool(card.get("identifier_mode", True)), bool(card.get("ef06_requires_auth", False)),
                     historical, str(card.get("pin", "123456")), dict(d.get("expect", {})))


def issue_image(image: CardImage, *, issuer: Issuer | None = None, t0: bool | None = None) -> SimCard:
    """A fresh simulated card holding the image's records as they are."""
    card_id = (image.value("EF05", 0x01) or b"").ljust(16, b"\xff")[:16]
    keys = (issuer or DEFAULT_ISSUER).card_keys(card_id, suite_for_spec(image.value("EF05", 0x03) or b""))
    mf = ssse_filesystem(image.records.get("EF05", []), image.records.get("EF06", []),
                         ef06_requires_auth=image.ef06_requires_auth)
    use_t0 = image.t0 if t0 is None else t0
    return SimCard(mf, image.pin, t0=use_t0, atr=make_atr(use_t0, image.historical), label=image.name, keys=keys,
                   identifier_mode=image.identifier_mode)
