"""Fixtures: the centre (HSM + settlement service on SQLite) and terminal daemons, all on loopback.

A counter talks to the centre in one of the upstream dialects (`terminal.centre`): the `dialect` fixture
(tests/conftest.py) is "native" unless a test parametrizes it; the flow, reversal and recovery modules run
every test in each of DIALECTS (`pytestmark = pytest.mark.parametrize("dialect", DIALECTS)`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from settlement.errors import UnknownTransaction
from sscard.stack import Centre, Counter, start_centre, start_counter
from terminal.journal import CONFIRMED, FAILED, PENDING, REVERSED, Journal
from tests.conftest import DIALECTS  # noqa: F401 - the flow modules take it from here

# fee lines with their catalogue codes (settlement/api/national_catalogue.toml: 01 甲类, 02 乙类, 03 丙类), which the
# national platform classes items by; the native API takes the class the line gives
LINES = [
    {"med_list_codg": "DEMO-XY-0001", "chrgitm_lv": "A", "det_item_fee_sumamt": 120_00},
    {"med_list_codg": "DEMO-XY-0002", "chrgitm_lv": "B", "det_item_fee_sumamt": 80_00},
    {"med_list_codg": "DEMO-ZY-0001", "chrgitm_lv": "C", "det_item_fee_sumamt": 15_00},
]


@pytest.fixture
def centre(tmp_path: Path) -> Iterator[Centre]:
    c = start_centre(tmp_path / "centre")
    yield c
    c.stop()


@pytest.fixture
def counter(centre: Centre, dialect: str) -> Iterator[Counter]:
    k = start_counter(centre, dialect=dialect)
    yield k
    k.stop()


@pytest.fixture
def api(counter: Counter) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=counter.url, headers=counter.headers(), timeout=15) as c:
        yield c


def agree(journal: Journal, centre: Centre, terminal_id: str = "T0001") -> dict[str, int]:
    """Check journal and ledger agree exactly on every settlement; return counts by final state."""
    client = centre.client(terminal_id)
    counts = {CONFIRMED: 0, REVERSED: 0, FAILED: 0}
    try:
        for e in journal.all():
            assert e.state != PENDING, f"{e.key} still pending"
            if e.kind != "settle":
                continue
            try:
                rec = client.settlement(e.key)
            except UnknownTransaction:
                rec = None
            if e.state == CONFIRMED:
                assert rec is not None and rec.status == "settled", (e.key, rec)
                posting = client.posting(e.key)
                assert sum(t.amount for t in posting.transfers) > 0
            elif e.state == REVERSED:
                assert rec is None or rec.status in ("voided", "void_before_arrival"), (e.key, rec)
            else:
                assert rec is None or rec.status == "void_before_arrival", (e.key, rec)
            counts[e.state] += 1
    finally:
        client.close()
    centre.engine.ledger.check_invariants()
    return counts


@contextmanager
def busy(session) -> Iterator[None]:
    """The reader held by another flow (as a holder's flow holds it) while the block runs."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with session.claim("test"):
            held.set()
            release.wait(10)

    th = threading.Thread(target=hold)
    th.start()
    held.wait(5)
    try:
        yield
    finally:
        release.set()
        th.join()
