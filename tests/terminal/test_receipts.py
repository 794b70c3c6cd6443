"""Receipts as a card holder reads them: Chinese labels (no field codes), names, local time, yuan, the right
title for each kind, the reason of a failure, and lines that fit 58 mm and 80 mm paper."""

from __future__ import annotations

import re
import unicodedata

import httpx
import pytest

from sscard.stack import start_counter
from tests.terminal.conftest import LINES

ZH = {"Accept-Language": "zh-CN"}


def width(s: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def test_settlement_and_refund_receipts(api):
    mdtrt = api.post("/v1/visits", json={}).json()["mdtrt_id"]
    rec = api.post(f"/v1/visits/{mdtrt}/settle", json={"lines": LINES, "pin": "123456"}, headers=ZH).json()
    assert rec["title"] == "医疗费用结算单" and rec["state_label"] == "成功"
    assert rec["name"] == "张三" and rec["institution_name"] == "北京示例第三医院"
    assert rec["at"].endswith("+08:00")
    labels = {x["field"]: x["label"] for x in rec["lines"]}
    assert labels["medfee_sumamt"] == "医疗费总额" and labels["psn_cash_pay"] == "现金支付"
    assert {x["yuan"] for x in rec["lines"] if x["field"] == "medfee_sumamt"} == {"215.00"}
    for cols in (32, 48):
        text = api.get(f"/v1/receipts/{rec['key']}", params={"format": "text", "width": cols}).text
        assert "张三" in text and "北京示例第三医院" in text and "215.00 元" in text
        assert not re.search(r"[a-z]+_[a-z_]+", text), text  # no field codes such as medfee_sumamt
        assert all(width(line) <= cols for line in text.splitlines()), text
        local = rec["at"][:19].replace("T", " ")
        assert local in text  # China time, not UTC
    refund = api.post(f"/v1/settlements/{rec['key']}/refund", headers=ZH,
                      json={"amount": 15_00, "reason": "丙类药品退药，患者当场退回药品一盒",
                            "operator": "收费员王芳"}).json()
    assert refund["title"] == "医疗费用退费凭证" and refund["operator"] == "收费员王芳"
    assert refund["original_key"] == rec["key"] and refund["name"] == "张三"
    text = api.get(f"/v1/receipts/{refund['key']}", params={"format": "text"}).text
    assert "经办人" in text and "收费员王芳" in text and "原因：丙类药品退药" in text
    assert all(width(line) <= 32 for line in text.splitlines()), text


@pytest.mark.parametrize("body", [{"reason": "x", "operator": "a"}, {"reason": "退药"}, {"operator": "a"}])
def test_a_refund_without_a_reason_or_a_clerk_is_refused(api, body):
    r = api.post("/v1/settlements/T0001:1/refund", json=body)
    assert r.status_code == 422 and r.json()["code"] == "INVALID_REQUEST"


def test_pension_receipt_is_titled_as_a_payout_and_a_failure_says_why(centre):
    k = start_counter(centre, "memory:wang_xiuying")
    try:
        with httpx.Client(base_url=k.url, headers=k.headers() | ZH, timeout=15) as api:
            refused = api.post("/v1/pension/collect", json={"pin": "111111", "amount": 100_000_00})
            assert refused.status_code == 409
            assert re.search(r"[\u4e00-\u9fff]", refused.json()["message"])  # the clerk reads Chinese
            assert api.post("/v1/pension/certify", json={"pin": "111111"}).json()["passed"]
            paid = api.post("/v1/pension/collect", json={"pin": "111111", "amount": 1000_00}).json()
            assert paid["title"] == "养老金领取凭证" and paid["kind"] == "pension_collect"
            assert [x["label"] for x in paid["lines"]] == ["领取金额", "养老金账户余额"]
            assert paid["lines"][0]["yuan"] == "1000.00" and paid["name"] == "王秀英"
            day = api.get("/v1/transactions").json()
            failed = [x for x in day if x["state"] == "failed"]
            assert failed and failed[0]["error"]["code"] == "INSUFFICIENT_FUNDS"
            assert failed[0]["reason"] == failed[0]["error"]["message"] and "余额不足" in failed[0]["reason"]
            assert failed[0]["state_label"] == "失败"
    finally:
        k.stop()


def test_every_reason_the_terminal_journals_reads_in_chinese():
    """Reasons the flows and recovery write to the journal (reversals, recovery) have a Chinese label."""
    from pathlib import Path

    from terminal.i18n import labels

    root = Path(__file__).resolve().parents[2] / "terminal"
    found = set()
    for f in root.glob("*.py"):
        text = f.read_text()
        found |= set(re.findall(r'(?:reverse|set_reason|mark_reversed)\([^,]+, "([^"]+)"\)', text))
        found |= {m.replace("{record.status}", s) for m in re.findall(r'f"(found \{record\.status\}[^"]*)"', text)
                  for s in ("voided", "void_before_arrival")}
        found |= set(re.findall(r'return "(found [^"]+)"', text))
    assert len(found) >= 6, found
    missing = [r for r in found if f"reason.{r}" not in labels()]
    assert not missing, missing
