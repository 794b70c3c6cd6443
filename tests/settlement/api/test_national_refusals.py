"""Hostile and careless HIS messages on the national platform interface: each gets HTTP 200 with infcode -1
and an err_msg naming the field in Chinese (as the platform answers), and changes nothing at the centre.
Scope: a terminal acts only for its own institution, with its own sign-in, on its own visits, settlements
and files.
"""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from settlement.api.auth import TerminalKey, hash_key
from settlement.api.service import create_app
from testing.his import His, detail_file
from tests.settlement.api.test_national import (
    BJ,
    EMP,
    EMP_CARD,
    EMP_SN,
    HOSP,
    HOSP_NAME,
    KEY,
    OTHER_KEY,
    fee_lines,
    register,
)
from tests.settlement.flows_helpers import Clock, make_engine

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

OTHER = "H11010500002"
TABLES = ("med_visits", "med_settlements", "med_fee_details", "med_visit_notes", "med_cancelled_visits",
          "med_reversals", "ledger_postings", "nat_sign_ins", "nat_files")


@pytest.fixture
def world(make_store):
    eng = make_engine(make_store("sqlite"), Clock())  # refusals are the interface's: one store is enough
    eng.registry.add_institution(HOSP, HOSP_NAME, BJ, "3")
    eng.registry.add_institution(OTHER, "北京另一医院", BJ, "2")
    eng.registry.add_person(EMP, "张伟", BJ, "employee", card_no=EMP_CARD)
    eng.cards.issue(EMP, EMP_CARD, EMP_SN, actor="issuer", reason="first card")
    app = create_app(eng, terminals=[TerminalKey("T01", hash_key(KEY), institution=HOSP),
                                     TerminalKey("T02", hash_key(OTHER_KEY), institution=OTHER),
                                     TerminalKey("OPS", hash_key("ops-key"), operator=True)])
    with TestClient(app) as http:
        his = His(http, key=KEY, fixmedins_code=HOSP, fixmedins_name=HOSP_NAME, mdtrtarea_admvs=BJ, clock=Clock())
        his.sign_in()
        yield his, http, eng


def counts(eng: Any) -> dict[str, int]:
    return eng.store.read(lambda tx: {t: tx.value(f"SELECT COUNT(*) FROM {t}") for t in TABLES})


def refused(his: His, eng: Any, send: Callable[[], Any], *words: str) -> str:
    """Send, expect infcode -1 naming `words`, and nothing written."""
    before = counts(eng)
    reply = send()
    if hasattr(reply, "status_code"):
        assert reply.status_code == 200
        reply = json.loads(reply.text)
    assert reply["infcode"] == -1 and reply["output"] is None, reply
    for w in words:
        assert w in reply["err_msg"], (w, reply["err_msg"])
    assert counts(eng) == before
    return str(reply["err_msg"])


def visit_with_fees(his: His) -> str:
    mdtrt_id = register(his, EMP, EMP_CARD)
    his.ok("2204", {"feedetail": fee_lines(mdtrt_id, EMP, [("DEMO-FW-0002", "25.00", "1")])}, insuplc_admdvs=BJ)
    return mdtrt_id


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", "{\"infno\": \"1101\"}".encode("gbk") + b"\xff", b"",
                                  b"{\"infno\": NaN}"])
def test_a_malformed_envelope(world, body):
    his, _, eng = world
    refused(his, eng, lambda: his.post(body), "JSON")


@pytest.mark.parametrize(("change", "words"), [
    ({"msgid": None}, ("发送方报文ID(msgid)", "不能为空")),
    ({"msgid": "H11010500001202413011000000001"}, ("msgid", "yyyyMMddHHmmss")),
    ({"msgid": "H99999999999202403011000000001"}, ("msgid",)),
    ({"infno": "9999"}, ("交易编号(infno)", "不支持")),
    ({"infno": 1101}, ("交易编号(infno)", "字符串")),
    ({"inf_time": "2024/03/01 10:00"}, ("交易时间(inf_time)", "yyyy-MM-dd HH:mm:ss")),
    ({"opter_type": "9"}, ("经办人类别(opter_type)", "代码表")),
    ({"mdtrtarea_admvs": "990100"}, ("就医地医保区划(mdtrtarea_admvs)",)),
    ({"fixmedins_code": OTHER}, ("定点医药机构编号(fixmedins_code)",)),
    ({"sign_no": ""}, ("交易签到流水号(sign_no)", "不能为空")),
    ({"sign_no": "SN0000"}, ("交易签到流水号(sign_no)", "无效")),
    ({"input": []}, ("交易输入(input)",)),
])
def test_a_wrong_envelope_field_is_named(world, change, words):
    his, _, eng = world
    env = his.envelope("1101", {"data": {"mdtrt_cert_type": "02", "mdtrt_cert_no": EMP}})
    for k, v in change.items():
        if v is None:
            del env[k]
        else:
            env[k] = v
    refused(his, eng, lambda: his.post(env), *words)


