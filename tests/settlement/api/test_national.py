"""Conformance of the national platform interface (settlement/api/national.py), from the public descriptions:
a HIS-style client (testing/his.py: plain dicts, the specification's field names, yuan) runs a counter day
through POST /fsi/api/rsfComIfsService/callService, and every amount is checked to the fen against the
native API's breakdown for the same visit (the oracle), and against the identities a HIS relies on.

Where the field lists and behaviour come from: settlement/api/national_codes.toml (public HIS integration
code retelling the platform's specification: envelope, 9001 ... 9102 inputs and outputs, code tables; the
3202 detail and result files).
"""

from __future__ import annotations

import warnings
from decimal import Decimal
from typing import Any

import pytest

from settlement.api.auth import TerminalKey, hash_key
from settlement.api.service import create_app
from testing.his import His, detail_file, fen, result_rows, yuan
from tests.settlement.flows_helpers import Clock, make_engine

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

HOSP, HOSP_NAME, BJ = "H11010500001", "北京示例医院", "110000"
EMP, EMP_CARD, EMP_SN = "110105198001011234", "A00000001", "11000086D156000005A0000001000001"
RES, RES_CARD = "990100195505050027", "B00000002"
KEY, OTHER_KEY = "his-key-1", "his-key-2"
MONEY = ("medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt", "inscp_scp_amt", "act_pay_dedc",
         "hifp_pay", "hifob_pay", "hifmi_pay", "maf_pay", "fund_pay_sumamt", "psn_part_amt", "acct_pay",
         "psn_cash_pay", "balc")
UNMODELLED = ("cvlserv_pay", "hifes_pay", "oth_pay", "hosp_part_amt", "acct_mulaid_pay")
# (med_list_codg, unit price, count): a fully covered consultation above its price ceiling, class-B drugs,
# a test, a class-C item; prices with odd fen so that rounding is exercised
OUTPATIENT = [("DEMO-FW-0001", "30.00", "1"), ("DEMO-XY-0002", "12.33", "3"), ("DEMO-FW-0003", "356.50", "2"),
              ("DEMO-FW-0002", "25.00", "1"), ("DEMO-ZCY-0001", "41.17", "7"), ("DEMO-ZF-0001", "100.00", "1"),
              ("DEMO-CL-0001", "8.35", "3"), ("DEMO-XY-0001", "1.01", "1701")]
INPATIENT = [("DEMO-FW-0004", "60.00", "12"), ("DEMO-FW-0005", "35.50", "24"), ("DEMO-FW-0003", "300.00", "4"),
             ("DEMO-XY-0002", "12.33", "90"), ("DEMO-CL-0001", "8.35", "60"), ("DEMO-ZY-0001", "2.75", "300"),
             ("DEMO-XY-0001", "1.01", "50000")]


@pytest.fixture
def world(store):
    clock = Clock()
    eng = make_engine(store, clock)
    eng.registry.add_institution(HOSP, HOSP_NAME, BJ, "3")
    eng.registry.add_institution("H11010500002", "北京另一医院", BJ, "2")
    eng.registry.add_person(EMP, "张伟", BJ, "employee", card_no=EMP_CARD)
    eng.registry.add_person(RES, "王芳", "990100", "resident", card_no=RES_CARD, assistance_class="dibao")
    eng.registry.deposit("seed:emp", EMP, 500_00)
    eng.cards.issue(EMP, EMP_CARD, EMP_SN, actor="issuer", reason="first card")
    app = create_app(eng, terminals=[TerminalKey("T01", hash_key(KEY), institution=HOSP),
                                     TerminalKey("T02", hash_key(OTHER_KEY), institution="H11010500002")])
    with TestClient(app) as http:
        his = His(http, key=KEY, fixmedins_code=HOSP, fixmedins_name=HOSP_NAME, mdtrtarea_admvs=BJ, clock=clock)
        his.sign_in()
        yield his, http, eng, clock


def native(http: Any, method: str, path: str, card: str = EMP_CARD, **kw: Any) -> Any:
    """A native call by the hospital's terminal, with the patient's card (`card`) as proof."""
    r = http.request(method, path, headers={"X-Terminal-Key": KEY, "X-Card-No": card}, **kw)
    assert r.status_code == 200, r.text
    return r.json()


