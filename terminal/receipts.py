"""Receipts and explanations for people: labelled amounts in yuan, names, local time, titles by kind.

The API keeps amounts in fen; these functions add what a clerk and a card holder read: the transaction's
title (a pension payout is not a settlement), the holder's and the institution's names, the time in
Asia/Shanghai, each amount with its label, and why a transaction failed or was reversed. `receipt_text()`
lays a receipt out for a thermal printer (32 columns on 58 mm paper, 48 on 80 mm), in Chinese.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from typing import Any

from settlement.wire import yuan
from terminal.clock import CHINA
from terminal.i18n import Lang, label, message
from terminal.journal import FAILED, Entry

#: amounts shown on a settlement's receipt, in order; zero amounts are left out except the total and cash
SETTLE_FIELDS = ("medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt", "inscp_scp_amt",
                 "act_pay_dedc", "hifp_pay", "hifob_pay", "hifmi_pay", "maf_pay", "fund_pay_sumamt",
                 "psn_part_amt", "acct_pay", "psn_cash_pay", "balc")
ALWAYS = frozenset({"medfee_sumamt", "psn_cash_pay"})
REFUND_FIELDS = ("medfee_sumamt", "hifp_pay", "hifob_pay", "hifmi_pay", "maf_pay", "fund_pay_sumamt", "acct_pay",
                 "psn_cash_pay")


def local_time(iso_utc: str) -> str:
    """An ISO time (UTC, as the journal keeps it) in China Standard Time, to the second."""
    t = dt.datetime.fromisoformat(iso_utc)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone(CHINA).isoformat(timespec="seconds")


def amount_lines(parts: dict[str, Any], fields: tuple[str, ...], lang: Lang,
                 names: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The non-zero amounts of `fields` (the total and cash always), labelled; `names` relabels a field."""
    out = []
    for f in fields:
        v = parts.get(f)
        if isinstance(v, int) and not isinstance(v, bool) and (v or f in ALWAYS):
            out.append({"field": f, "label": label((names or {}).get(f, f), lang), "amount": v, "yuan": yuan(v)})
    return out


#: what the total of a refund or a reversal is called on its receipt
TOTAL_NAMES = {"refund": {"medfee_sumamt": "refund_total"}, "void": {"medfee_sumamt": "void_total"}}


def _parts(entry: Entry) -> tuple[dict[str, Any], tuple[str, ...]]:
    response = entry.response or {}
    if entry.kind == "settle":
        return response.get("breakdown") or {}, SETTLE_FIELDS
    if entry.kind == "refund":
        return response.get("refund") or {}, REFUND_FIELDS
    if entry.kind == "void":
        return response.get("reversed") or {}, REFUND_FIELDS
    if entry.kind == "pension_collect":
        parts = {"pension_amount": entry.amount}
        if "balance_after" in response:
            parts["balance_after"] = response["balance_after"]
        return parts, ("pension_amount", "balance_after")
    return {}, ()


def receipt(entry: Entry, *, terminal_id: str, terminal_number: str, institution: str, institution_name: str,
            lang: Lang) -> dict[str, Any]:
    """The receipt of one journal entry (the API's `Receipt`)."""
    parts, fields = _parts(entry)
    error = None
    if entry.state == FAILED and entry.error:
        code = str(entry.error.get("code", "ERROR"))
        details = entry.error.get("details") or {}
        error = {"code": code, "message": message(code, lang, details, str(entry.error.get("message", code)))}
    reason = label(f"reason.{entry.reason}", lang, entry.reason) if entry.reason else None
    reason = reason or (error["message"] if error else None)
    return {
        "key": entry.key,
        "kind": entry.kind,
        "title": label(f"title.{entry.kind}", lang),
        "kind_label": label(entry.kind, lang),
        "state": entry.state,
        "state_label": label(entry.state, lang),
        "terminal_id": terminal_id,
        "terminal_number": terminal_number,
        "institution": institution,
        "institution_name": institution_name or institution,
        "business_day": entry.business_day,
        "at": local_time(entry.updated_at),
        "person_id": entry.person_id,
        "name": entry.holder_name,
        "card_no": entry.card_no,
        "amount": entry.amount,
        "amount_yuan": yuan(entry.amount),
        "breakdown": parts,
        "lines": amount_lines(parts, fields, lang, TOTAL_NAMES.get(entry.kind)),
        "response": entry.response or {},
        "card_record": entry.card_record,
        "reason": reason,
        "error": error,
        "operator": entry.operator,
        "original_key": entry.original_key,
    }