def test_keys_and_sign_ins_are_the_terminals_own(world):
    his, http, eng = world
    env = his.envelope("1101", {"data": {"mdtrt_cert_type": "02", "mdtrt_cert_no": EMP}})
    for key in (None, "", "wrong-key"):
        headers = {"X-Terminal-Key": key} if key is not None else {}
        refused(his, eng, lambda h=headers: http.post("/fsi/api/rsfComIfsService/callService", content=json.dumps(env),
                                                      headers=h), "X-Terminal-Key")
    other = His(http, key=OTHER_KEY, fixmedins_code=OTHER, fixmedins_name="北京另一医院", mdtrtarea_admvs=BJ,
                clock=his.clock)
    other.sign_no = his.sign_no  # another terminal's sign-in
    refused(his, eng, lambda: other.call("1101", {"data": {"mdtrt_cert_type": "02", "mdtrt_cert_no": EMP}}),
            "sign_no", "无效")
    ops = His(http, key="ops-key", fixmedins_code=HOSP, fixmedins_name=HOSP_NAME, mdtrtarea_admvs=BJ, clock=his.clock)
    refused(his, eng, lambda: ops.call("9001", {"signIn": {"opter_no": "1", "ip": "1"}}), "fixmedins_code")


def test_visits_settlements_and_files_are_the_institutions_own(world):
    his, http, eng = world
    mdtrt_id = visit_with_fees(his)
    total = Decimal("25.00")
    data = {"psn_no": EMP, "mdtrt_cert_type": "03", "mdtrt_cert_no": EMP_CARD, "med_type": "11",
            "medfee_sumamt": total, "psn_setlway": "01", "mdtrt_id": mdtrt_id, "chrg_bchno": "B1",
            "acct_used_flag": "1", "insutype": "310"}
    pre = his.ok("2206", {"data": data}, insuplc_admdvs=BJ)["setlinfo"]
    data |= {f: pre[f] for f in ("fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt", "inscp_scp_amt")}
    setl = his.ok("2207", {"data": data}, insuplc_admdvs=BJ)["setlinfo"]
    up = his.ok("9101", {"fsUploadIn": {"in": base64.b64encode(detail_file([])).decode(), "filename": "a.zip",
                                        "fixmedins_code": HOSP}})

    other = His(http, key=OTHER_KEY, fixmedins_code=OTHER, fixmedins_name="北京另一医院", mdtrtarea_admvs=BJ,
                clock=his.clock)
    other.sign_in()
    refused(his, eng, lambda: other.call("2205", {"data": {"mdtrt_id": mdtrt_id, "chrg_bchno": "0000", "psn_no": EMP}},
                                         insuplc_admdvs=BJ), "就诊ID(mdtrt_id)", "不属于本机构")
    refused(his, eng, lambda: other.call("2207", {"data": data}, insuplc_admdvs=BJ), "mdtrt_id", "不属于本机构")
    refused(his, eng, lambda: other.call("2208", {"data": {"setl_id": setl["setl_id"], "mdtrt_id": mdtrt_id,
                                                           "psn_no": EMP}}, insuplc_admdvs=BJ),
            "结算ID(setl_id)", "不属于本机构")
    refused(his, eng, lambda: other.call("9102", {"fsDownloadIn": {"file_qury_no": up["file_qury_no"],
                                                                   "filename": "a.zip", "fixmedins_code": OTHER}}),
            "文件查询号(file_qury_no)")
    refused(his, eng, lambda: other.call("9101", {"fsUploadIn": {"in": "AAAA", "filename": "x",
                                                                 "fixmedins_code": HOSP}}), "fixmedins_code")
    # the institution's own visit, but settled: fee details cannot change under a settlement
    refused(his, eng, lambda: his.call("2205", {"data": {"mdtrt_id": mdtrt_id, "chrg_bchno": "0000", "psn_no": EMP}},
                                       insuplc_admdvs=BJ), "已结算", "2208")


