"""A terminal's business day, exported from its journal, reconciles clean against the centre's ledger."""

from __future__ import annotations

import httpx
import pytest

from settlement.reconcile.reconciler import Reconciler
from sscard.stack import INSTITUTION, start_counter
from terminal.export import journal_lines
from terminal.journal import business_day_today
from tests.terminal.conftest import DIALECTS, LINES

pytestmark = pytest.mark.parametrize("dialect", DIALECTS)


def test_exported_day_reconciles_clean(api, counter, centre, dialect):
    # a settlement with a partial refund, one reversed because its answer was lost, a pension collection, and
    # one reversed because its answer was lost
    mdtrt = api.post("/v1/visits", json={"care": "outpatient"}).json()["mdtrt_id"]
    rec = api.post(f"/v1/visits/{mdtrt}/settle", json={"lines": LINES, "pin": "123456"}).json()
    refund = {"amount": 30_00, "reason": "退药", "operator": "clerk-1"}
    assert api.post(f"/v1/settlements/{rec['key']}/refund", json=refund).status_code == 200
    real = counter.terminal.centre.settle

    def applied_then_lost(**kw):
        real(**kw)
        from settlement.errors import ServiceUnreachable

        raise ServiceUnreachable("timed out")

    counter.terminal.centre.settle = applied_then_lost  # type: ignore[method-assign]
    mdtrt2 = api.post("/v1/visits", json={"care": "outpatient"}).json()["mdtrt_id"]
    assert api.post(f"/v1/visits/{mdtrt2}/settle", json={"lines": LINES, "pin": "123456"}).status_code == 503
    counter.terminal.centre.settle = real  # type: ignore[method-assign]
    k2 = start_counter(centre, "memory:wang_xiuying", dialect=dialect)
    try:
        with httpx.Client(base_url=k2.url, headers=k2.headers(), timeout=15) as api2:
            assert api2.post("/v1/pension/collect", json={"pin": "111111", "amount": 500_00}).status_code == 200
            real_collect = k2.terminal.centre.collect_pension

            def collected_then_lost(**kw):
                real_collect(**kw)
                from settlement.errors import ServiceUnreachable

                raise ServiceUnreachable("timed out")

            k2.terminal.centre.collect_pension = collected_then_lost  # type: ignore[method-assign]
            assert api2.post("/v1/pension/collect", json={"pin": "111111", "amount": 200_00}).status_code == 503
        day = business_day_today()
        lines = journal_lines(counter.terminal.journal, day, INSTITUTION, "110000")
        # the second counter is terminal T0001 too: it shares the journal file
        kinds = sorted((x.kind, x.status) for x in lines)
        assert kinds == [("pension_collect", "confirmed"), ("pension_collect", "reversed"), ("refund", "confirmed"),
                         ("settle", "confirmed"), ("settle", "reversed"), ("void", "confirmed"), ("void", "confirmed")]
        recon = Reconciler(centre.engine)
        recon.register_terminal("T0001", INSTITUTION)
        recon.import_lines(lines, actor="test")
        report = recon.reconcile(day.isoformat(), actor="test")
        assert report.clean, report.open_differences
        # and the same day with the refund missing from the export is not clean: the check can fail
        recon.import_lines([x for x in lines if x.kind != "refund"], actor="test")
        report = recon.reconcile(day.isoformat(), actor="test")
        assert [d.key for d in report.open_differences] == [x.key for x in lines if x.kind == "refund"]
    finally:
        k2.stop()