def fee_lines(mdtrt_id: str, psn_no: str, items: list[tuple[str, str, str]], *, batch: str | None = "B1",
              first: int = 1) -> list[dict[str, Any]]:
    out = []
    for i, (code, pric, cnt) in enumerate(items, first):
        amount = (Decimal(pric) * Decimal(cnt)).quantize(Decimal("0.01"))
        line = {"feedetl_sn": f"F{i:04d}", "mdtrt_id": mdtrt_id, "psn_no": psn_no,
                "fee_ocur_time": "2024-03-01 10:05:00", "med_list_codg": code, "medins_list_codg": f"HIS-{code}",
                "det_item_fee_sumamt": amount, "cnt": Decimal(cnt), "pric": Decimal(pric), "bilg_dept_codg": "0301",
                "bilg_dept_name": "内科", "bilg_dr_codg": "D0001", "bilg_dr_name": "李医生"}
        line |= {"chrg_bchno": batch} if batch else {"med_type": "21"}
        out.append(line)
    return out


def register(his: His, psn_no: str, card: str) -> str:
    out = his.ok("2201", {"data": {
        "psn_no": psn_no, "insutype": "310", "begntime": "2024-03-01 10:00:00", "mdtrt_cert_type": "03",
        "mdtrt_cert_no": card, "ipt_otp_no": "MZ20240301001", "atddr_no": "D0001", "dr_name": "李医生",
        "dept_code": "0301", "dept_name": "内科", "caty": "A03"}}, insuplc_admdvs=BJ)
    return str(out["data"]["mdtrt_id"])


def settle_input(mdtrt_id: str, psn_no: str, card: str, total: Decimal, **more: Any) -> dict[str, Any]:
    return {"psn_no": psn_no, "mdtrt_cert_type": "03", "mdtrt_cert_no": card, "med_type": "11",
            "medfee_sumamt": total, "psn_setlway": "01", "mdtrt_id": mdtrt_id, "chrg_bchno": "B1",
            "acct_used_flag": "1", "insutype": "310", **more}


def check_setlinfo(info: dict[str, Any], detail: list[dict[str, Any]], breakdown: dict[str, int]) -> None:
    """Every amount of a national settlement answer against the native breakdown, and the identities."""
    for f in MONEY:
        assert fen(info[f]) == breakdown[f], f
    for f in UNMODELLED:
        assert fen(info[f]) == 0, f
    got = {f: fen(info[f]) for f in MONEY}
    assert got["medfee_sumamt"] == got["fund_pay_sumamt"] + got["psn_part_amt"]
    assert got["psn_part_amt"] == got["acct_pay"] + got["psn_cash_pay"]
    assert got["fund_pay_sumamt"] == sum(got[f] for f in ("hifp_pay", "hifob_pay", "hifmi_pay", "maf_pay"))
    assert got["medfee_sumamt"] == sum(got[f] for f in ("fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt",
                                                         "inscp_scp_amt"))
    assert sum(fen(d["fund_payamt"]) for d in detail) == got["fund_pay_sumamt"] + got["acct_pay"]
    assert all(fen(d["fund_payamt"]) for d in detail) and len({d["fund_pay_type"] for d in detail}) == len(detail)