def fee(visit: str, **change: Any) -> dict[str, Any]:
    line = fee_lines(visit, EMP, [("DEMO-FW-0002", "25.00", "1")], first=9)[0]
    line.update(change)
    return {"feedetail": [line]}


@pytest.mark.parametrize(("change", "words"), [
    ({"det_item_fee_sumamt": Decimal("25.005"), "pric": Decimal("25.005")},
     ("明细项目费用总额(det_item_fee_sumamt)", "两位小数")),
    ({"det_item_fee_sumamt": "25.001"}, ("明细项目费用总额(det_item_fee_sumamt)", "两位小数")),
    ({"det_item_fee_sumamt": "-25.00"}, ("明细项目费用总额(det_item_fee_sumamt)", "负数")),
    ({"det_item_fee_sumamt": "1e400"}, ("明细项目费用总额(det_item_fee_sumamt)",)),
    ({"det_item_fee_sumamt": True}, ("明细项目费用总额(det_item_fee_sumamt)", "数值")),
    ({"det_item_fee_sumamt": "26.00"}, ("单价×数量",)),
    ({"pric": "25.0000001"}, ("单价(pric)", "六位小数")),
    ({"cnt": "-1"}, ("数量(cnt)",)),
    ({"med_list_codg": "NOT-IN-LIST"}, ("医疗目录编码(med_list_codg)", "医保目录")),
    ({"feedetl_sn": None}, ("费用明细流水号(feedetl_sn)", "不能为空")),
    ({"fee_ocur_time": "2024-03-01"}, ("费用发生时间(fee_ocur_time)",)),
    ({"psn_no": "110105199901011111"}, ("人员编号(psn_no)",)),
    ({"mdtrt_id": "MDNOPE"}, ("就诊ID(mdtrt_id)",)),
])
def test_a_bad_fee_line_is_named_and_nothing_is_stored(world, change, words):
    his, _, eng = world
    mdtrt_id = register(his, EMP, EMP_CARD)
    msg = refused(his, eng, lambda: his.call("2204", fee(mdtrt_id, **change), insuplc_admdvs=BJ), *words)
    assert msg.startswith("feedetail第1条") or "psn_no" in msg or "mdtrt_id" in msg
    assert eng.uploads.fees(mdtrt_id) == []


@pytest.mark.parametrize(("change", "words"), [
    ({"insutype": "320"}, ("险种类型(insutype)", "代码表")),
    ({"insutype": "390"}, ("险种类型(insutype)", "参保险种")),
    ({"mdtrt_cert_type": "01"}, ("就诊凭证类型(mdtrt_cert_type)",)),
    ({"mdtrt_cert_no": "A99999999"}, ("就诊凭证编号(mdtrt_cert_no)",)),
    ({"begntime": "2024-02-30 10:00:00"}, ("开始时间(begntime)",)),
    ({"dept_name": None}, ("科室名称(dept_name)", "不能为空")),
    ({"ipt_otp_no": "X" * 31}, ("住院/门诊号(ipt_otp_no)", "超长")),
])
def test_a_bad_registration_is_named_and_registers_nothing(world, change, words):
    his, _, eng = world
    data = {"psn_no": EMP, "insutype": "310", "begntime": "2024-03-01 10:00:00", "mdtrt_cert_type": "03",
            "mdtrt_cert_no": EMP_CARD, "ipt_otp_no": "MZ1", "atddr_no": "D1", "dr_name": "李", "dept_code": "1",
            "dept_name": "内科", "caty": "A03"}
    for k, v in change.items():
        if v is None:
            del data[k]
        else:
            data[k] = v
    refused(his, eng, lambda: his.call("2201", {"data": data}, insuplc_admdvs=BJ), *words)


def test_the_insured_region_must_be_the_persons(world):
    his, _, eng = world
    data = {"psn_no": EMP, "insutype": "310", "begntime": "2024-03-01 10:00:00", "mdtrt_cert_type": "03",
            "mdtrt_cert_no": EMP_CARD, "ipt_otp_no": "MZ1", "atddr_no": "D1", "dr_name": "李", "dept_code": "1",
            "dept_name": "内科", "caty": "A03"}
    refused(his, eng, lambda: his.call("2201", {"data": data}), "参保地医保区划(insuplc_admdvs)", "不能为空")
    refused(his, eng, lambda: his.call("2201", {"data": data}, insuplc_admdvs="990100"),
            "参保地医保区划(insuplc_admdvs)", "110000")


