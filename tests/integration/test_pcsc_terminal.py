"""Every terminal flow end to end over HTTP, with the simulated cards behind the real pcscd:
user card on vpcd slot 0, PSAM on slot 1, the centre (HSM + settlement service) on loopback."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from sim.faults import Fault
from sim.personalize import issue_sample
from tests.conftest import DIALECTS
from tests.terminal.conftest import LINES, agree


@pytest.mark.parametrize("dialect", DIALECTS)
def test_hospital_visit_with_refund_through_pcscd(counter_on_pcsc, dialect):
    """A stay and an outpatient visit, on either upstream (the national platform's: 1101, 2401, 2301, 2303,
    2402, 2304; the refund is the native API's)."""
    centre, counter, s0 = counter_on_pcsc
    with httpx.Client(base_url=counter.url, headers=counter.headers(), timeout=20) as api:
        (reader,) = api.get("/v1/readers").json()
        assert reader["reader"] == s0.reader and reader["card_present"]
        card = api.get("/v1/card", params={"national": True}).json()
        assert card["national"].split("|")[:3] == ["110100", "110105198001010016", "B10238475"]
        assert card["national"].split("|")[9] == "110100000042"
        ident = api.post("/v1/identity/check", json={"pin": "123456"}).json()
        assert ident["verified"] and ident["card_authenticated"]
        mdtrt = api.post("/v1/visits", json={"care": "inpatient"}).json()["mdtrt_id"]
        pre = api.post(f"/v1/visits/{mdtrt}/presettle", json={"lines": LINES}).json()
        r = api.post(f"/v1/visits/{mdtrt}/settle", json={"lines": LINES, "pin": "123456"})
        assert r.status_code == 200, r.text
        rec = r.json()
        assert rec["card_record"] == "written" and rec["breakdown"] == pre["breakdown"] | {
            "balc": rec["breakdown"]["balc"]}
        refund = api.post(f"/v1/settlements/{rec['key']}/refund",
                          json={"reason": "检查取消", "operator": "clerk-1"}).json()
        assert refund["amount"] == rec["amount"]
        assert "医疗费用结算单" in api.get(f"/v1/receipts/{rec['key']}", params={"format": "text"}).text
        # the record reached the card, through pcscd, with the PSAM's MAC
        records = s0.card.mf.children[0xDDF1].children[0xDF04].children[0xEF15].records
        assert records and records[0][0] == 0x01
        s0.card.faults.arm(Fault("pull", ins=0xE2))  # pulled while the record is written
        mdtrt = api.post("/v1/visits", json={"care": "outpatient"}).json()["mdtrt_id"]
        r = api.post(f"/v1/visits/{mdtrt}/settle", json={"lines": LINES, "pin": "123456"})
        assert r.status_code == 200 and r.json()["card_record"].startswith("failed"), r.text
    s0.ensure_inserted()
    assert agree(counter.terminal.journal, centre)["confirmed"] == 2


def test_pension_through_pcscd(counter_on_pcsc):
    centre, counter, s0 = counter_on_pcsc
    s0.replace(issue_sample("wang_xiuying"))
    with httpx.Client(base_url=counter.url, headers=counter.headers(), timeout=20) as api:
        wrong = api.post("/v1/pension/certify", json={"pin": "000000"})
        assert wrong.status_code == 403 and wrong.json()["details"]["tries_left"] == 2
        cert = api.post("/v1/pension/certify", json={"pin": "111111"}).json()
        assert cert["passed"] and "PIN verified by the centre" in cert["reason"]  # PSAM's block over pcscd
        assert [e.result for e in centre.hsm.audit.entries(command="verify_pin")] == ["00"]
        r = api.post("/v1/pension/collect", json={"pin": "111111", "amount": 2000_00})
        assert r.status_code == 200, r.text
        assert r.json()["card_record"] == "written"
        assert api.get("/v1/pension/status").json()["pensioner"]["status"] == 1


def test_card_events_are_server_sent(counter_on_pcsc):
    centre, counter, s0 = counter_on_pcsc
    events: list[dict] = []
    connected, removed = threading.Event(), threading.Event()

    def listen():
        with httpx.stream("GET", f"{counter.url}/v1/readers/events", params={"timeout": 6},
                          headers=counter.headers(), timeout=20) as r:
            connected.set()
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    if events[-1]["kind"] == "removed":
                        removed.set()
                    if len(events) == 2:
                        return

    th = threading.Thread(target=listen)
    th.start()
    assert connected.wait(10), "the event stream did not open"
    s0.link.remove()
    assert removed.wait(10), f"no 'removed' event: {events}"
    s0.ensure_inserted()
    th.join(10)
    assert [e["kind"] for e in events] == ["removed", "inserted"]