def explain(breakdown: dict[str, Any], lang: Lang) -> list[str]:
    """The split of a bill in sentences: what the patient pays and why, what each fund pays."""
    b = {k: v for k, v in breakdown.items() if isinstance(v, int)}
    y = {k: yuan(v) for k, v in b.items()}
    zh = lang == "zh"
    out = [f"本次医疗费总额 {y['medfee_sumamt']} 元。" if zh else f"The bill is {y['medfee_sumamt']} yuan."]
    for f, zh_text, en_text in (
        ("fulamt_ownpay_amt", "全自费项目 {} 元，由个人支付。", "Items not covered: {} yuan, paid by the patient."),
        ("overlmt_selfpay", "超出限价部分 {} 元，由个人支付。", "Above the price limit: {} yuan, paid by the patient."),
        ("preselfpay_amt", "乙类项目先行自付 {} 元。", "Self-paid first on class-B items: {} yuan."),
    ):
        if b.get(f):
            out.append((zh_text if zh else en_text).format(y[f]))
    if b.get("inscp_scp_amt"):
        out.append(f"符合医保政策范围的费用 {y['inscp_scp_amt']} 元"
                   + (f"，其中起付线以下 {y['act_pay_dedc']} 元由个人负担。" if b.get("act_pay_dedc") else "。")
                   if zh else f"Within policy: {y['inscp_scp_amt']} yuan"
                   + (f", of which {y['act_pay_dedc']} yuan below the deductible is the patient's." if
                      b.get("act_pay_dedc") else "."))
    for p in breakdown.get("pieces") or ():
        fund = label(f"{p['fund']}_pay", lang)
        lo, hi, pay = yuan(p["lower"]), yuan(p["upper"]), yuan(p["pay"])
        out.append(f"{fund}：累计 {lo}–{hi} 元段按 {p['ratio']} 支付 {pay} 元。" if zh
                   else f"{fund}: {p['ratio']} of the {lo}-{hi} yuan segment, {pay} yuan.")
    out.append(f"基金支付合计 {y['fund_pay_sumamt']} 元；个人负担 {y['psn_part_amt']} 元，其中个人账户支付 "
               f"{y['acct_pay']} 元，现金支付 {y['psn_cash_pay']} 元。" if zh else
               f"Funds pay {y['fund_pay_sumamt']} yuan; the patient's part is {y['psn_part_amt']} yuan: "
               f"{y['acct_pay']} from the personal account, {y['psn_cash_pay']} in cash.")
    if b.get("acct_pay") or b.get("balc"):
        out.append(f"个人账户余额 {y['balc']} 元。" if zh else f"Personal account balance after: {y['balc']} yuan.")
    out.extend(f"（中心说明）{n}" if zh else n for n in breakdown.get("notes") or ())
    return out


# ---- thermal printer text -------------------------------------------------------------------------------------
def _width(s: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def _row(left: str, right: str, cols: int) -> str:
    gap = cols - _width(left) - _width(right)
    if gap >= 1:
        return left + " " * gap + right
    return f"{left}\n{' ' * max(0, cols - _width(right))}{right}"


def _wrap(text: str, cols: int) -> list[str]:
    """`text` cut into lines of at most `cols` display columns (a Chinese character takes two)."""
    out, line = [], ""
    for c in text:
        if _width(line + c) > cols:
            out.append(line)
            line = ""
        line += c
    return [*out, line] if line else out


def _center(s: str, cols: int) -> str:
    return " " * max(0, (cols - _width(s)) // 2) + s


def receipt_text(r: dict[str, Any], cols: int = 32) -> str:
    """A receipt for a thermal printer, in Chinese: `cols` 32 (58 mm paper) or 48 (80 mm)."""
    rule = "-" * cols
    local = r["at"].replace("T", " ")[:19]
    lines = [*(_center(x, cols) for x in _wrap(r["institution_name"], cols)), _center(r["title"], cols), rule,
             _row("姓名", r["name"] or "-", cols), _row("卡号", r["card_no"] or "-", cols),
             _row("时间", local, cols), _row("流水号", r["key"], cols), _row("状态", r["state_label"], cols), rule]
    for line in r["lines"]:
        lines.append(_row(line["label"], f"{line['yuan']} 元", cols))
    if not r["lines"]:
        lines.append(_row("金额", f"{r['amount_yuan']} 元", cols))
    lines.append(rule)
    if r.get("original_key"):
        lines.append(_row("原交易", r["original_key"], cols))
    if r.get("reason"):
        lines.extend(_wrap(f"原因：{r['reason']}", cols))
    if r.get("operator"):
        lines.append(_row("经办人", r["operator"], cols))
    if r.get("card_record") and r["kind"] in ("settle", "pension_collect"):
        lines.append(_row("写卡", "成功" if r["card_record"] == "written" else "未写入", cols))
    lines.append(_row("终端", f"{r['terminal_id']} {r['terminal_number'] or ''}".strip(), cols))
    return "\n".join(lines) + "\n"