def test_a_settlement_must_match_what_was_uploaded(world):
    his, _, eng = world
    mdtrt_id = visit_with_fees(his)
    data = {"psn_no": EMP, "mdtrt_cert_type": "03", "mdtrt_cert_no": EMP_CARD, "med_type": "11",
            "medfee_sumamt": "25.00", "psn_setlway": "01", "mdtrt_id": mdtrt_id, "chrg_bchno": "B1",
            "acct_used_flag": "1", "insutype": "310", "fulamt_ownpay_amt": "0.00", "overlmt_selfpay": "0.00",
            "preselfpay_amt": "0.00", "inscp_scp_amt": "25.00"}
    for change, words in [({"medfee_sumamt": "25.01"}, ("医疗费总额(medfee_sumamt)", "25.00")),
                          ({"inscp_scp_amt": "24.00"}, ("符合政策范围金额(inscp_scp_amt)", "预结算")),
                          ({"chrg_bchno": "B2"}, ("费用明细",)),
                          ({"med_type": "21"}, ("医疗类别(med_type)",)),
                          ({"psn_setlway": "02"}, ("个人结算方式(psn_setlway)", "代码表")),
                          ({"acct_used_flag": "2"}, ("个人账户使用标志(acct_used_flag)",))]:
        refused(his, eng, lambda c=change: his.call("2207", {"data": data | c}, insuplc_admdvs=BJ), *words)
    his.ok("2207", {"data": data}, insuplc_admdvs=BJ)


def test_oversized_and_unknown_files(world):
    his, _, eng = world
    refused(his, eng, lambda: his.post(b"{" + b" " * (13 * 1024 * 1024) + b"}"), "MB")
    refused(his, eng, lambda: his.call("9101", {"fsUploadIn": {"in": "***", "filename": "x.zip",
                                                               "fixmedins_code": HOSP}}), "文件数据(in)", "Base64")
    refused(his, eng, lambda: his.call("9102", {"fsDownloadIn": {"file_qury_no": "FNOPE", "filename": "x.zip",
                                                                 "fixmedins_code": HOSP}}), "文件查询号(file_qury_no)")
    up = his.ok("9101", {"fsUploadIn": {"in": base64.b64encode(b"not a zip").decode(), "filename": "x.zip",
                                        "fixmedins_code": HOSP}})
    detail = {"setl_optins": BJ, "file_qury_no": up["file_qury_no"], "stmt_begndate": "2024-03-01",
              "stmt_enddate": "2024-03-01", "medfee_sumamt": "0", "fund_pay_sumamt": "0", "cash_payamt": "0",
              "fixmedins_setl_cnt": 0}
    refused(his, eng, lambda: his.call("3202", {"data": detail}), "zip")
    bad = detail_file([("S1", "M1", EMP, "1.005", "0", "0", "0")])
    up = his.ok("9101", {"fsUploadIn": {"in": base64.b64encode(bad).decode(), "filename": "y.zip",
                                        "fixmedins_code": HOSP}})
    refused(his, eng, lambda: his.call("3202", {"data": detail | {"file_qury_no": up["file_qury_no"]}}),
            "对账明细文件第1行", "医疗费总额(medfee_sumamt)", "两位小数")
    wrong = detail_file([("S1", "M1", EMP, "1.00", "0", "0", "7")])
    up = his.ok("9101", {"fsUploadIn": {"in": base64.b64encode(wrong).decode(), "filename": "z.zip",
                                        "fixmedins_code": HOSP}})
    refused(his, eng, lambda: his.call("3202", {"data": detail | {"file_qury_no": up["file_qury_no"]}}),
            "退费结算标志(refd_setl_flag)", "代码表")


