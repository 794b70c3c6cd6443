"""What an operator's probe sees: each part of the counter on its own, and the whole.

- `readers`: each user-card reader answers (a card in it or not); a reader that is gone is `down`;
- `security`: the PSAM (its reader still holds it) and/or the HSM (answers a ping); `absent` when none is
  configured (cards are then not authenticated and no record is written to them);
- `centre`: the settlement service answers its health call; `down` when it does not (settlements and
  collections are refused until it is back; reversals wait in the journal);
- `journal`: readable, with what it holds (pending entries are being resolved by the forwarder);
- `blacklist`: the card blacklist's version and age; `degraded` when it is older than two fetch intervals
  (the centre unreachable: cards are screened against an old copy) or was never fetched.

The whole is `down` when no reader or the journal works (nothing can be done), `degraded` when something
else is missing (the centre unreachable, a reader or the security module down), `ok` otherwise.
"""

from __future__ import annotations

from typing import Any

from cardlib.errors import CardError
from cardlib.psam import PsamSecurity
from cardlib.readers.pcsc import PcscReader, reader_states
from settlement.errors import SettlementError
from terminal.flows import Terminal
from terminal.models import Component, Health

try:
    from importlib.metadata import version as _version

    VERSION = _version("sscard")
except Exception:  # pragma: no cover - running from a tree that was never installed
    VERSION = "0+unknown"


def _reader(s) -> Component:
    try:
        st = s.status()
    except CardError as e:
        return Component(status="down", detail=f"{type(e).__name__}: {e}")
    return Component(status="ok", detail=f"card {st['card_no']}" if st["card_present"] else "no card")


def _modules(sm: Any) -> list[Any]:
    if sm is None:
        return []
    if hasattr(sm, "primary") and hasattr(sm, "fallback"):
        return [sm.primary, sm.fallback]
    return [sm]


def _psam_present(m: PsamSecurity) -> bool:
    """Whether the PSAM's reader still holds a card (PC/SC state; no APDU, so no flow is disturbed)."""
    reader = m.psam.reader
    if not isinstance(reader, PcscReader):
        return True
    try:
        (state,) = reader_states([reader.name])
    except (CardError, ValueError):
        return False
    return state.present


def _security(t: Terminal) -> Component:
    parts: list[tuple[str, bool]] = []
    for m in _modules(t.security):
        if isinstance(m, PsamSecurity):
            ok = _psam_present(m)
            parts.append((f"PSAM {t.terminal_number or '?'}: {'ok' if ok else 'not in its reader'}", ok))
            continue
        try:
            ping = getattr(getattr(m, "hsm", None), "ping", None)
            if ping is not None:
                ping()
            parts.append(("HSM: ok", True))
        except Exception as e:  # any failure of the link is "down", with its reason
            parts.append((f"HSM: {type(e).__name__}", False))
    if not parts:
        return Component(status="absent", detail="no PSAM or HSM configured")
    working = sum(ok for _, ok in parts)
    status = "ok" if working == len(parts) else "degraded" if working else "down"
    return Component(status=status, detail="; ".join(p for p, _ in parts))


def _centre(t: Terminal) -> Component:
    try:
        t.centre.health()
    except SettlementError as e:
        return Component(status="down", detail=f"{e.code}: {e.message}")
    return Component(status="ok", detail=t.config.settlement.url)


def _blacklist(t: Terminal) -> Component:
    if t.blacklist is None:
        return Component(status="absent", detail="no card blacklist")
    st = t.blacklist.state()
    age = st["age_seconds"]
    detail = f"version {st['version']}, {st['entries']} cards, " + ("never fetched" if age is None else
                                                                     f"{age} s old")
    stale = age is None or age > 2 * t.config.blacklist.interval
    return Component(status="degraded" if stale else "ok", detail=detail)


def health(t: Terminal) -> Health:
    components: dict[str, Component] = {}
    for name, s in t.sessions.items():
        components[f"reader:{name}"] = _reader(s)
    components["security"] = _security(t)
    components["centre"] = _centre(t)
    components["blacklist"] = _blacklist(t)
    try:
        counts = t.journal.counts()
        components["journal"] = Component(status="ok", detail=f"pending={counts['pending']}")
    except Exception as e:  # a journal that cannot be read is the one thing that stops the counter
        counts = {}
        components["journal"] = Component(status="down", detail=f"{type(e).__name__}: {e}")
    readers = [c for k, c in components.items() if k.startswith("reader:")]
    if components["journal"].status == "down" or all(c.status == "down" for c in readers):
        status = "down"
    elif any(c.status in ("down", "degraded") for c in components.values()):
        status = "degraded"
    else:
        status = "ok"
    return Health(status=status, terminal_id=t.config.terminal.id, version=VERSION, components=components,
                  journal=counts)
