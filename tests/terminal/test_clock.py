"""The terminal's time comes from its clock, in China Standard Time, whatever the machine's time zone.

A card valid "until 2026-06-30" is valid through that day in China: at 2026-06-30 23:59 CST (15:59 UTC)
it still works; at 2026-07-01 00:30 CST (2026-06-30 16:30 UTC, still the 30th on a UTC machine) it is
expired. The business day of a journal entry and the time written to the card's DF04 record follow the
same clock.
"""

from __future__ import annotations

import datetime as dt

import httpx

from sscard.stack import start_counter
from terminal.clock import Clock
from terminal.journal import Journal


def at(iso: str) -> Clock:
    return Clock(lambda: dt.datetime.fromisoformat(iso))


class Settable:
    """A clock source a test moves."""

    def __init__(self, iso: str) -> None:
        self.t = dt.datetime.fromisoformat(iso)

    def __call__(self) -> dt.datetime:
        return self.t


def test_journal_days_and_stamps_come_from_the_clock(tmp_path):
    j = Journal(tmp_path / "j.db", "T9", clock=at("2026-06-30T16:30:00+00:00"))
    e = j.begin("settle", {"mdtrt_id": "V1"}, amount=100)
    assert e.business_day == "2026-07-01"  # already the 1st in China
    assert e.created_at == "2026-06-30T16:30:00.000000+00:00"
    j.close()


def test_clock_refuses_naive_times():
    try:
        Clock(lambda: dt.datetime(2026, 1, 1)).now()
    except ValueError as e:
        assert "aware" in str(e)
    else:
        raise AssertionError("a naive time was accepted")


def test_card_expiry_is_judged_on_the_china_date_of_the_terminal_clock(centre):
    now = Settable("2026-06-30T15:59:00+00:00")  # 23:59 on the 30th in China
    k = start_counter(centre, "memory:zhao_deming", clock=Clock(now))
    try:
        sim = next(iter(k.terminal.sessions.values())).reader.card  # the simulated card behind memory:
        sim.mf.children[0xDDF1].children[0xEF05].records[5] = b"\x06\x04\x20\x26\x06\x30"  # valid to 2026-06-30
        with httpx.Client(base_url=k.url, headers=k.headers(), timeout=15) as api:
            r = api.post("/v1/visits", json={"care": "outpatient"})
            assert r.status_code == 200, r.text  # the card's last day
            now.t = dt.datetime.fromisoformat("2026-06-30T16:30:00+00:00")  # 00:30 on 1 July in China
            r = api.post("/v1/visits", json={"care": "outpatient"})
            assert r.status_code == 403 and r.json()["code"] == "CARD_EXPIRED", r.text
    finally:
        k.stop()
