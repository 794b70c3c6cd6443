"""Which 8 bytes of the card identification code form the diversification factor D.

The 16-byte card identification code (EF05 tag 01) is region code (3 bytes) || D156000005 (5 bytes) ||
issuer serial (8 bytes, FF padded). Which bytes form D varies by region and spec version, so every MK
carries its rule (`KeyInfo.div_rule`), fixed when the key is created:

| rule       | D                                                           |
|------------|-------------------------------------------------------------|
| `last8`    | bytes 8..15 of the card id (the issuer serial); the default |
| `first8`   | bytes 0..7 (region code and registered identifier)          |
| `xor8`     | bytes 0..7 XOR bytes 8..15                                  |
| `offset:N` | the 8 bytes starting at byte N (0 <= N <= 8)                |
| `raw`      | the caller passes D itself (8 bytes) as the card id         |
"""

from __future__ import annotations

from hsm_client.errors import InvalidInput
from hsm_mock.suites import FACTOR_SIZE, xor

DEFAULT_RULE = "last8"
CARD_ID_SIZE = 16


def check_rule(rule: str) -> str:
    """The rule, validated (empty means the default); InvalidInput if unknown."""
    rule = rule or DEFAULT_RULE
    if rule in ("last8", "first8", "xor8", "raw"):
        return rule
    if rule.startswith("offset:"):
        n = rule.removeprefix("offset:")
        if n.isdigit() and int(n) <= CARD_ID_SIZE - FACTOR_SIZE and str(int(n)) == n:
            return rule
    raise InvalidInput("unknown diversification rule (use last8, first8, xor8, offset:N or raw)")


def factor(card_id: bytes, rule: str) -> bytes:
    """The 8-byte diversification factor D for a card id under a (validated) rule."""
    if rule == "raw":
        if len(card_id) != FACTOR_SIZE:
            raise InvalidInput(f"with rule raw the card id is the {FACTOR_SIZE}-byte factor")
        return card_id
    if len(card_id) != CARD_ID_SIZE:
        raise InvalidInput(f"card id must be {CARD_ID_SIZE} bytes")
    if rule == "last8":
        return card_id[8:]
    if rule == "first8":
        return card_id[:8]
    if rule == "xor8":
        return xor(card_id[:8], card_id[8:])
    n = int(check_rule(rule).removeprefix("offset:"))
    return card_id[n : n + FACTOR_SIZE]