def test_a_card_must_be_its_holders_active_card(world):
    his, _, eng = world
    lookup = {"mdtrt_cert_type": "03", "mdtrt_cert_no": EMP_CARD, "card_sn": EMP_SN}
    assert his.ok("1101", {"data": lookup})["baseinfo"]["psn_no"] == EMP
    refused(his, eng, lambda: his.call("1101", {"data": lookup | {"card_sn": "F" * 32}}), "mdtrt_cert_no",
            "UNKNOWN_CARD")
    refused(his, eng, lambda: his.call("1101", {"data": lookup | {"card_sn": "not hex"}}), "卡识别码(card_sn)")
    refused(his, eng, lambda: his.call("1101", {"data": lookup | {"card_sn": None}}), "卡识别码(card_sn)")
    refused(his, eng, lambda: his.call("1101", {"data": lookup | {"mdtrt_cert_no": "Z99999999"}}), "查无此卡")
    eng.cards.report_lost(EMP_CARD, actor="hall", reason="holder called")
    refused(his, eng, lambda: his.call("1101", {"data": lookup}), "卡片已挂失")
    data = {"psn_no": EMP, "insutype": "310", "begntime": "2024-03-01 10:00:00", "mdtrt_cert_type": "03",
            "mdtrt_cert_no": EMP_CARD, "ipt_otp_no": "MZ1", "atddr_no": "D1", "dr_name": "李", "dept_code": "1",
            "dept_name": "内科", "caty": "A03"}
    refused(his, eng, lambda: his.call("2201", {"data": data}, insuplc_admdvs=BJ), "卡片已挂失")
    assert his.ok("2201", {"data": data | {"mdtrt_cert_type": "02", "mdtrt_cert_no": EMP}}, insuplc_admdvs=BJ)


def test_fee_lines_lost_with_a_crash_are_refused_at_settlement_and_uploaded_again(world):
    """2204 commits without waiting for the disk (settlement/schemes/uploads.py): a machine crash before the
    next durable commit loses fee lines the HIS was told were uploaded. The HIS's 2207 carries the total of
    every line it uploaded (medfee_sumamt), so a settlement over fewer lines is refused, naming the total and
    asking for the upload again; nothing is settled. The HIS uploads every line again (those that survived
    change nothing) and the same 2207 then settles the whole bill."""
    his, _, eng = world
    mdtrt_id = register(his, EMP, EMP_CARD)
    lines = fee_lines(mdtrt_id, EMP, [("DEMO-FW-0002", "25.00", "1"), ("DEMO-CL-0001", "8.35", "3"),
                                      ("DEMO-XY-0002", "12.33", "2")])
    his.ok("2204", {"feedetail": lines[:1]}, insuplc_admdvs=BJ)
    his.ok("2204", {"feedetail": lines[1:]}, insuplc_admdvs=BJ)
    total = sum(Decimal(ln["det_item_fee_sumamt"]) for ln in lines)
    data = {"psn_no": EMP, "mdtrt_cert_type": "03", "mdtrt_cert_no": EMP_CARD, "med_type": "11",
            "medfee_sumamt": total, "psn_setlway": "01", "mdtrt_id": mdtrt_id, "chrg_bchno": "B1",
            "acct_used_flag": "1", "insutype": "310"}
    pre = his.ok("2206", {"data": data}, insuplc_admdvs=BJ)["setlinfo"]
    data |= {f: pre[f] for f in ("fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt", "inscp_scp_amt")}
    with eng.store.transaction() as tx:  # what the crash leaves: the second upload's lines are gone
        tx.execute("DELETE FROM med_fee_details WHERE mdtrt_id = ? AND feedetl_sn <> ?",
                   (mdtrt_id, lines[0]["feedetl_sn"]))
    settle = his.envelope("2207", {"data": data}, insuplc_admdvs=BJ)
    refused(his, eng, lambda: his.post(settle), "医疗费总额(medfee_sumamt)", "25.00", "重新上传")
    with eng.store.transaction() as tx:  # and a crash that lost every line
        tx.execute("DELETE FROM med_fee_details WHERE mdtrt_id = ?", (mdtrt_id,))
    refused(his, eng, lambda: his.post(settle), "费用明细", "2204")
    his.ok("2204", {"feedetail": lines[:1]}, insuplc_admdvs=BJ)
    his.ok("2204", {"feedetail": lines}, insuplc_admdvs=BJ)  # every line again: the first is already there
    reply = json.loads(his.post(settle).text, parse_float=Decimal)
    assert reply["infcode"] == 0, reply["err_msg"]
    assert reply["output"]["setlinfo"]["medfee_sumamt"] == total
    eng.ledger.check_invariants()