def native_lines(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The native API's fee lines for what 2204/2301 answered (class and amounts from the platform)."""
    return [{"feedetl_sn": r["feedetl_sn"], "chrgitm_lv": r["chrgitm_lv"],
             "det_item_fee_sumamt": fen(r["det_item_fee_sumamt"]), "overlmt_amt": fen(r["overlmt_amt"])}
            for r in results]


def test_an_outpatient_visit_from_card_to_cancellation_matches_the_native_api(world):
    his, http, eng, _ = world
    person = his.ok("1101", {"data": {"mdtrt_cert_type": "03", "mdtrt_cert_no": EMP_CARD, "card_sn": EMP_SN,
                                      "begntime": "", "psn_cert_type": "", "certno": "", "psn_name": ""}})
    base, insu = person["baseinfo"], person["insuinfo"][0]
    assert (base["psn_no"], base["certno"], base["psn_name"], base["gend"], base["brdy"]) == (
        EMP, EMP, "张伟", "1", "1980-01-01")
    assert (insu["insutype"], insu["psn_type"], insu["insuplc_admdvs"]) == ("310", "1101", BJ)
    assert fen(insu["balc"]) == 500_00
    assert person["idetinfo"] == []

    mdtrt_id = register(his, base["psn_no"], EMP_CARD)
    assert native(http, "GET", f"/v1/medical/visits/{mdtrt_id}")["person_id"] == EMP  # one visit, two dialects
    his.ok("2203", {"mdtrtinfo": {"mdtrt_id": mdtrt_id, "psn_no": EMP, "med_type": "11",
                                  "begntime": "2024-03-01 10:00:00", "main_cond_dscr": "咳嗽三天"},
                    "diseinfo": [{"diag_type": "1", "diag_srt_no": 1, "diag_code": "J06.900",
                                  "diag_name": "急性上呼吸道感染", "diag_dept": "内科", "dise_dor_no": "D0001",
                                  "dise_dor_name": "李医生", "diag_time": "2024-03-01 10:03:00",
                                  "vali_flag": "1"}]}, insuplc_admdvs=BJ)

    lines = fee_lines(mdtrt_id, EMP, OUTPATIENT)
    results = his.ok("2204", {"feedetail": lines}, insuplc_admdvs=BJ)["result"]
    assert [r["feedetl_sn"] for r in results] == [ln["feedetl_sn"] for ln in lines]
    for ln, r in zip(lines, results, strict=True):
        assert fen(r["det_item_fee_sumamt"]) == fen(ln["det_item_fee_sumamt"])
        parts = [fen(r[f]) for f in ("fulamt_ownpay_amt", "overlmt_amt", "preselfpay_amt", "inscp_scp_amt")]
        assert sum(parts) == fen(ln["det_item_fee_sumamt"]) and min(parts) >= 0
    by_sn = {r["feedetl_sn"]: r for r in results}
    # 30.00 over a 25.00 ceiling
    assert (by_sn["F0001"]["chrgitm_lv"], fen(by_sn["F0001"]["overlmt_amt"])) == ("01", 5_00)
    assert (by_sn["F0006"]["chrgitm_lv"], by_sn["F0006"]["selfpay_prop"]) == ("03", 1)
    assert by_sn["F0002"]["selfpay_prop"] == Decimal("0.1")  # Beijing's class-B share paid first

    total = sum(Decimal(ln["det_item_fee_sumamt"]) for ln in lines)
    pre = his.ok("2206", {"data": settle_input(mdtrt_id, EMP, EMP_CARD, total)}, insuplc_admdvs=BJ)
    oracle = native(http, "POST", "/v1/medical/presettle",
                    json={"mdtrt_id": mdtrt_id, "lines": native_lines(results), "use_account": True})["breakdown"]
    check_setlinfo(pre["setlinfo"], pre["setldetail"], oracle)
    assert fen(pre["setlinfo"]["hifob_pay"]) > 0 and fen(pre["setlinfo"]["psn_cash_pay"]) > 0
    for f, lf in (("fulamt_ownpay_amt", "fulamt_ownpay_amt"), ("overlmt_selfpay", "overlmt_amt"),
                  ("preselfpay_amt", "preselfpay_amt"), ("inscp_scp_amt", "inscp_scp_amt")):
        assert fen(pre["setlinfo"][f]) == sum(fen(r[lf]) for r in results), f  # the lines add up to the bill

    categories = {f: pre["setlinfo"][f] for f in ("fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt",
                                                    "inscp_scp_amt")}
    msgid = his.msgid()
    settled = his.ok("2207", {"data": settle_input(mdtrt_id, EMP, EMP_CARD, total, **categories)},
                     insuplc_admdvs=BJ, msgid=msgid)
    info = settled["setlinfo"]
    setl_id = info["setl_id"]
    posting = native(http, "GET", f"/v1/postings/{setl_id}")
    assert posting["kind"] == "medical.settle"
    check_setlinfo(info, settled["setldetail"], posting["payload"]["result"]["breakdown"])
    assert {k: info[k] for k in MONEY} == {k: pre["setlinfo"][k] for k in MONEY}
    assert (info["medins_setl_id"], info["med_type"], info["clr_type"], info["insutype"], info["psn_type"]) == (
        msgid, "11", "11", "310", "1101")
    assert native(http, "GET", f"/v1/persons/{EMP}/balances")["personal_account"] == fen(info["balc"]) == 0
    again = his.ok("2207", {"data": settle_input(mdtrt_id, EMP, EMP_CARD, total, **categories)},
                   insuplc_admdvs=BJ, msgid=msgid)
    assert again == settled  # the HIS repeated the message after a timeout: the first answer, nothing posted twice

    cancel = his.ok("2208", {"data": {"setl_id": setl_id, "mdtrt_id": mdtrt_id, "psn_no": EMP}}, insuplc_admdvs=BJ)
    back = cancel["setlinfo"]
    for f in MONEY:
        if f != "balc":
            assert fen(back[f]) == -fen(info[f]), f
    assert fen(back["balc"]) == 500_00 and back["setl_id"] != setl_id
    assert native(http, "GET", f"/v1/medical/settlements/{setl_id}")["status"] == "voided"
    assert native(http, "GET", f"/v1/medical/visits/{mdtrt_id}")["status"] == "registered"
    eng.ledger.check_invariants()


def test_an_inpatient_stay_admission_to_settlement_matches_the_native_api(world):
    his, http, eng, clock = world
    BJ3 = {"insuplc_admdvs": "990100"}  # a resident of Example City treated in Beijing (cross-region)
    out = his.ok("2401", {"mdtrtinfo": {
        "psn_no": RES, "insutype": "390", "begntime": "2024-03-01 10:00:00", "mdtrt_cert_type": "02",
        "mdtrt_cert_no": RES, "med_type": "21", "ipt_no": "ZY0001", "atddr_no": "D0002", "chfpdr_name": "赵医生",
        "adm_diag_dscr": "肺炎", "adm_dept_codg": "0302", "adm_dept_name": "呼吸科", "adm_bed": "12",
        "dscg_maindiag_code": "J18.900", "dscg_maindiag_name": "肺炎"}}, **BJ3)
    mdtrt_id = out["result"]["mdtrt_id"]
    lines = fee_lines(mdtrt_id, RES, INPATIENT, batch=None)
    results = his.ok("2301", {"feedetail": lines[:4]}, **BJ3)["result"]
    results += his.ok("2301", {"feedetail": lines[4:]}, **BJ3)["result"]
    his.ok("2302", {"data": [{"feedetl_sn": "F0005", "mdtrt_id": mdtrt_id, "psn_no": RES}]}, **BJ3)
    results = [r for r in results if r["feedetl_sn"] != "F0005"]
    total = sum(Decimal(ln["det_item_fee_sumamt"]) for ln in lines if ln["feedetl_sn"] != "F0005")
    data = {"psn_no": RES, "mdtrt_cert_type": "02", "mdtrt_cert_no": RES, "medfee_sumamt": total, "psn_setlway": "01",
            "mdtrt_id": mdtrt_id, "insutype": "390", "acct_used_flag": "0", "mid_setl_flag": "0"}
    pre = his.ok("2303", {"data": data}, **BJ3)
    oracle = native(http, "POST", "/v1/medical/presettle",
                    json={"mdtrt_id": mdtrt_id, "lines": native_lines(results), "use_account": False})["breakdown"]
    check_setlinfo(pre["setlinfo"], pre["setldetail"], oracle)
    assert all(fen(pre["setlinfo"][f]) > 0 for f in ("hifp_pay", "hifmi_pay", "maf_pay"))
    assert {d["fund_pay_type"] for d in pre["setldetail"]} == {"390100", "390200", "610100"}

    refused = his.call("2304", {"data": data}, **BJ3)
    assert refused["infcode"] == -1 and "2402" in refused["err_msg"]  # settle after discharge
    clock.advance(days=5)
    his.ok("2402", {"dscginfo": {"mdtrt_id": mdtrt_id, "psn_no": RES, "insutype": "390",
                                 "endtime": "2024-03-06 09:00:00", "dscg_dept_codg": "0302",
                                 "dscg_dept_name": "呼吸科", "dscg_way": "1"}}, **BJ3)
    settled = his.ok("2304", {"data": data}, **BJ3)
    posting = native(http, "GET", f"/v1/postings/{settled['setlinfo']['setl_id']}")
    check_setlinfo(settled["setlinfo"], settled["setldetail"], posting["payload"]["result"]["breakdown"])
    assert (settled["setlinfo"]["med_type"], settled["setlinfo"]["clr_type"]) == ("21", "21")
    assert native(http, "GET", f"/v1/persons/{RES}/accumulators?year=2024", card=RES_CARD)["admissions"] == 1
    refused = his.call("2405", {"data": {"mdtrt_id": mdtrt_id, "psn_no": RES}}, **BJ3)
    assert refused["infcode"] == -1 and "2305" in refused["err_msg"]
    eng.ledger.check_invariants()


def test_an_admission_without_fees_is_cancelled_and_gone(world):
    his, http, eng, _ = world
    adm = {"psn_no": EMP, "insutype": "310", "begntime": "2024-03-01 10:00:00", "mdtrt_cert_type": "03",
           "mdtrt_cert_no": EMP_CARD, "med_type": "21", "ipt_no": "ZY0002", "atddr_no": "D0002",
           "chfpdr_name": "赵医生", "adm_diag_dscr": "观察", "adm_dept_codg": "0302", "adm_dept_name": "呼吸科",
           "adm_bed": "3", "dscg_maindiag_code": "R69", "dscg_maindiag_name": "观察"}
    msgid = his.msgid()
    mdtrt_id = his.ok("2401", {"mdtrtinfo": adm}, insuplc_admdvs=BJ, msgid=msgid)["result"]["mdtrt_id"]
    his.ok("2404", {"data": {"mdtrt_id": mdtrt_id, "psn_no": EMP}}, insuplc_admdvs=BJ)
    r = http.get(f"/v1/medical/visits/{mdtrt_id}", headers={"X-Terminal-Key": KEY})
    assert r.status_code == 404
    late = his.call("2401", {"mdtrtinfo": adm}, insuplc_admdvs=BJ, msgid=msgid)  # a stale repeat
    assert late["infcode"] == -1 and "ALREADY_REVERSED" in late["err_msg"]
    assert http.get(f"/v1/medical/visits/{mdtrt_id}", headers={"X-Terminal-Key": KEY}).status_code == 404


def _settle_outpatient(his: His, psn_no: str = EMP, card: str = EMP_CARD) -> tuple[str, dict[str, Any]]:
    mdtrt_id = register(his, psn_no, card)
    lines = fee_lines(mdtrt_id, psn_no, OUTPATIENT[:3])
    his.ok("2204", {"feedetail": lines}, insuplc_admdvs=BJ)
    total = sum(Decimal(ln["det_item_fee_sumamt"]) for ln in lines)
    pre = his.ok("2206", {"data": settle_input(mdtrt_id, psn_no, card, total)}, insuplc_admdvs=BJ)["setlinfo"]
    categories = {f: pre[f] for f in ("fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt", "inscp_scp_amt")}
    out = his.ok("2207", {"data": settle_input(mdtrt_id, psn_no, card, total, **categories)}, insuplc_admdvs=BJ)
    return mdtrt_id, out["setlinfo"]


def test_settled_natively_cancelled_nationally_and_the_reverse(world):
    his, http, eng, _ = world
    visit = native(http, "POST", "/v1/medical/visits", json={"terminal_serial": "N1", "person_id": EMP,
                                                             "institution": HOSP, "care": "outpatient"})
    lines = [{"chrgitm_lv": "01", "det_item_fee_sumamt": 2_500_00}, {"chrgitm_lv": "02", "det_item_fee_sumamt": 99_99}]
    s = native(http, "POST", "/v1/medical/settle", json={"terminal_serial": "N2", "mdtrt_id": visit["mdtrt_id"],
                                                          "lines": lines})
    back = his.ok("2208", {"data": {"setl_id": s["setl_id"], "mdtrt_id": visit["mdtrt_id"], "psn_no": EMP}},
                  insuplc_admdvs=BJ)["setlinfo"]
    assert fen(back["medfee_sumamt"]) == -s["breakdown"]["medfee_sumamt"]
    assert fen(back["hifob_pay"]) == -s["breakdown"]["hifob_pay"] and s["breakdown"]["hifob_pay"] > 0
    assert native(http, "GET", f"/v1/medical/settlements/{s['setl_id']}")["status"] == "voided"

    mdtrt_id, info = _settle_outpatient(his)
    v = native(http, "POST", "/v1/medical/void", json={"terminal_serial": "N3", "setl_id": info["setl_id"]})
    assert v["status"] == "voided" and v["reversed"]["medfee_sumamt"] == fen(info["medfee_sumamt"])
    again = his.call("2208", {"data": {"setl_id": info["setl_id"], "mdtrt_id": mdtrt_id, "psn_no": EMP}},
                     insuplc_admdvs=BJ)
    assert again["infcode"] == -1 and "已撤销" in again["err_msg"]
    assert native(http, "GET", f"/v1/persons/{EMP}/balances")["personal_account"] == 500_00
    eng.ledger.check_invariants()


def test_the_day_reconciles_in_totals_and_in_detail(world):
    his, http, eng, _ = world
    _, kept = _settle_outpatient(his)
    mdtrt_id, cancelled = _settle_outpatient(his)
    undo = his.ok("2208", {"data": {"setl_id": cancelled["setl_id"], "mdtrt_id": mdtrt_id, "psn_no": EMP}},
                  insuplc_admdvs=BJ)["setlinfo"]
    visit = native(http, "POST", "/v1/medical/visits", json={"terminal_serial": "N1", "person_id": EMP,
                                                             "institution": HOSP, "care": "outpatient"})
    lines = [{"chrgitm_lv": "01", "det_item_fee_sumamt": 300_00}]
    s = native(http, "POST", "/v1/medical/settle", json={"terminal_serial": "N2", "mdtrt_id": visit["mdtrt_id"],
                                                          "lines": lines})
    natively = {"setl_id": s["setl_id"], "mdtrt_id": visit["mdtrt_id"], **{
        f: yuan(s["breakdown"][f]) for f in ("medfee_sumamt", "fund_pay_sumamt", "acct_pay")}}
    # the HIS's book of the day: two settlements on this interface, one cancelled, and the one made natively
    rows = [(r["setl_id"], r["mdtrt_id"], EMP, r["medfee_sumamt"], r["fund_pay_sumamt"], r["acct_pay"], flag)
            for r, flag in ((kept, "0"), (cancelled, "0"), (undo, "1"), (natively, "0"))]
    medfee = sum(fen(r[3]) for r in rows)
    fund = sum(fen(r[4]) for r in rows)
    acct = sum(fen(r[5]) for r in rows)
    totals = {"insutype": "310", "clr_type": "11", "setl_optins": BJ, "stmt_begndate": "2024-03-01",
              "stmt_enddate": "2024-03-01", "medfee_sumamt": yuan(medfee), "fund_pay_sumamt": yuan(fund),
              "acct_pay": yuan(acct), "fixmedins_setl_cnt": 2, "refd_setl_flag": "0"}
    assert his.ok("3201", {"data": totals})["stmtinfo"]["stmt_rslt"] == "0"
    off = his.ok("3201", {"data": totals | {"medfee_sumamt": yuan(medfee + 1)}})["stmtinfo"]
    assert off["stmt_rslt"] == "1" and "医疗费总额" in off["stmt_rslt_dscr"]

    up = his.ok("9101", {"fsUploadIn": {"in": _b64(detail_file(rows)), "filename": "dz20240301.zip",
                                        "fixmedins_code": HOSP}})
    detail = {"setl_optins": BJ, "file_qury_no": up["file_qury_no"], "stmt_begndate": "2024-03-01",
              "stmt_enddate": "2024-03-01", "medfee_sumamt": yuan(medfee), "fund_pay_sumamt": yuan(fund),
              "cash_payamt": yuan(medfee - fund - acct), "fixmedins_setl_cnt": 2}
    info = his.ok("3202", {"data": detail})["fileinfo"]
    result = result_rows(his.download(info["file_qury_no"], info["filename"]))
    assert len(result) == 4 and {r[4] for r in result} == {"0"}, result  # stmt_rslt 0: every line agrees
    assert {r[2] for r in result} == {kept["setl_id"], cancelled["setl_id"], s["setl_id"]}
    assert {r[3] for r in result if r[2] == kept["setl_id"]} == {kept["medins_setl_id"]}

    # the centre has a settlement the HIS forgot, and the HIS claims one the centre never made
    rows2 = [*rows[1:], ("T01:202403011000009999", "MDX", EMP, "10.00", "0.00", "10.00", "0")]
    up = his.ok("9101", {"fsUploadIn": {"in": _b64(detail_file(rows2)), "filename": "dz2.zip", "fixmedins_code": HOSP}})
    m2 = sum(fen(r[3]) for r in rows2)
    f2 = sum(fen(r[4]) for r in rows2)
    a2 = sum(fen(r[5]) for r in rows2)
    detail |= {"file_qury_no": up["file_qury_no"], "medfee_sumamt": yuan(m2), "fund_pay_sumamt": yuan(f2),
               "cash_payamt": yuan(m2 - f2 - a2)}
    info = his.ok("3202", {"data": detail})["fileinfo"]
    result = {r[2]: r for r in result_rows(his.download(info["file_qury_no"], info["filename"]))}
    assert result[kept["setl_id"]][4:7] == ["1", "0", "中心有，医药机构无"]
    assert result["T01:202403011000009999"][4:7] == ["1", "0", "医药机构有，中心无"]
    assert result[s["setl_id"]][4] == "0"


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def test_sign_out_ends_the_sign_in(world):
    his, http, eng, _ = world
    sign_no = his.sign_no
    out = his.ok("9002", {"signOut": {"sign_no": sign_no, "opter_no": his.opter}})
    assert out["signoutoutb"]["sign_time"] == "2024-03-01 10:00:00"
    r = his.call("1101", {"data": {"mdtrt_cert_type": "02", "mdtrt_cert_no": EMP}})
    assert r["infcode"] == -1 and "sign_no" in r["err_msg"] and "签退" in r["err_msg"]
    assert his.sign_in() != sign_no
    assert his.ok("1101", {"data": {"mdtrt_cert_type": "02", "mdtrt_cert_no": EMP}})["baseinfo"]["psn_no"] == EMP


def test_a_cancellation_that_overtakes_its_lost_settlement(world):
    """The HIS never got the 2207 answer: it cancels by the setl_id the platform would have given (terminal id and
    the msgid's serial); the late settlement is then refused and nothing stays posted."""
    his, http, eng, _ = world
    mdtrt_id = register(his, EMP, EMP_CARD)
    lines = fee_lines(mdtrt_id, EMP, OUTPATIENT[:2])
    his.ok("2204", {"feedetail": lines}, insuplc_admdvs=BJ)
    total = sum(Decimal(ln["det_item_fee_sumamt"]) for ln in lines)
    pre = his.ok("2206", {"data": settle_input(mdtrt_id, EMP, EMP_CARD, total)}, insuplc_admdvs=BJ)["setlinfo"]
    lost = his.msgid()
    setl_id = f"T01:{lost[len(HOSP):]}"
    back = his.ok("2208", {"data": {"setl_id": setl_id, "mdtrt_id": mdtrt_id, "psn_no": EMP}}, insuplc_admdvs=BJ)
    assert fen(back["setlinfo"]["medfee_sumamt"]) == 0 and back["setldetail"] == []
    categories = {f: pre[f] for f in ("fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt", "inscp_scp_amt")}
    late = his.call("2207", {"data": settle_input(mdtrt_id, EMP, EMP_CARD, total, **categories)}, insuplc_admdvs=BJ,
                    msgid=lost)
    assert late["infcode"] == -1 and "ALREADY_REVERSED" in late["err_msg"]
    assert native(http, "GET", f"/v1/medical/visits/{mdtrt_id}")["status"] == "registered"
    assert native(http, "GET", f"/v1/medical/settlements/{setl_id}")["status"] == "void_before_arrival"
    stranger = his.call("2208", {"data": {"setl_id": "T02:202403011000000001", "mdtrt_id": mdtrt_id, "psn_no": EMP}},
                        insuplc_admdvs=BJ)
    assert stranger["infcode"] == -1 and "setl_id" in stranger["err_msg"]  # another terminal's id: not ours to void
