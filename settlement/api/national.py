"""The national medical security platform's transaction interface (医疗保障信息平台 定点医药机构接口), served
by the centre beside the native API: HIS code written for the platform runs against sscard with only its
platform URL and a terminal key changed.

    POST /fsi/api/rsfComIfsService/callService   (also /fsi/api/fileupload/upload and .../download)
    X-Terminal-Key: <the terminal's key, as on the native API>
    {"infno": "2207", "msgid": "<fixmedins_code><yyyyMMddHHmmss><4-digit sequence>", "mdtrtarea_admvs": ...,
     "insuplc_admdvs": ..., "recer_sys_code": ..., "infver": ..., "opter_type": ..., "opter": ...,
     "opter_name": ..., "inf_time": ..., "fixmedins_code": ..., "fixmedins_name": ..., "sign_no": ...,
     "input": {...}}
    -> HTTP 200 {"infcode": 0 | -1, "inf_refmsgid": ..., "refmsg_time": ..., "respond_time": ...,
                 "err_msg": null | "<Chinese, naming the field>", "output": {...}}

Transactions, fields and code tables are data: settlement/api/national_codes.toml (which cites where each
table comes from: public HIS integration code that retells the platform's specification), and the medical
list settlement/api/national_catalogue.toml. Served: 9001/9002 sign-in/out, 1101 person and insurance by
card or ID number, outpatient 2201-2208, inpatient 2401/2402/2404/2405 and 2301-2305, reconciliation 3201
(totals) and 3202 (details, through a 9101 upload and a 9102 download).

One engine, two dialects. Every transaction calls the engine through the same functions as the native API
(settlement/api/service.py), so the same idempotency, ledger and batching serve both:
  * psn_no is the person id; mdtrt_id is the engine's visit id (a native visit is a national one);
  * a message's idempotency key is `{terminal_id}:{serial}`, the serial being the msgid's last 18
    characters (time and sequence); a settlement's setl_id is its key, so a settlement made natively is
    cancelled with 2208 under its native setl_id and one made with 2207 is voided natively under the
    setl_id 2207 answered. A HIS repeating a message (same msgid) gets the first result again;
  * fee details (2204/2301) are kept at the centre (settlement/schemes/uploads.py) with the class the
    catalogue gives their item; 2206/2207 settle the lines of one charge batch (2303/2304: the stay's);
  * amounts are yuan with at most two decimals on the wire (a JSON number, parsed exactly, or a numeric
    string) and integer fen inside; answers are JSON numbers.

Scope: the caller is a terminal authenticated by its key, as on the native API; `fixmedins_code` must be the
terminal's institution, `mdtrtarea_admvs` its region, and every visit, settlement and file it names must be
that institution's; a card presented (mdtrt_cert_type 03) must be its holder's active card at the card
registry (settlement/schemes/cards.py), with its identifier (card_sn) when 1101 gives one. Bad input
(malformed envelope, unknown infno, missing or wrong sign_no, an amount with three decimals, a code outside
its table...) gets infcode -1 with HTTP 200, as the platform answers, and changes nothing.

What differs from a real platform: no signature or encryption check (cainfo, signtype are accepted and
ignored); code tables and transactions limited to what sscard's policies model; one settlement per visit
(settle one charge batch, or cancel the others first); no mid-stay settlement; the electronic voucher
(mdtrt_cert_type 01) is not served; 3201/3202 count each settlement at its settlement time and each
cancellation (and native refund) at its own, netted (refd_setl_flag is checked, not used to filter);
9102 answers the file's bytes (application/zip), as the platform's download does.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import logging
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from settlement.api.auth import KeyRing, TerminalKey
from settlement.api.guard import Refusal
from settlement.api.national_data import (
    Codes,
    Item,
    NationalError,
    TxSpec,
    load_catalogue,
    load_codes,
    ratio_out,
    yuan_out,
)
from settlement.api.national_state import NationalState, derived_id
from settlement.errors import SettlementError, UnknownPerson, UnknownTransaction, UnknownVisit
from settlement.ledger import CST, Tx, make_key
from settlement.schemes import chart
from settlement.schemes.breakdown import catalogue_stage, line_shares
from settlement.schemes.cards import load_cards, refusal
from settlement.schemes.engine import Engine
from settlement.schemes.medical import load_visit
from settlement.schemes.records import Institution, load_person
from settlement.schemes.uploads import FeeDetail, load_fees
from settlement.wire import CARD_ID_FORM, PARTS, Breakdown, Card, Person, Visit

log = logging.getLogger("sscard.settlement.national")
PATHS = ("/fsi/api/rsfComIfsService/callService", "/fsi/api/fileupload/upload", "/fsi/api/fileupload/download")
KEY_HEADER = "X-Terminal-Key"
MAX_BODY = 12 * 1024 * 1024
FILE_KEEP = dt.timedelta(days=7)
ALL = "0000"  # chrg_bchno / feedetl_sn meaning "all" in 2205 / 2302
CATEGORY_FIELDS = ("fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt", "inscp_scp_amt")
MONEY = ("medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt", "inscp_scp_amt", "act_pay_dedc",
         *PARTS, "fund_pay_sumamt", "psn_part_amt", "balc")
DETAIL_COLS = ("setl_id", "mdtrt_id", "psn_no", "medfee_sumamt", "fund_pay_sumamt", "acct_pay", "refd_setl_flag")


def _time(t: dt.datetime) -> str:
    return t.astimezone(CST).strftime("%Y-%m-%d %H:%M:%S")


def _msg_time(t: dt.datetime) -> str:
    c = t.astimezone(CST)
    return c.strftime("%Y%m%d%H%M%S") + f"{c.microsecond // 1000:03d}"


def _born(person_id: str) -> tuple[str | None, dt.date | None]:
    """Sex code and birth date read from an 18-character citizen id (None, None for anything else)."""
    if len(person_id) != 18 or not person_id[:17].isdigit():
        return None, None
    try:
        birth = dt.date(int(person_id[6:10]), int(person_id[10:12]), int(person_id[12:14]))
    except ValueError:
        return None, None
    return ("1" if int(person_id[16]) % 2 else "2"), birth


def _age(birth: dt.date | None, on: dt.date) -> float | None:
    if birth is None:
        return None
    return float((Decimal((on - birth).days) / Decimal("365.25")).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class Call:
    """One checked message: who sent it, for which institution, under which idempotency key."""

    terminal: TerminalKey
    inst: Institution
    infno: str
    msgid: str
    key: str
    env: dict[str, Any]
    raw: dict[str, Any]
    input: dict[str, Any]
    received: dt.datetime
    loaded: dict[str, Any] = field(default_factory=dict)  # what `_prefetch` read for it


class National:
    """The interface over one engine; `router()` gives its FastAPI routes."""

    def __init__(self, engine: Engine, keys: KeyRing, *, codes: Codes | None = None,
                 catalogue: dict[str, Item] | None = None) -> None:
        self.engine, self.keys = engine, keys
        self.clock = engine.clock
        self.codes = codes or load_codes()
        self.catalogue = catalogue if catalogue is not None else load_catalogue(codes=self.codes)
        self.state = NationalState(engine.store, engine.clock)
        self._institutions: dict[str, Institution] = {}  # immutable once registered
        self.handlers: dict[str, Callable[[Call], Any]] = {
            "9001": self.sign_in, "9002": self.sign_out, "1101": self.person_info,
            "2201": self.register, "2202": self.cancel_visit, "2203": self.visit_info, "2204": self.upload_fees,
            "2205": self.cancel_fees, "2206": self.presettle, "2207": self.settle, "2208": self.cancel_settlement,
            "2301": self.upload_fees, "2302": self.cancel_fees, "2303": self.presettle, "2304": self.settle,
            "2305": self.cancel_settlement, "2401": self.register, "2402": self.discharge,
            "2404": self.cancel_visit, "2405": self.cancel_discharge, "3201": self.reconcile_totals,
            "3202": self.reconcile_details, "9101": self.upload_file, "9102": self.download_file,
        }
        missing = set(self.codes.transactions) ^ set(self.handlers)
        assert not missing, f"national transactions without a handler or a table entry: {missing}"

    # -- HTTP ------------------------------------------------------------------------------------------------
    def router(self) -> APIRouter:
        router = APIRouter(tags=["national platform"])

        async def call_service(request: Request) -> Response:
            """The national platform's transaction interface (see settlement/api/national.py)."""
            received = self.clock.now()
            chunks: list[bytes] = []
            size = 0
            async for chunk in request.stream():
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_BODY:
                    break
            key = request.headers.get(KEY_HEADER)
            return await run_in_threadpool(self.answer, None if size > MAX_BODY else b"".join(chunks), key,
                                           received)

        for path in PATHS:
            router.add_api_route(path, call_service, methods=["POST"], include_in_schema=path == PATHS[0],
                                 operation_id="national_call_service" if path == PATHS[0] else None,
                                 summary="National platform transaction (infno in the envelope)")
        return router

    def refused(self, refusal: Refusal) -> Response:
        """A message the service's gate refused unread (no known key; a body over MAX_BODY), answered as the
        platform answers: HTTP 200, infcode -1."""
        message = (f"{self.codes.errors['UNAUTHORIZED']}（请求头 {KEY_HEADER}）" if refusal.status == 401
                   else f"报文超过 {MAX_BODY // (1024 * 1024)} MB")
        return self._reply(-1, "", "000000", self.clock.now(), message, None)

    def answer(self, body: bytes | None, terminal_key: str | None, received: dt.datetime) -> Response:
        """The HTTP answer to one message: always 200, infcode 0 or -1 (9102: the file itself)."""
        msgid, region = "", "000000"
        try:
            if body is None:
                raise NationalError(f"报文超过 {MAX_BODY // (1024 * 1024)} MB", "input")
            env = _parse(body)
            msgid = env.get("msgid") if isinstance(env.get("msgid"), str) else ""
            terminal = self.keys.find(terminal_key)
            if terminal is None:
                raise NationalError(f"{self.codes.errors['UNAUTHORIZED']}（请求头 {KEY_HEADER}）", KEY_HEADER)
            c = self._call(terminal, env, received)
            region = c.inst.region
            self._prefetch(c)
            output = self.handlers[c.infno](c)
        except NationalError as e:
            return self._reply(-1, msgid, region, received, e.message, None)
        except SettlementError as e:
            return self._reply(-1, msgid, region, received, self._engine_message(e), None)
        except Exception:
            log.exception("national interface: internal error")
            return self._reply(-1, msgid, region, received, "中心内部错误，未做任何处理；请用同一发送方报文ID重试",
                               None)
        if isinstance(output, bytes):
            return Response(output, media_type="application/zip")
        return self._reply(0, msgid, region, received, None, output)

    def _reply(self, infcode: int, msgid: str, region: str, received: dt.datetime, err: str | None,
               output: Any) -> Response:
        """The standard reply; inf_refmsgid is the receiver's region + time + a 10-digit serial."""
        digest = hashlib.blake2b(f"{msgid}|{received.isoformat()}".encode(), digest_size=8).digest()
        body = {
            "infcode": infcode,
            "inf_refmsgid": region + received.astimezone(CST).strftime("%Y%m%d%H%M%S")
                            + f"{int.from_bytes(digest) % 10**10:010d}",
            "refmsg_time": _msg_time(received),
            "respond_time": _msg_time(self.clock.now()),
            "err_msg": err,
            "output": output,
        }
        return Response(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
                        media_type="application/json")

    def _engine_message(self, e: SettlementError) -> str:
        return f"{self.codes.errors.get(e.code, '交易失败')}（{e.code}: {e.message}）"

    # -- the envelope ----------------------------------------------------------------------------------------
    def _call(self, terminal: TerminalKey, env: dict[str, Any], received: dt.datetime) -> Call:
        codes = self.codes
        for name in codes.envelope_required:
            if env.get(name) in (None, ""):
                raise NationalError(f"{codes.who(name)}不能为空", name)
        checked = {n: codes.value(n, env[n]) for n in (*codes.envelope_required, *codes.envelope_optional)
                   if n != "input" and env.get(n) not in (None, "")}
        infno = checked["infno"]
        spec: TxSpec | None = codes.transactions.get(infno)
        if spec is None:
            raise NationalError(f"{codes.who('infno')} {infno!r} 不支持", "infno")
        code = checked["fixmedins_code"]
        if terminal.institution is None or code != terminal.institution:
            raise NationalError(f"{codes.who('fixmedins_code')} {code!r} 不是本终端所属的定点医药机构",
                                "fixmedins_code")
        inst = self._institution(code)
        if checked["mdtrtarea_admvs"] != inst.region:
            raise NationalError(f"{codes.who('mdtrtarea_admvs')}应为本机构所在区划 {inst.region}", "mdtrtarea_admvs")
        msgid = checked["msgid"]
        serial = msgid[len(code):]
        if not (msgid.startswith(code) and len(serial) == 18 and serial.isdigit() and _is_time(serial[:14])):
            raise NationalError(f"{codes.who('msgid')}格式应为 定点医药机构编号+yyyyMMddHHmmss+4位顺序号，"
                                f"收到 {msgid!r}", "msgid")
        if infno != "9001" and "sign_no" not in checked:
            raise NationalError(f"{codes.who('sign_no')}不能为空，请先签到(9001)", "sign_no")
        raw = env["input"]
        return Call(terminal, inst, infno, msgid, make_key(terminal.terminal_id, serial), checked,
                    raw if isinstance(raw, dict) else {}, codes.check_input(spec, raw), received)

    def _prefetch(self, c: Call) -> None:
        """One read for what the message names: the sign-in check (every message but 9001), then the person,
        the card presented, the visit and, to settle, its fee details, for `_person`, `_card`, `_visit` and
        `_bill` to use instead of a read each."""
        node = next((v if isinstance(v, dict) else v[0] for v in c.input.values()), {})
        psn_no, mdtrt_id = node.get("psn_no"), node.get("mdtrt_id")
        card_no = node.get("mdtrt_cert_no") if node.get("mdtrt_cert_type") == "03" else None
        settling = c.infno in ("2206", "2207", "2303", "2304")
        batch = node.get("chrg_bchno") if c.infno in ("2206", "2207") else None
        today = self.clock.today()

        def q(tx: Tx) -> dict[str, Any]:
            if c.infno != "9001":
                self.state.check(c.env["sign_no"], c.terminal.terminal_id, tx)
            out: dict[str, Any] = {}
            if isinstance(psn_no, str):
                try:
                    out["person"] = load_person(tx, psn_no)
                except UnknownPerson:
                    out["person"] = None
            if isinstance(card_no, str):
                out["cards"] = (card_no, load_cards(tx, today, card_nos=[card_no]))
            if isinstance(mdtrt_id, str):
                try:
                    out["visit"] = load_visit(tx, mdtrt_id)
                except UnknownVisit:
                    out["visit"] = None
                if settling:
                    out["fees"] = (mdtrt_id, batch, load_fees(tx, mdtrt_id, batch, with_detail=False))
            return out

        c.loaded.update(self.engine.store.read(q))

    def _institution(self, code: str) -> Institution:
        inst = self._institutions.get(code)
        if inst is None:
            inst = self._institutions[code] = self.engine.registry.institution(code)
        return inst

    # -- people, visits, settlements of the caller -------------------------------------------------------
    def _person(self, c: Call, psn_no: str) -> Person:
        person = c.loaded.get("person", False)
        if person is False or (person is not None and person.person_id != psn_no):
            try:
                person = self.engine.registry.person(psn_no)
            except UnknownPerson:
                person = None
        if person is None:
            raise NationalError(f"人员编号(psn_no) {psn_no!r} 不存在", "psn_no")
        region = c.env.get("insuplc_admdvs")
        if region is None:
            raise NationalError("参保地医保区划(insuplc_admdvs)不能为空（交易输入含人员编号时必填）", "insuplc_admdvs")
        if region != person.region:
            raise NationalError(f"参保地医保区划(insuplc_admdvs)与人员参保地不符：应为 {person.region}",
                                "insuplc_admdvs")
        return person

    def _insured(self, c: Call, person: Person, data: dict[str, Any]) -> dict[str, str]:
        """The person's insutype and psn_type; checks the message's insutype and credential against them."""
        cat = self.codes.category[person.category]
        if "insutype" in data and data["insutype"] != cat["insutype"]:
            raise NationalError(f"险种类型(insutype)与人员参保险种不符：应为 {cat['insutype']}", "insutype")
        kind, number = data.get("mdtrt_cert_type"), data.get("mdtrt_cert_no")
        if kind == "03":
            self._card(c, number, None, person.person_id)
        elif kind is not None and number != person.person_id:
            raise NationalError("就诊凭证编号(mdtrt_cert_no)与人员不符", "mdtrt_cert_no")
        return cat

    def _card(self, c: Call, card_no: str, card_sn: str | None, person_id: str | None) -> Card:
        """The card presented, if it is its holder's (or `person_id`'s) active card at the registry; else why
        not (lost, replaced, cancelled, expired, another person's, number and identifier not one card)."""
        if card_sn is not None and not CARD_ID_FORM.fullmatch(card_sn.upper()):
            raise NationalError(f"卡识别码(card_sn)应为32位十六进制，收到 {card_sn!r}", "card_sn")
        loaded = c.loaded.get("cards")
        if card_sn is None and loaded is not None and loaded[0] == card_no:
            cards = loaded[1]
        else:
            today = self.clock.today()
            cards = self.engine.store.read(lambda tx: load_cards(tx, today, card_nos=[card_no],
                                                                 card_ids=[card_sn] if card_sn else []))
        card = next((c for c in cards if c.card_no == card_no), None)
        if card is None:
            raise NationalError(f"就诊凭证编号(mdtrt_cert_no) {card_no!r} 查无此卡", "mdtrt_cert_no")
        error = refusal(cards, person_id or card.person_id, card_sn, card_no)
        if error is not None:
            raise NationalError(f"就诊凭证编号(mdtrt_cert_no)：{self._engine_message(error)}", "mdtrt_cert_no")
        return card

    def _visit(self, c: Call, mdtrt_id: str, person: Person, care: str) -> Visit:
        visit = c.loaded.get("visit", False)
        if visit is False or (visit is not None and visit.mdtrt_id != mdtrt_id):
            try:
                visit = self.engine.medical.visit(mdtrt_id)
            except UnknownVisit:
                visit = None
        if visit is None or visit.institution != c.inst.code:
            raise NationalError(f"就诊ID(mdtrt_id) {mdtrt_id!r} 不存在或不属于本机构", "mdtrt_id")
        if visit.person_id != person.person_id:
            raise NationalError("人员编号(psn_no)与就诊信息不符", "psn_no")
        if visit.care != care:
            kind = "门诊" if care == "outpatient" else "住院"
            raise NationalError(f"就诊ID(mdtrt_id) {mdtrt_id!r} 不是{kind}就诊", "mdtrt_id")
        return visit

    def _unsettled(self, visit: Visit, cancel: str) -> None:
        if visit.status == "settled":
            raise NationalError(f"就诊 {visit.mdtrt_id} 已结算，请先撤销结算({cancel})", "mdtrt_id")

    def _med_type(self, care: str, data: dict[str, Any]) -> str:
        want = self.codes.care[care]["med_type"]
        if data.get("med_type", want) != want:
            raise NationalError(f"医疗类别(med_type)与就诊不符：应为 {want}", "med_type")
        return want

    # -- 9001 / 9002 -------------------------------------------------------------------------------------
    def sign_in(self, c: Call) -> dict[str, Any]:
        sign_no, at = self.state.sign_in(c.key, c.terminal.terminal_id, c.input["signIn"]["opter_no"])
        return {"signinoutb": {"sign_time": _time(at), "sign_no": sign_no}}

    def sign_out(self, c: Call) -> dict[str, Any]:
        sign_no = c.input["signOut"]["sign_no"]
        return {"signoutoutb": {"sign_time": _time(self.state.sign_out(sign_no, c.terminal.terminal_id))}}

    # -- 1101 ----------------------------------------------------------------------------------------------
    def person_info(self, c: Call) -> dict[str, Any]:
        d = c.input["data"]
        number = d["mdtrt_cert_no"]
        try:
            if d["mdtrt_cert_type"] == "03":
                if "card_sn" not in d:
                    raise NationalError("卡识别码(card_sn)不能为空（就诊凭证类型为03时必填）", "card_sn")
                person = self.engine.registry.person(self._card(c, number, d["card_sn"], None).person_id)
            else:
                person = self.engine.registry.person(number)
        except UnknownPerson:
            raise NationalError(f"就诊凭证编号(mdtrt_cert_no) {number!r} 查无参保人员", "mdtrt_cert_no") from None
        if "psn_name" in d and d["psn_name"] != person.name:
            raise NationalError("人员姓名(psn_name)与证件不符", "psn_name")
        if "certno" in d and d["certno"] != person.person_id:
            raise NationalError("证件号码(certno)与就诊凭证不符", "certno")
        cat = self.codes.category[person.category]
        gend, birth = _born(person.person_id)
        today = self.clock.today()
        balance = self.engine.ledger.balance(chart.personal_account(person.person_id))
        since = self.engine.registry.enrolled_since(person.person_id, person.region)
        dead = person.death_date is not None
        return {
            "baseinfo": {"psn_no": person.person_id, "psn_cert_type": "01", "certno": person.person_id,
                         "psn_name": person.name, "gend": gend, "naty": None,
                         "brdy": birth.isoformat() if birth else None, "age": _age(birth, today)},
            "insuinfo": [{"balc": yuan_out(balance), "insutype": cat["insutype"], "psn_type": cat["psn_type"],
                          "psn_insu_stas": "4" if dead else "1", "psn_insu_date": since,
                          "paus_insu_date": person.death_date.isoformat() if person.death_date else None,
                          "cvlserv_flag": "0", "insuplc_admdvs": person.region, "emp_name": ""}],
            "idetinfo": [],
        }

    # -- visits: 2201 / 2401, 2202 / 2404, 2203, 2402 / 2405 -----------------------------------------------
    def register(self, c: Call) -> dict[str, Any]:
        care = "outpatient" if c.infno == "2201" else "inpatient"
        node = "data" if care == "outpatient" else "mdtrtinfo"
        d = c.input[node]
        person = self._person(c, d["psn_no"])
        self._insured(c, person, d)
        self._med_type(care, d)
        visit = self.engine.medical.register(
            c.key, person.person_id, c.inst.code, care, begntime=d["begntime"].date(),
            card_no=d["mdtrt_cert_no"] if d["mdtrt_cert_type"] == "03" else None)
        if care == "outpatient":
            return {"data": {"mdtrt_id": visit.mdtrt_id, "psn_no": person.person_id, "ipt_otp_no": d["ipt_otp_no"]}}
        self.engine.uploads.set_note(visit.mdtrt_id, "visit", {k: c.raw[k] for k in ("mdtrtinfo", "diseinfo")
                                                               if k in c.raw})
        return {"result": {"mdtrt_id": visit.mdtrt_id}}

    def cancel_visit(self, c: Call) -> dict[str, Any]:
        care = "outpatient" if c.infno == "2202" else "inpatient"
        d = c.input["data"]
        visit = self._visit(c, d["mdtrt_id"], self._person(c, d["psn_no"]), care)
        self._unsettled(visit, "2208" if care == "outpatient" else "2305")
        if care == "inpatient" and self.engine.uploads.note(visit.mdtrt_id, "discharge") is not None:
            raise NationalError(f"就诊 {visit.mdtrt_id} 已办理出院，请先撤销出院(2405)", "mdtrt_id")
        self.engine.medical.cancel_visit(c.key, visit.mdtrt_id)
        self.engine.uploads.forget(visit.mdtrt_id)
        return {}

    def visit_info(self, c: Call) -> dict[str, Any]:
        d = c.input["mdtrtinfo"]
        visit = self._visit(c, d["mdtrt_id"], self._person(c, d["psn_no"]), "outpatient")
        self._med_type("outpatient", d)
        self.engine.uploads.set_note(visit.mdtrt_id, "visit", {k: c.raw[k] for k in ("mdtrtinfo", "diseinfo")
                                                               if k in c.raw})
        return {}

    def discharge(self, c: Call) -> dict[str, Any]:
        d = c.input["dscginfo"]
        person = self._person(c, d["psn_no"])
        self._insured(c, person, d)
        visit = self._visit(c, d["mdtrt_id"], person, "inpatient")
        if d["endtime"].date() < visit.begntime:
            raise NationalError(f"结束时间(endtime)早于入院日期 {visit.begntime.isoformat()}", "endtime")
        if self.engine.uploads.note(visit.mdtrt_id, "discharge") is not None:
            raise NationalError(f"就诊 {visit.mdtrt_id} 已办理出院", "mdtrt_id")
        self.engine.uploads.set_note(visit.mdtrt_id, "discharge", {k: c.raw[k] for k in ("dscginfo", "diseinfo")
                                                                   if k in c.raw})
        return {}

    def cancel_discharge(self, c: Call) -> dict[str, Any]:
        d = c.input["data"]
        visit = self._visit(c, d["mdtrt_id"], self._person(c, d["psn_no"]), "inpatient")
        self._unsettled(visit, "2305")
        if not self.engine.uploads.remove_note(visit.mdtrt_id, "discharge"):
            raise NationalError(f"就诊 {visit.mdtrt_id} 未办理出院", "mdtrt_id")
        return {}

    # -- fee details: 2204 / 2301, 2205 / 2302 -----------------------------------------------------------
    def upload_fees(self, c: Call) -> dict[str, Any]:
        care = "outpatient" if c.infno == "2204" else "inpatient"
        lines = c.input["feedetail"]
        first = lines[0]
        for i, ln in enumerate(lines):
            for f in ("mdtrt_id", "psn_no"):
                if ln[f] != first[f]:
                    raise NationalError(f"feedetail第{i + 1}条：{self.codes.who(f)}与第1条不同（一次只传一个就诊）", f)
        visit = self._visit(c, first["mdtrt_id"], self._person(c, first["psn_no"]), care)
        self._unsettled(visit, "2208" if care == "outpatient" else "2305")
        fees = [self._fee(i, ln, care) for i, ln in enumerate(lines)]
        stored = self.engine.uploads.add_fees(visit.mdtrt_id, fees)
        batches = {f.chrg_bchno for f in fees}
        catalogue = self.engine.policies.get(visit.treatment_region, visit.begntime)
        shares: dict[str, Any] = {}
        for batch in batches:
            mine = [f for f in stored if f.chrg_bchno == batch]
            shares.update(zip((f.feedetl_sn for f in mine), line_shares([f.line() for f in mine], catalogue),
                              strict=True))
        return {"result": [self._fee_result(f, shares[f.feedetl_sn]) for f in fees]}

    def _fee(self, i: int, ln: dict[str, Any], care: str) -> FeeDetail:
        where = f"feedetail第{i + 1}条："
        if care == "inpatient" and ln["med_type"] != self.codes.care["inpatient"]["med_type"]:
            raise NationalError(f"{where}医疗类别(med_type)应为 {self.codes.care['inpatient']['med_type']}", "med_type")
        code = ln["med_list_codg"]
        item = self.catalogue.get(code)
        if item is None:
            raise NationalError(f"{where}医疗目录编码(med_list_codg) {code!r} 不在医保目录中", "med_list_codg")
        cnt, pric, amount = ln["cnt"], ln["pric"], ln["det_item_fee_sumamt"]
        if cnt <= 0:
            raise NationalError(f"{where}数量(cnt)应大于0（退费请撤销明细）", "cnt")
        if abs(_fen(pric * cnt) - amount) > 1:
            raise NationalError(f"{where}明细项目费用总额(det_item_fee_sumamt)与单价×数量不符", "det_item_fee_sumamt")
        over = 0
        if item.pric_uplmt_amt is not None and pric > item.pric_uplmt_amt:
            over = min(amount, max(0, amount - _fen(item.pric_uplmt_amt * cnt)))
        detail: dict[str, Any] = {}
        for k, v in ln.items():  # what else the HIS sent, as JSON scalars (numbers exactly, as strings)
            t = type(v)
            if t is str or t is int:
                detail[k] = v
            elif t is Decimal:
                detail[k] = str(v)
            elif isinstance(v, (str, int, Decimal)):
                detail[k] = str(v) if isinstance(v, Decimal) else v
        detail.pop("mdtrt_id", None)
        detail.pop("psn_no", None)
        detail["det_item_fee_sumamt"] = amount
        detail["fee_ocur_time"] = ln["fee_ocur_time"].isoformat(sep=" ")
        return FeeDetail(ln["feedetl_sn"], ln.get("chrg_bchno", ""), code, item.chrgitm_lv, amount, over, detail)

    def _fee_result(self, f: FeeDetail, share: Any) -> dict[str, Any]:
        item = self.catalogue[f.med_list_codg]
        return {
            "feedetl_sn": f.feedetl_sn, "det_item_fee_sumamt": yuan_out(f.amount),
            "cnt": float(Decimal(f.detail["cnt"])), "pric": float(Decimal(f.detail["pric"])),
            "pric_uplmt_amt": float(item.pric_uplmt_amt) if item.pric_uplmt_amt is not None else None,
            "selfpay_prop": ratio_out(share.selfpay_prop), "fulamt_ownpay_amt": yuan_out(share.fulamt_ownpay_amt),
            "overlmt_amt": yuan_out(share.overlmt_amt), "preselfpay_amt": yuan_out(share.preselfpay_amt),
            "inscp_scp_amt": yuan_out(share.inscp_scp_amt), "chrgitm_lv": item.chrgitm_lv,
            "med_chrgitm_type": item.med_chrgitm_type, "lmt_used_flag": "0", "memo": None,
        }

    def cancel_fees(self, c: Call) -> dict[str, Any]:
        if c.infno == "2205":
            d, care, cancel = c.input["data"], "outpatient", "2208"
            rows = [d]
        else:
            rows = c.input["data"]
            d, care, cancel = rows[0], "inpatient", "2305"
        for i, r in enumerate(rows):
            if (r["mdtrt_id"], r["psn_no"]) != (d["mdtrt_id"], d["psn_no"]):
                raise NationalError(f"data第{i + 1}条：就诊ID或人员编号与第1条不同（一次只撤销一个就诊）", "mdtrt_id")
        visit = self._visit(c, d["mdtrt_id"], self._person(c, d["psn_no"]), care)
        self._unsettled(visit, cancel)
        if c.infno == "2205":
            self.engine.uploads.remove_fees(visit.mdtrt_id,
                                            chrg_bchno=None if d["chrg_bchno"] == ALL else d["chrg_bchno"])
        else:
            sns = [r["feedetl_sn"] for r in rows]
            self.engine.uploads.remove_fees(visit.mdtrt_id, feedetl_sns=None if ALL in sns else sns)
        return {}

    # -- settlement: 2206 / 2303, 2207 / 2304, 2208 / 2305 ------------------------------------------------
    def _bill(self, c: Call, care: str) -> tuple[Person, Visit, list[FeeDetail], dict[str, Any]]:
        d = c.input["data"]
        person = self._person(c, d["psn_no"])
        self._insured(c, person, d)
        visit = self._visit(c, d["mdtrt_id"], person, care)
        self._med_type(care, d)
        batch = d["chrg_bchno"] if care == "outpatient" else None
        loaded = c.loaded.get("fees")
        fees = loaded[2] if loaded and loaded[:2] == (visit.mdtrt_id, batch) else self.engine.uploads.fees(
            visit.mdtrt_id, batch)
        if not fees:
            raise NationalError("没有可结算的费用明细（请先上传 2204/2301）", "chrg_bchno")
        total = sum(f.amount for f in fees)
        if total != d["medfee_sumamt"]:
            raise NationalError(f"医疗费总额(medfee_sumamt)与已上传费用明细合计 {yuan_out(total):.2f} 不符，"
                                "请核对并重新上传费用明细(2204/2301)后再结算", "medfee_sumamt")
        given = [f for f in CATEGORY_FIELDS if f in d]
        if given:
            catalogue = self.engine.policies.get(visit.treatment_region, visit.begntime)
            sums = dict(zip(CATEGORY_FIELDS, catalogue_stage([f.line() for f in fees], catalogue)[1:], strict=True))
            for f in given:
                if d[f] != sums[f]:
                    raise NationalError(
                        f"{self.codes.who(f)}与中心按明细计算的 {yuan_out(sums[f]):.2f} 不符（请重新预结算）", f)
        return person, visit, fees, d

    def presettle(self, c: Call) -> dict[str, Any]:
        care = "outpatient" if c.infno == "2206" else "inpatient"
        person, visit, fees, d = self._bill(c, care)
        pre = self.engine.medical.presettle(visit.mdtrt_id, [f.line() for f in fees],
                                            use_account=d.get("acct_used_flag", "1") == "1")
        return self._settlement(c, person, care, pre.breakdown, d["mdtrt_cert_type"], visit.mdtrt_id,
                                None, _time(self.clock.now()))

    def settle(self, c: Call) -> dict[str, Any]:
        care = "outpatient" if c.infno == "2207" else "inpatient"
        person, visit, fees, d = self._bill(c, care)
        if care == "inpatient" and self.engine.uploads.note(visit.mdtrt_id, "discharge") is None:
            raise NationalError(f"就诊 {visit.mdtrt_id} 未办理出院，请先办理出院(2402)", "mdtrt_id")
        s = self.engine.medical.settle(c.key, visit.mdtrt_id, [f.line() for f in fees],
                                       use_account=d["acct_used_flag"] == "1")
        return self._settlement(c, person, care, s.breakdown, d["mdtrt_cert_type"], visit.mdtrt_id, s.setl_id,
                                _time(dt.datetime.fromisoformat(s.setl_time)))

    def cancel_settlement(self, c: Call) -> dict[str, Any]:
        """2208 / 2305. Also for a settlement that has not arrived (the HIS lost the 2207 answer; its setl_id
        is the terminal id and the 2207 msgid's serial): that leaves a tombstone, as the native void does,
        and the late settlement is refused."""
        care = "outpatient" if c.infno == "2208" else "inpatient"
        d = c.input["data"]
        person = self._person(c, d["psn_no"])
        setl_id = d["setl_id"]
        try:
            rec = self.engine.medical.settlement(setl_id)
        except UnknownTransaction:
            rec = None
        if rec is None or rec.status == "void_before_arrival":
            if not setl_id.startswith(f"{c.terminal.terminal_id}:"):
                raise NationalError(f"结算ID(setl_id) {setl_id!r} 不存在或不属于本机构", "setl_id")
            visit = self._visit(c, d["mdtrt_id"], person, care)
            void = self.engine.medical.void(c.key, setl_id, actor=c.terminal.terminal_id)
            zero = Breakdown.model_validate(dict.fromkeys(MONEY, 0))
            info = {"mdtrt_id": visit.mdtrt_id, "setl_id": void.void_key, "clr_optins": person.region,
                    "setl_time": _time(self.clock.now()), **self._amounts(dict.fromkeys(MONEY, 0), zero),
                    "medins_setl_id": c.msgid}
            return {"setlinfo": info, "setldetail": []}
        if rec.institution != c.inst.code:
            raise NationalError(f"结算ID(setl_id) {setl_id!r} 不存在或不属于本机构", "setl_id")
        if rec.mdtrt_id != d["mdtrt_id"]:
            raise NationalError("就诊ID(mdtrt_id)与结算信息不符", "mdtrt_id")
        self._visit(c, rec.mdtrt_id, person, care)
        original = self.engine.ledger.get(setl_id)
        assert original is not None
        b = Breakdown.model_validate(original.payload["result"]["breakdown"])
        void = self.engine.medical.void(c.key, setl_id, actor=c.terminal.terminal_id)
        back = void.reversed
        assert back is not None
        amounts: dict[str, int | None] = {p: -getattr(back, p) for p in PARTS}
        amounts |= {"medfee_sumamt": -back.medfee_sumamt, "fund_pay_sumamt": -back.fund_pay_sumamt,
                    "psn_part_amt": -(back.acct_pay + back.psn_cash_pay)}
        whole = back.medfee_sumamt == b.medfee_sumamt
        for f in ("fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt", "inscp_scp_amt", "act_pay_dedc"):
            amounts[f] = -getattr(b, f) if whole else None
        amounts["balc"] = self.engine.ledger.balance(chart.personal_account(person.person_id))
        posting = self.engine.ledger.get(void.void_key)
        at = dt.datetime.fromisoformat(posting.created_at) if posting is not None else self.clock.now()
        info = {"mdtrt_id": rec.mdtrt_id, "setl_id": void.void_key, "clr_optins": person.region,
                "setl_time": _time(at), **self._amounts(amounts, b), "medins_setl_id": c.msgid}
        return {"setlinfo": info, "setldetail": self._details(person, amounts, b)}

    def _settlement(self, c: Call, person: Person, care: str, b: Breakdown, cert_type: str, mdtrt_id: str,
                    setl_id: str | None, setl_time: str) -> dict[str, Any]:
        cat = self.codes.category[person.category]
        gend, birth = _born(person.person_id)
        amounts: dict[str, int | None] = {f: getattr(b, f) for f in MONEY}
        info = {
            "mdtrt_id": mdtrt_id, **({"setl_id": setl_id} if setl_id else {}), "psn_no": person.person_id,
            "psn_name": person.name, "psn_cert_type": "01", "certno": person.person_id, "gend": gend, "naty": None,
            "brdy": birth.isoformat() if birth else None, "age": _age(birth, self.clock.today()),
            "insutype": cat["insutype"], "psn_type": cat["psn_type"], "cvlserv_flag": "0", "setl_time": setl_time,
            "mdtrt_cert_type": cert_type, "med_type": self.codes.care[care]["med_type"],
            **self._amounts(amounts, b), "medins_setl_id": c.msgid, "clr_optins": person.region, "clr_way": "1",
            "clr_type": self.codes.care[care]["clr_type"],
        }
        return {"setlinfo": info, "setldetail": self._details(person, amounts, b)}

    def _amounts(self, amounts: dict[str, int | None], b: Breakdown) -> dict[str, Any]:
        """setlinfo's money fields in the specification's order: ours in yuan, funds we do not model 0."""
        def y(f: str) -> float | None:
            v = amounts.get(f)
            return None if v is None else yuan_out(v)

        base = b.inscp_scp_amt - b.act_pay_dedc
        prop = Fraction(b.hifp_pay, base) if base > 0 else Fraction(0)
        out: dict[str, Any] = {f: y(f) for f in ("medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay",
                                                 "preselfpay_amt", "inscp_scp_amt", "act_pay_dedc", "hifp_pay")}
        out["pool_prop_selfpay"] = ratio_out(prop)
        out |= {"cvlserv_pay": 0.0, "hifes_pay": 0.0, "hifmi_pay": y("hifmi_pay"), "hifob_pay": y("hifob_pay"),
                "maf_pay": y("maf_pay"), "oth_pay": 0.0, "fund_pay_sumamt": y("fund_pay_sumamt"),
                "psn_part_amt": y("psn_part_amt"), "acct_pay": y("acct_pay"), "psn_cash_pay": y("psn_cash_pay"),
                "hosp_part_amt": 0.0, "balc": y("balc"), "acct_mulaid_pay": 0.0}
        return out

    def _details(self, person: Person, amounts: dict[str, int | None], b: Breakdown) -> list[dict[str, Any]]:
        """setldetail: one row per fund (and the personal account) that paid."""
        insutype = self.codes.category[person.category]["insutype"]
        out = []
        for part in ("hifp_pay", "hifob_pay", "hifmi_pay", "maf_pay", "acct_pay"):
            amount = amounts.get(part) or 0
            if not amount:
                continue
            code = self.codes.fund_pay_type[part]
            code = code[insutype] if isinstance(code, dict) else code
            fund = part.removesuffix("_pay")
            info = "；".join(f"{yuan_out(p.lower):.2f}-{yuan_out(p.upper):.2f} 按{p.ratio}支付 {yuan_out(p.pay):.2f}"
                            for p in b.pieces if p.fund == fund) or None
            inscp = amounts.get("inscp_scp_amt")
            out.append({"fund_pay_type": code, "inscp_scp_amt": None if inscp is None else yuan_out(inscp),
                        "crt_payb_lmt_amt": None,
                        "fund_payamt": yuan_out(amount), "fund_pay_type_name": self.codes.fund_pay_type_name[code],
                        "setl_proc_info": info})
        return out

    # -- reconciliation: 3201, 3202 ----------------------------------------------------------------------
    def _book(self, c: Call, d: dict[str, Any]) -> list[Any]:
        first, last = d["stmt_begndate"], d["stmt_enddate"]
        if last < first:
            raise NationalError("对账结束日期(stmt_enddate)早于对账开始日期(stmt_begndate)", "stmt_enddate")
        since = dt.datetime.combine(first, dt.time(), CST)
        until = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), CST)
        entries = self.engine.medical.book(c.inst.code, self.clock.stamp(since), self.clock.stamp(until))
        out = []
        for e in entries:
            if e.region != d["setl_optins"]:
                continue
            if "clr_type" in d and self.codes.care[e.care]["clr_type"] != d["clr_type"]:
                continue
            if "insutype" in d and self.codes.category[e.category]["insutype"] != d["insutype"]:
                continue
            out.append(e)
        return out

    def reconcile_totals(self, c: Call) -> dict[str, Any]:
        d = c.input["data"]
        entries = self._book(c, d)
        centre = {"medfee_sumamt": sum(e.medfee_sumamt for e in entries),
                  "fund_pay_sumamt": sum(e.fund_pay_sumamt for e in entries),
                  "acct_pay": sum(e.acct_pay for e in entries),
                  "fixmedins_setl_cnt": sum({"settle": 1, "void": -1}.get(e.kind, 0) for e in entries)}
        diffs = []
        for f, v in centre.items():
            if d[f] != v:
                show = (lambda x: str(x)) if f == "fixmedins_setl_cnt" else (lambda x: f"{yuan_out(x):.2f}")
                diffs.append(f"{self.codes.fields[f].label}：医药机构 {show(d[f])}，中心 {show(v)}")
        return {"stmtinfo": {"setl_optins": d["setl_optins"], "stmt_rslt": "1" if diffs else "0",
                             "stmt_rslt_dscr": "；".join(diffs) if diffs else "平"}}

    def reconcile_details(self, c: Call) -> dict[str, Any]:
        """3202: the uploaded detail file (`_detail_rows`) against the institution's book of the period, one
        result line per settlement and per cancellation, either side: a zip holding result.txt, tab separated
        (psn_no, mdtrt_id, setl_id, msgid, stmt_rslt 0/1, refd_setl_flag, memo, medfee_sumamt,
        fund_pay_sumamt, acct_pay; `null` for an empty value), for 9102."""
        d = c.input["data"]
        kind, _, content = self.state.file(d["file_qury_no"], c.inst.code)
        if kind != "upload":
            raise NationalError("文件查询号(file_qury_no)不是上传的对账明细文件", "file_qury_no")
        rows = self._detail_rows(content)
        sums = {"medfee_sumamt": sum(r["medfee_sumamt"] for r in rows),
                "fund_pay_sumamt": sum(r["fund_pay_sumamt"] for r in rows),
                "cash_payamt": sum(r["medfee_sumamt"] - r["fund_pay_sumamt"] - r["acct_pay"] for r in rows),
                "fixmedins_setl_cnt": sum(1 if r["refd_setl_flag"] == "0" else -1 for r in rows)}
        for f, v in sums.items():
            if d[f] != v:
                raise NationalError(f"{self.codes.who(f)}与对账明细文件合计不符", f)
        entries = self._book(c, d)
        by_key = {e.key: e for e in entries}
        centre: dict[tuple[str, str], list[Any]] = {}
        for e in entries:
            centre.setdefault((e.setl_id, "0" if e.kind == "settle" else "1"), []).append(e)
        his: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in rows:
            setl_id = r["setl_id"]
            if r["refd_setl_flag"] == "1" and setl_id in by_key and by_key[setl_id].kind != "settle":
                setl_id = by_key[setl_id].setl_id  # the cancellation's own id -> the settlement it cancels
            his.setdefault((setl_id, r["refd_setl_flag"]), []).append(r)
        out = io.StringIO()
        w = csv.writer(out, delimiter="\t", lineterminator="\n")
        for key in sorted(set(centre) | set(his)):
            mine, theirs = centre.get(key, []), his.get(key, [])
            amounts = ("medfee_sumamt", "fund_pay_sumamt", "acct_pay")
            ours = {a: sum(getattr(e, a) for e in mine) for a in amounts}
            told = {a: sum(r[a] for r in theirs) for a in amounts}
            if not mine:
                memo, shown = "医药机构有，中心无", told
            elif not theirs:
                memo, shown = "中心有，医药机构无", ours
            elif ours != told:
                memo = "金额不符：" + "，".join(f"{self.codes.fields[a].label} 医药机构 {yuan_out(told[a]):.2f} 中心 "
                                           f"{yuan_out(ours[a]):.2f}" for a in amounts if ours[a] != told[a])
                shown = ours
            else:
                memo, shown = "", ours
            e = mine[0] if mine else None
            r = theirs[0] if theirs else None
            w.writerow([e.person_id if e else r["psn_no"], e.mdtrt_id if e else r["mdtrt_id"], key[0],
                        self._msgid_of(c, key[0]), "0" if not memo else "1", key[1], memo or "null",
                        *(f"{yuan_out(shown[a]):.2f}" for a in amounts)])
        file_qury_no = derived_id("R", c.key)
        name = f"{file_qury_no}.zip"
        until = self.state.put_file(file_qury_no, c.inst.code, "result", name, _zip("result.txt", out.getvalue()),
                                    FILE_KEEP)
        return {"fileinfo": {"file_qury_no": file_qury_no, "filename": name, "dld_endtime": _time(until)}}

    def _msgid_of(self, c: Call, setl_id: str) -> str:
        """The msgid a settlement made on this interface came with (institution code + serial), else null."""
        serial = setl_id.partition(":")[2]
        return c.inst.code + serial if len(serial) == 18 and serial.isdigit() else "null"

    def _detail_rows(self, content: bytes) -> list[dict[str, Any]]:
        """The rows of a 3202 detail file: a zip holding one UTF-8 text, tab separated (DETAIL_COLS, then an
        optional exp_content), `null` for an empty value."""
        try:
            with zipfile.ZipFile(io.BytesIO(content)) as z:
                names = [i for i in z.infolist() if not i.is_dir()]
                if len(names) != 1 or names[0].file_size > 8 * len(content) + 1_000_000:
                    raise NationalError("对账明细文件应为只含一个文本文件的 zip", "file_qury_no")
                text = z.read(names[0]).decode("utf-8-sig")
        except (zipfile.BadZipFile, UnicodeDecodeError):
            raise NationalError("对账明细文件应为 zip 压缩的 UTF-8 文本", "file_qury_no") from None
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            cells = line.split("\t")
            if len(cells) not in (len(DETAIL_COLS), len(DETAIL_COLS) + 1):
                raise NationalError(f"对账明细文件第{n}行应有 {len(DETAIL_COLS)} 列（制表符分隔），"
                                    f"收到 {len(cells)} 列", "file_qury_no")
            row: dict[str, Any] = {}
            where = f"对账明细文件第{n}行："
            for name, cell in zip(DETAIL_COLS, cells, strict=False):
                if cell in ("", "null"):
                    raise NationalError(f"{where}{self.codes.who(name)}不能为空", name)
                signed = name in ("medfee_sumamt", "fund_pay_sumamt", "acct_pay")
                row[name] = self.codes.value(name, cell, where, kind="signed_yuan" if signed else None)
            rows.append(row)
        return rows

    # -- files: 9101, 9102 -------------------------------------------------------------------------------
    def upload_file(self, c: Call) -> dict[str, Any]:
        d = c.input["fsUploadIn"]
        if d["fixmedins_code"] != c.inst.code:
            raise NationalError("fsUploadIn.定点医药机构编号(fixmedins_code)与报文不符", "fixmedins_code")
        file_qury_no = derived_id("F", c.key)
        until = self.state.put_file(file_qury_no, c.inst.code, "upload", d["filename"], d["in"], FILE_KEEP)
        return {"file_qury_no": file_qury_no, "filename": d["filename"], "dld_endtime": _time(until)}

    def download_file(self, c: Call) -> bytes:
        d = c.input["fsDownloadIn"]
        if d["fixmedins_code"] != c.inst.code:
            raise NationalError("fsDownloadIn.定点医药机构编号(fixmedins_code)与报文不符", "fixmedins_code")
        return self.state.file(d["file_qury_no"], c.inst.code)[2]


def _fen(yuan: Decimal) -> int:
    """Yuan (any number of decimals) -> fen, half up."""
    return int((yuan * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _zip(name: str, text: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0)), text.encode())
    return buf.getvalue()


def _is_time(digits: str) -> bool:
    """`digits` read as yyyyMMddHHmmss (as `strptime` reads them: tried first field by fixed width, which is
    cheaper and agrees whenever it succeeds)."""
    try:
        dt.datetime(int(digits[:4]), int(digits[4:6]), int(digits[6:8]), int(digits[8:10]), int(digits[10:12]),
                    int(digits[12:14]))
        return True
    except ValueError:
        pass
    try:
        dt.datetime.strptime(digits, "%Y%m%d%H%M%S")
    except ValueError:
        return False
    return True


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _parse(body: bytes) -> dict[str, Any]:
    try:
        env = json.loads(body.decode("utf-8"), parse_float=Decimal, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError):
        raise NationalError("报文不是合法的 UTF-8 JSON", "input") from None
    if not isinstance(env, dict):
        raise NationalError("报文应为 JSON 对象", "input")
    return env
