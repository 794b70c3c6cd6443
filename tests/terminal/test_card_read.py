"""The daemon's card read with a card that shows EF06 only to an authenticated terminal (third generation):
GET /v1/card and the flows authenticate with the counter's configured security module (PSAM first)."""

from __future__ import annotations

from pathlib import Path

import httpx

from sscard.stack import start_counter

V3_IMAGE = Path(__file__).resolve().parents[1] / "cards" / "v3_auth_before_ef06.toml"


def test_get_card_authenticates_with_the_counters_security_module(centre):
    counter = start_counter(centre, user_card=f"memory:{V3_IMAGE}")
    try:
        with httpx.Client(base_url=counter.url, headers=counter.headers(), timeout=15) as api:
            r = api.get("/v1/card", params={"national": "true"})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["name"] == "林志明" and body["profile"] == "generation-3" and body["warnings"] == []
            assert body["national"].startswith("440300|")
            r = api.post("/v1/identity/check", json={"pin": "123456"})
            assert r.status_code == 200, r.text
    finally:
        counter.stop()


def test_without_a_security_module_the_clerk_is_told_why(centre):
    counter = start_counter(centre, user_card=f"memory:{V3_IMAGE}")
    try:
        for s in counter.terminal.sessions.values():
            s.card.security = None  # a counter with neither PSAM nor HSM
        with httpx.Client(base_url=counter.url, headers=counter.headers(), timeout=15) as api:
            r = api.get("/v1/card")
        assert r.status_code == 502 and r.json()["code"] == "CARD_NEEDS_AUTHENTICATION", r.text
        assert "6982" in r.json()["details"]["reason"]
    finally:
        counter.stop()
