"""Terminal API keys for the settlement service: one key per terminal, configured and kept only as a hash.

A keys file (TOML) lists each terminal, the SHA-256 of its key and the institution it belongs to (it
acts only for that institution: settlement/api/scope.py). An operator key is a distinct role, asked for
explicitly: it may act for every institution (pension issuance, death reports, fraud flags, any balance,
voids and refunds with a reason); its institution, if given, only says where it sits (a service hall). A
terminal without an institution is refused:

    [terminal.T0001]
    key_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    institution = "H110001"

    [terminal.OPS01]
    key_sha256 = "..."
    operator = true

Keys are random 32-byte tokens (`new_key()`), so a plain SHA-256 is enough to keep them unreadable.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from settlement.wire import ID_FORM

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class TerminalKey:
    """A configured terminal: its id, the hash of its key, and its institution, or the operator role."""

    terminal_id: str
    key_sha256: str
    institution: str | None = None
    operator: bool = False

    def __post_init__(self) -> None:
        if not _HEX64.match(self.key_sha256):
            raise ValueError(f"terminal {self.terminal_id}: key_sha256 must be 64 lowercase hex digits")
        if not ID_FORM.fullmatch(self.terminal_id):
            raise ValueError(f"terminal id {self.terminal_id!r}: use 1-64 letters, digits, '_', '.', '-'")
        if not (self.institution and ID_FORM.fullmatch(self.institution)) and not (
                self.operator and self.institution is None):
            raise ValueError(f"terminal {self.terminal_id}: a terminal key needs the institution it belongs to "
                             f"(1-64 letters, digits, '_', '.', '-'), got {self.institution!r}")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random terminal key (show it once, store only its hash)."""
    return secrets.token_urlsafe(32)


class KeyRing:
    """Looks a presented key up by its hash."""

    def __init__(self, terminals: Iterable[TerminalKey]) -> None:
        self._by_hash: dict[str, TerminalKey] = {}
        for t in terminals:
            if t.key_sha256 in self._by_hash:
                raise ValueError(f"terminals {self._by_hash[t.key_sha256].terminal_id} and {t.terminal_id} share a key")
            self._by_hash[t.key_sha256] = t

    def find(self, key: str | None) -> TerminalKey | None:
        if not key:
            return None
        digest = hash_key(key)
        found = self._by_hash.get(digest)
        return found if found is not None and hmac.compare_digest(found.key_sha256, digest) else None


def load_terminal_keys(path: str | Path) -> list[TerminalKey]:
    """Read a keys file (see the module docstring)."""
    data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    out = []
    for tid, entry in data.get("terminal", {}).items():
        unknown = set(entry) - {"key_sha256", "institution", "operator"}
        if unknown:
            raise ValueError(f"{path}: terminal {tid}: unknown field(s) {sorted(unknown)}")
        if "key_sha256" not in entry or type(entry.get("operator", False)) is not bool:
            raise ValueError(f"{path}: terminal {tid}: needs key_sha256, and operator (if given) is true or false")
        try:
            out.append(TerminalKey(tid, entry["key_sha256"], entry.get("institution"), entry.get("operator", False)))
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
    return out
