"""The national medical security platform's interface as the terminal's upstream (`[centre] dialect = "national"`).

The counter's flows speak `terminal.centre.Centre`; this client turns each call into the platform's
transactions, as a hospital HIS sends them (envelope, field names and code tables from the platform's
specification as public HIS integration code retells it; settlement/api/national_codes.toml cites the sources):

- register a visit: 1101 person and insurance by card (mdtrt_cert_type 03, card number and identifier), then
  2201 (outpatient) or 2401 (admission);
- pre-settle: 2204 fee details under a fresh charge batch, then 2206 (inpatient: 2302 of all, 2301, 2303);
- settle: 2204 under the settlement's own batch, then 2207 with the split 2204 answered (inpatient: 2302,
  2301, 2402 discharge, 2304);
- reverse a settlement (void): 2208 (2305), also for one whose answer was lost: its setl_id is the terminal
  id and the 2207 msgid's serial, and the centre leaves a tombstone;
- sign-in: 9001 before the first message, and again when the centre refuses the sign_no.

Envelope: `msgid` = institution code + yyyyMMddHHmmss + 4-digit sequence. A money-moving message (2201,
2401, 2207, 2304, 2208, 2305) carries the journal entry's serial there, so the centre's idempotency key
(`{terminal_id}:{serial}`, settlement/api/national.py) is the journal's key: a resend returns the first
answer, reconciliation matches the journal line by line, and a settlement made here is refunded, voided or
looked up natively under the same id. The journal allocates such serials (`msgid_serial`); the other
messages (9001, 1101, 2204-2206, 2301-2303, 2402) take one from the clock and a counter.

Amounts are yuan with two decimals on the wire, sent as JSON numbers (fen / 100 prints exactly) and read
exactly (`Decimal`): an answer carrying a fraction of a fen is refused (`MalformedAnswer`), never rounded.
Answers become the values the flows know (`settlement.wire`: Visit, PreSettlement, Settlement, Void in fen).

What the platform has no transaction for goes to sscard's native API of the same centre (`[centre] others =
"native"`, the default: same URL, same key) or is refused with `NOT_AVAILABLE_IN_DIALECT` (`others =
"none"`): refunds (the platform only cancels a whole settlement, 2208, and that is what a void does; a
refund is the native one), a visit looked up by id or a settlement's outcome for recovery (the platform has
no query by id: without the native API, recovery cancels every settlement left in flight with 2208, as a HIS
does after a timeout), pension certification, collection and status, identity certification, the card
blacklist and card status. Fee lines must carry their catalogue code (`med_list_codg`): the platform
classes an item from its own catalogue, never from the line's `chrgitm_lv`.

An infcode -1 is the typed error of the engine code it names ("…（ALREADY_REVERSED: …）"), else
`NationalRefusal` (INVALID_REQUEST, with the centre's Chinese message naming the field); no answer is
`ServiceUnreachable`, as on the native API.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import httpx

from settlement.api.client import SettlementClient, error_from
from settlement.errors import InvalidRequest, ServiceUnreachable, SettlementError, Unauthorized, UnknownTransaction
from settlement.wire import (
    Breakdown,
    FeeLineIn,
    PreSettlement,
    Refund,
    RefundParts,
    Settlement,
    Visit,
    Void,
)
from terminal.centre import NativeCentre, NotInDialect, Outcome
from terminal.clock import CHINA as CST
from terminal.clock import utc_now

if TYPE_CHECKING:
    from terminal.config import TerminalConfig

PATH = "/fsi/api/rsfComIfsService/callService"
ENGINE_CODE = re.compile(r"（([A-Z][A-Z_]+): ")
SIGN_NO = "(sign_no)"  # the field a refused sign_no's message names
KEY_REFUSED = "X-Terminal-Key"  # named by the message refusing the terminal's key
MED_TYPE = {"outpatient": "11", "inpatient": "21"}
SETTLE = {"outpatient": "2207", "inpatient": "2304"}
PRESETTLE = {"outpatient": "2206", "inpatient": "2303"}
CANCEL = {"outpatient": "2208", "inpatient": "2305"}
MONEY = ("medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt", "inscp_scp_amt", "act_pay_dedc",
         "hifp_pay", "hifob_pay", "hifmi_pay", "maf_pay", "fund_pay_sumamt", "psn_part_amt", "acct_pay",
         "psn_cash_pay", "balc")
FEE_SUMS = {"fulamt_ownpay_amt": "fulamt_ownpay_amt", "overlmt_selfpay": "overlmt_amt",
            "preselfpay_amt": "preselfpay_amt", "inscp_scp_amt": "inscp_scp_amt"}  # 2207 field <- 2204 field
VISITS_KEPT = 10_000


class NationalRefusal(InvalidRequest):  # type: ignore[misc, valid-type]
    """The platform refused a message (infcode -1) for a reason of its own: its message names the field."""


class MalformedAnswer(SettlementError):
    """The platform answered something that is not its reply (or an amount that is not whole fen)."""

    code = "MALFORMED_ANSWER"
    http_status = 502


def msgid_serial(last: int, now: dt.datetime) -> int:
    """The journal serial after `last` as a msgid's tail: yyyyMMddHHmmss (China time) and a 4-digit sequence,
    always above `last` (a clock set back keeps counting from the last one; 10,000 in one second move on to
    the next second)."""
    floor = int(now.astimezone(CST).strftime("%Y%m%d%H%M%S")) * 10_000
    if last + 1 >= floor and (last + 1) % 10_000 == 0:  # the sequence of that second is spent
        second = dt.datetime.strptime(str(last // 10_000), "%Y%m%d%H%M%S") + dt.timedelta(seconds=1)
        return int(second.strftime("%Y%m%d%H%M%S")) * 10_000
    return max(last + 1, floor)


def fen_of(value: Any, name: str) -> int:
    """A yuan amount of an answer as integer fen, exactly (MalformedAnswer otherwise)."""
    try:
        d = Decimal(str(value)) * 100
    except (InvalidOperation, ValueError):
        raise MalformedAnswer(f"the platform answered {name} = {value!r}, not an amount", field=name) from None
    if d != d.to_integral_value() or not d.is_finite():
        raise MalformedAnswer(f"the platform answered {name} = {value!r} yuan, not a whole number of fen",
                              field=name)
    return int(d)


def yuan_of(fen: int) -> float:
    """Fen as the JSON number the platform takes (it prints as the exact two-decimal value)."""
    return fen / 100


@dataclass(frozen=True)
class VisitRef:
    """What the platform's visit messages need beside the visit id."""

    psn_no: str
    insutype: str
    insuplc: str
    care: str
    card_no: str | None = None


