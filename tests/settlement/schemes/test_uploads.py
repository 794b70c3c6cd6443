"""Fee details and visit notes a HIS uploads (settlement/schemes/uploads.py): a repeat changes nothing,
other content under a serial is refused, removal by batch or serial, upload order kept."""

from __future__ import annotations

import pytest

from settlement.errors import IdempotencyConflict, InvalidRequest
from settlement.schemes.uploads import FeeDetail
from tests.settlement.flows_helpers import make_engine


def fd(sn: str, batch: str = "B1", amount: int = 1_00, **detail: str) -> FeeDetail:
    return FeeDetail(sn, batch, "DEMO-FW-0002", "01", amount, 0, {"cnt": "1", **detail})


def test_fee_details_are_idempotent_per_serial_and_keep_their_order(store):
    up = make_engine(store).uploads
    assert [f.feedetl_sn for f in up.add_fees("MD1", [fd("3"), fd("1")])] == ["3", "1"]
    assert [f.feedetl_sn for f in up.add_fees("MD1", [fd("1"), fd("2", "B2")])] == ["3", "1", "2"]
    with pytest.raises(IdempotencyConflict):
        up.add_fees("MD1", [fd("4"), fd("1", amount=2_00)])
    with pytest.raises(IdempotencyConflict):
        up.add_fees("MD1", [fd("1", note="other")])
    with pytest.raises(InvalidRequest):
        up.add_fees("MD1", [fd("5"), fd("5")])
    assert [f.feedetl_sn for f in up.fees("MD1")] == ["3", "1", "2"]  # nothing of the refused uploads
    assert [f.feedetl_sn for f in up.fees("MD1", "B1")] == ["3", "1"]
    assert up.fees("MD1")[0].line().amount == 1_00
    assert up.remove_fees("MD1", chrg_bchno="B2") == 1
    assert up.remove_fees("MD1", feedetl_sns=["3", "9"]) == 1
    assert [f.feedetl_sn for f in up.fees("MD1")] == ["1"]
    assert up.fees("MD2") == []


def test_visit_notes(store):
    up = make_engine(store).uploads
    assert up.note("MD1", "discharge") is None
    up.set_note("MD1", "discharge", {"endtime": "2024-03-06 09:00:00"})
    up.set_note("MD1", "visit", {"med_type": "21"})
    assert up.note("MD1", "discharge") == {"endtime": "2024-03-06 09:00:00"}
    assert up.remove_note("MD1", "discharge") and not up.remove_note("MD1", "discharge")
    up.add_fees("MD1", [fd("1")])
    up.forget("MD1")
    assert up.fees("MD1") == [] and up.note("MD1", "visit") is None
    with pytest.raises(InvalidRequest):
        up.set_note("MD1", "gossip", {})