class NationalCentre:
    """The national platform interface behind `terminal.centre.Centre`."""

    dialect = "national"

    def __init__(self, http: httpx.Client, *, fixmedins_code: str, fixmedins_name: str, region: str, level: str,
                 native: NativeCentre | None, opter: str = "counter", opter_name: str = "收费员",
                 dept_code: str = "MZ", dept_name: str = "门诊", caty: str = "A03", doctor: str = "counter",
                 doctor_name: str = "收费员", path: str = PATH,
                 clock: Callable[[], dt.datetime] = utc_now) -> None:
        self.http, self.path, self.native, self.clock = http, path, native, clock
        self.inst, self.inst_name, self.region, self.level = fixmedins_code, fixmedins_name, region, level
        self.opter, self.opter_name = opter, opter_name
        self.dept = {"code": dept_code, "name": dept_name, "caty": caty, "dr": doctor, "dr_name": doctor_name}
        self.sign_no = ""
        self._sign_lock = threading.Lock()
        self._seq = itertools.count(1)
        self._probe = self._aux_serial()  # the health probe's msgid tail
        self._visits: OrderedDict[str, VisitRef] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: TerminalConfig, client: SettlementClient,
                    clock: Callable[[], dt.datetime] = utc_now) -> NationalCentre:
        c, t = cfg.centre, cfg.terminal
        native = NativeCentre(client) if c.others == "native" else None
        return cls(client.http, fixmedins_code=t.institution, fixmedins_name=t.institution_name or t.institution,
                   region=t.region, level=t.institution_level, native=native, opter=c.opter,
                   opter_name=c.opter_name, dept_code=c.dept_code, dept_name=c.dept_name, caty=c.caty,
                   doctor=c.doctor, doctor_name=c.doctor_name, path=c.path, clock=clock)

    # ---- the envelope ------------------------------------------------------------------------------------------
    def _aux_serial(self) -> str:
        return f"{self.clock().astimezone(CST):%Y%m%d%H%M%S}{next(self._seq) % 10_000:04d}"

    def _post(self, infno: str, input: dict[str, Any], serial: str | None, insuplc: str) -> dict[str, Any]:
        now = self.clock().astimezone(CST)
        env = {
            "infno": infno, "msgid": f"{self.inst}{serial or self._aux_serial()}", "mdtrtarea_admvs": self.region,
            "insuplc_admdvs": insuplc, "recer_sys_code": "YBXT", "dev_no": "", "dev_safe_info": "", "cainfo": "",
            "signtype": "", "infver": "V1.0", "opter_type": "1", "opter": self.opter, "opter_name": self.opter_name,
            "inf_time": f"{now:%Y-%m-%d %H:%M:%S}", "fixmedins_code": self.inst, "fixmedins_name": self.inst_name,
            "sign_no": self.sign_no, "input": input,
        }
        body = json.dumps(env, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            r = self.http.post(self.path, content=body, headers={"Content-Type": "application/json"})
        except httpx.TimeoutException as e:
            raise ServiceUnreachable(f"no answer from the platform to {infno} in time ({e.__class__.__name__})",
                                     infno=infno, outcome_unknown=True) from e
        except httpx.TransportError as e:
            raise ServiceUnreachable(f"cannot reach the platform: {e}", infno=infno,
                                     outcome_unknown=not isinstance(e, httpx.ConnectError)) from e
        if r.status_code != 200:  # the platform answers 200; anything else is the gateway's
            raise error_from(r.status_code, _json_or_none(r))
        try:
            reply = json.loads(r.content, parse_float=Decimal)
        except ValueError:
            raise MalformedAnswer(f"the platform's answer to {infno} is not JSON", infno=infno) from None
        if not isinstance(reply, dict) or reply.get("infcode") not in (0, -1):
            raise MalformedAnswer(f"the platform's answer to {infno} has no infcode 0 or -1", infno=infno)
        return reply

    def call(self, infno: str, input: dict[str, Any], *, serial: str | None = None, insuplc: str = "") -> Any:
        """One transaction's output; signs in first (and again when the sign_no is refused); a refusal raises
        its typed error."""
        if infno != "9001" and not self.sign_no:
            self.sign_in()
        reply = self._post(infno, input, serial, insuplc)
        if reply["infcode"] == -1 and infno != "9001" and SIGN_NO in str(reply.get("err_msg")):
            self.sign_in(renew=True)
            reply = self._post(infno, input, serial, insuplc)
        if reply["infcode"] == -1:
            raise refusal(infno, str(reply.get("err_msg") or ""))
        return reply.get("output") or {}

    def _sign_in_input(self) -> dict[str, Any]:
        return {"signIn": {"opter_no": self.opter, "mac": "00-00-00-00-00-00", "ip": "127.0.0.1"}}

    def sign_in(self, renew: bool = False) -> str:
        """9001: the sign_no every later message carries."""
        with self._sign_lock:
            if self.sign_no and not renew:
                return self.sign_no
            out = self._post("9001", self._sign_in_input(), None, "")
            if out["infcode"] != 0:
                raise refusal("9001", str(out.get("err_msg") or ""))
            try:
                self.sign_no = str(out["output"]["signinoutb"]["sign_no"])
            except (KeyError, TypeError):
                raise MalformedAnswer("the platform's sign-in answer has no sign_no") from None
            return self.sign_no

    # ---- visits ----------------------------------------------------------------------------------------------
    def _remember(self, mdtrt_id: str, ref: VisitRef) -> None:
        with self._lock:
            self._visits[mdtrt_id] = ref
            self._visits.move_to_end(mdtrt_id)
            while len(self._visits) > VISITS_KEPT:
                self._visits.popitem(last=False)

    def _person(self, cert_type: str, cert_no: str, card_sn: str | None = None) -> tuple[str, str, str]:
        """1101: (psn_no, insutype, insuplc_admdvs) of the person a credential names."""
        data = {"mdtrt_cert_type": cert_type, "mdtrt_cert_no": cert_no, **({"card_sn": card_sn} if card_sn else {})}
        out = self.call("1101", {"data": data})
        try:
            insu = out["insuinfo"][0]
            return str(out["baseinfo"]["psn_no"]), str(insu["insutype"]), str(insu["insuplc_admdvs"])
        except (KeyError, IndexError, TypeError):
            raise MalformedAnswer("the platform's 1101 answer has no baseinfo/insuinfo") from None

    def _cached(self, mdtrt_id: str | None) -> VisitRef | None:
        with self._lock:
            return self._visits.get(mdtrt_id or "")

    def _visit_ref(self, mdtrt_id: str, visit: Visit | None) -> VisitRef:
        """What the platform's messages need about a visit: remembered from its registration here, else from
        the terminal's record of it (`visit`) or the native API (the platform has no query by visit id), with
        1101 by the person's id for the insurance."""
        ref = self._cached(mdtrt_id)
        if ref is not None:
            return ref
        if visit is None:
            visit = self._native("looking a visit up by its id").visit(mdtrt_id)
        psn_no, insutype, insuplc = self._person("02", visit.person_id)
        ref = VisitRef(psn_no, insutype, insuplc, visit.care)
        self._remember(mdtrt_id, ref)
        return ref

    def register_visit(self, *, serial: str, person_id: str, institution: str, care: str,
                       card_no: str | None = None, card_id: str | None = None) -> Visit:
        if card_no:
            psn_no, insutype, insuplc = self._person("03", card_no, card_id)
            cert = {"mdtrt_cert_type": "03", "mdtrt_cert_no": card_no}
        else:
            psn_no, insutype, insuplc = self._person("02", person_id)
            cert = {"mdtrt_cert_type": "02", "mdtrt_cert_no": person_id}
        if psn_no != person_id:
            raise NationalRefusal(f"the platform knows this card as person {psn_no}, the card says {person_id}",
                                  field="psn_no")
        begntime = self.clock().astimezone(CST)
        base = {"psn_no": psn_no, "insutype": insutype, "begntime": f"{begntime:%Y-%m-%d %H:%M:%S}", **cert}
        d = self.dept
        if care == "outpatient":
            out = self.call("2201", {"data": base | {
                "ipt_otp_no": f"MZ{serial}", "atddr_no": d["dr"], "dr_name": d["dr_name"], "dept_code": d["code"],
                "dept_name": d["name"], "caty": d["caty"]}}, serial=serial, insuplc=insuplc)
            mdtrt_id = _field(out, "data", "mdtrt_id")
        else:
            out = self.call("2401", {"mdtrtinfo": base | {
                "med_type": MED_TYPE["inpatient"], "ipt_no": f"ZY{serial}", "atddr_no": d["dr"],
                "chfpdr_name": d["dr_name"], "adm_diag_dscr": "-", "adm_dept_codg": d["code"],
                "adm_dept_name": d["name"], "adm_bed": "-", "dscg_maindiag_code": "-", "dscg_maindiag_name": "-"}},
                serial=serial, insuplc=insuplc)
            mdtrt_id = _field(out, "result", "mdtrt_id")
        self._remember(mdtrt_id, VisitRef(psn_no, insutype, insuplc, care, card_no))
        return Visit(mdtrt_id=mdtrt_id, person_id=psn_no, institution=self.inst, insured_region=insuplc,
                     treatment_region=self.region, level=self.level, care=care, begntime=begntime.date(),
                     status="registered")

    def visit(self, mdtrt_id: str) -> Visit:
        return self._native("looking a visit up by its id").visit(mdtrt_id)

    # ---- fees and settlement ------------------------------------------------------------------------------------
    def _upload(self, ref: VisitRef, mdtrt_id: str, lines: list[FeeLineIn], batch: str) -> dict[str, int]:
        """2204 (inpatient: 2302 of all, then 2301) under `batch`; the sums of the amounts the platform
        answered per line, in fen, for the settlement message."""
        now = f"{self.clock().astimezone(CST):%Y-%m-%d %H:%M:%S}"
        details = []
        for i, ln in enumerate(lines, 1):
            if not ln.med_list_codg:
                raise InvalidRequest(f"fee line {i}: the national platform classes items by their catalogue code: "
                                     "med_list_codg is needed", field="med_list_codg", line=i)
            amount = yuan_of(ln.det_item_fee_sumamt)
            details.append({
                "feedetl_sn": f"{batch}-{i}", "mdtrt_id": mdtrt_id, "psn_no": ref.psn_no, "chrg_bchno": batch,
                "fee_ocur_time": now, "med_list_codg": ln.med_list_codg, "medins_list_codg": ln.med_list_codg,
                "det_item_fee_sumamt": amount, "cnt": 1, "pric": amount, "bilg_dept_codg": self.dept["code"],
                "bilg_dept_name": self.dept["name"], "bilg_dr_codg": self.dept["dr"],
                "bilg_dr_name": self.dept["dr_name"]} | (
                {"med_type": MED_TYPE["inpatient"]} if ref.care == "inpatient" else {}))
        if ref.care == "inpatient":
            self.call("2302", {"data": [{"feedetl_sn": "0000", "mdtrt_id": mdtrt_id, "psn_no": ref.psn_no}]},
                      insuplc=ref.insuplc)
        out = self.call("2204" if ref.care == "outpatient" else "2301", {"feedetail": details}, insuplc=ref.insuplc)
        sums = dict.fromkeys(FEE_SUMS, 0)
        for row in _rows(out, "result"):
            for mine, theirs in FEE_SUMS.items():
                sums[mine] += fen_of(row.get(theirs, 0), theirs)
        return sums

    def _bill(self, ref: VisitRef, mdtrt_id: str, lines: list[FeeLineIn], batch: str, use_account: bool,
              card_no: str | None) -> dict[str, Any]:
        sums = self._upload(ref, mdtrt_id, lines, batch)
        cert = ({"mdtrt_cert_type": "03", "mdtrt_cert_no": card_no} if card_no
                else {"mdtrt_cert_type": "02", "mdtrt_cert_no": ref.psn_no})
        data = {"psn_no": ref.psn_no, **cert, "medfee_sumamt": yuan_of(sum(x.det_item_fee_sumamt for x in lines)),
                "psn_setlway": "01", "mdtrt_id": mdtrt_id, "insutype": ref.insutype,
                "acct_used_flag": "1" if use_account else "0"}
        if ref.care == "outpatient":  # the split by catalogue class, as 2204 answered it: the centre checks it
            return data | {"med_type": MED_TYPE["outpatient"], "chrg_bchno": batch,
                           **{k: yuan_of(v) for k, v in sums.items()}}
        return data | {"mid_setl_flag": "0"}

    def presettle(self, *, mdtrt_id: str, lines: list[FeeLineIn], use_account: bool = True,
                  visit: Visit | None = None) -> PreSettlement:
        ref = self._visit_ref(mdtrt_id, visit)
        data = self._bill(ref, mdtrt_id, lines, f"P{self._aux_serial()}", use_account, None)
        out = self.call(PRESETTLE[ref.care], {"data": data}, insuplc=ref.insuplc)
        info = _node(out, "setlinfo")
        return PreSettlement(mdtrt_id=mdtrt_id, person_id=ref.psn_no, insured_region=ref.insuplc,
                             treatment_region=self.region, breakdown=breakdown_of(info))

    def settle(self, *, serial: str, mdtrt_id: str, lines: list[FeeLineIn], use_account: bool = True,
               card_no: str | None = None, card_id: str | None = None, visit: Visit | None = None) -> Settlement:
        ref = self._visit_ref(mdtrt_id, visit)
        batch = f"S{serial}"
        data = self._bill(ref, mdtrt_id, lines, batch, use_account, card_no or ref.card_no)
        if ref.care == "inpatient":
            self._discharge(ref, mdtrt_id)
        out = self.call(SETTLE[ref.care], {"data": data}, serial=serial, insuplc=ref.insuplc)
        info = _node(out, "setlinfo")
        at = _time(info.get("setl_time"))
        return Settlement(setl_id=str(info.get("setl_id") or ""), mdtrt_id=mdtrt_id, person_id=ref.psn_no,
                          institution=self.inst, insured_region=ref.insuplc, treatment_region=self.region,
                          cross_region=ref.insuplc != self.region, setl_time=at.isoformat(), year=at.year,
                          breakdown=breakdown_of(info))

    def _discharge(self, ref: VisitRef, mdtrt_id: str) -> None:
        """2402 before an inpatient settlement (a stay already discharged is left as it is)."""
        now = f"{self.clock().astimezone(CST):%Y-%m-%d %H:%M:%S}"
        try:
            self.call("2402", {"dscginfo": {"mdtrt_id": mdtrt_id, "psn_no": ref.psn_no, "insutype": ref.insutype,
                                            "endtime": now, "dscg_dept_codg": self.dept["code"],
                                            "dscg_dept_name": self.dept["name"], "dscg_way": "1"}},
                      insuplc=ref.insuplc)
        except NationalRefusal as e:
            if "已办理出院" not in e.message:
                raise

    def void(self, *, serial: str, setl_id: str, mdtrt_id: str | None = None, person_id: str | None = None,
             visit: Visit | None = None) -> Void:
        """2208 (2305 for a stay). The visit as remembered, recorded or looked up natively; without any of them
        (others = "none", a visit registered elsewhere) 1101 gives the insurance place and the care is tried as
        outpatient first, then as a stay when the platform says it is one."""
        ref = self._cached(mdtrt_id)
        if ref is None and visit is not None:
            ref = VisitRef(visit.person_id, "", visit.insured_region, visit.care)
        if ref is None and mdtrt_id and self.native is not None:
            ref = self._visit_ref(mdtrt_id, None)
        if ref is None:
            if not (mdtrt_id and person_id):
                raise InvalidRequest("the platform cancels a settlement by visit and person (2208): both are needed",
                                     field="mdtrt_id")
            ref = VisitRef(person_id, "", self._person("02", person_id)[2], "outpatient")
        data = {"data": {"setl_id": setl_id, "mdtrt_id": mdtrt_id, "psn_no": ref.psn_no}}
        try:
            out = self.call(CANCEL[ref.care], data, serial=serial, insuplc=ref.insuplc)
        except NationalRefusal as e:
            if ref.care != "outpatient" or "不是门诊就诊" not in e.message:
                raise
            out = self.call(CANCEL["inpatient"], data, serial=serial, insuplc=ref.insuplc)
        info = _node(out, "setlinfo")
        back = {p: -fen_of(info.get(p), p) for p in ("medfee_sumamt", "hifp_pay", "hifob_pay", "hifmi_pay",
                                                          "maf_pay", "fund_pay_sumamt", "acct_pay", "psn_cash_pay")}
        arrived = back["medfee_sumamt"] != 0
        return Void(void_key=str(info.get("setl_id") or ""), setl_id=setl_id,
                    status="voided" if arrived else "voided_before_arrival",
                    reversed=RefundParts(**back) if arrived else None)

    # ---- what the platform has no transaction for ----------------------------------------------------------
    def _native(self, what: str) -> NativeCentre:
        if self.native is None:
            raise NotInDialect(f"the national platform interface has no transaction for {what} "
                               "([centre] others = \"native\" sends it to the native API)", operation=what)
        return self.native

    def refund(self, *, serial: str, setl_id: str, amount: int | None = None, reason: str | None = None,
               operator: str | None = None, card_no: str | None = None, card_id: str | None = None) -> Refund:
        return self._native("refunds (it cancels whole settlements only: 2208)").refund(
            serial=serial, setl_id=setl_id, amount=amount, reason=reason, operator=operator, card_no=card_no,
            card_id=card_id)

    def settlement_outcome(self, setl_id: str) -> Outcome:
        if self.native is None:  # no query by id on the platform: a settlement in flight is cancelled (2208)
            raise UnknownTransaction(f"{setl_id}: the national platform has no settlement query; cancel it",
                                     key=setl_id)
        return self.native.settlement_outcome(setl_id)

    def __getattr__(self, name: str) -> Any:
        """Every other `Centre` call (pensions, certification, cards...) has no transaction on the platform: the
        native API's, or NOT_AVAILABLE_IN_DIALECT."""
        if name.startswith("_") or not callable(getattr(NativeCentre, name, None)):
            raise AttributeError(name)
        if self.__dict__.get("native") is not None:
            return getattr(self.native, name)

        def refused(*_args: Any, **_kw: Any) -> Any:
            self._native(name)

        return refused

    def health(self) -> dict[str, str]:
        """The native API's health, or else a sign-in under one fixed msgid (the platform answers it again
        with the same sign_no, so a probe records nothing new)."""
        if self.native is not None:
            return self.native.health()
        reply = self._post("9001", self._sign_in_input(), self._probe, "")
        if reply["infcode"] != 0:
            raise refusal("9001", str(reply.get("err_msg") or ""))
        return {"status": "ok"}

    def close(self) -> None:
        if self.native is not None:
            self.native.close()
        else:
            self.http.close()


# ---- answers ---------------------------------------------------------------------------------------------------
def refusal(infno: str, err_msg: str) -> SettlementError:
    """An infcode -1 as a typed error: the engine's code when the message names one."""
    if KEY_REFUSED in err_msg:
        return Unauthorized(err_msg, infno=infno)
    m = ENGINE_CODE.search(err_msg)
    if m:
        err = error_from(400, {"code": m.group(1), "message": err_msg, "details": {"infno": infno}})
        if type(err) is not SettlementError:
            return err
    return NationalRefusal(err_msg or f"the platform refused {infno}", infno=infno)


def breakdown_of(info: dict[str, Any]) -> Breakdown:
    """setlinfo's amounts (yuan) as a Breakdown in fen; identities checked."""
    try:
        b = Breakdown(**{f: fen_of(info.get(f), f) for f in MONEY})
        b.check()
    except (AssertionError, ValueError) as e:
        raise MalformedAnswer(f"the platform's settlement does not add up: {e}") from None
    return b


def _json_or_none(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return None


def _node(out: Any, name: str) -> dict[str, Any]:
    node = out.get(name) if isinstance(out, dict) else None
    if not isinstance(node, dict):
        raise MalformedAnswer(f"the platform's answer has no {name}")
    return node


def _rows(out: Any, name: str) -> list[dict[str, Any]]:
    rows = out.get(name) if isinstance(out, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise MalformedAnswer(f"the platform's answer has no {name} list")
    return rows


def _field(out: Any, node: str, name: str) -> str:
    value = _node(out, node).get(name)
    if not isinstance(value, str) or not value:
        raise MalformedAnswer(f"the platform's answer has no {node}.{name}")
    return value


def _time(text: Any) -> dt.datetime:
    try:
        return dt.datetime.strptime(str(text), "%Y-%m-%d %H:%M:%S").replace(tzinfo=CST)
    except ValueError:
        raise MalformedAnswer(f"the platform's setl_time {text!r} is not yyyy-MM-dd HH:mm:ss") from None
