"""A hospital HIS talking to the national medical security platform, as public integration code writes it:
plain dicts, the specification's field names, amounts in yuan, one POST per transaction with the standard
envelope. Written from the public descriptions (see settlement/api/national_codes.toml for the sources),
not from sscard's models: it imports nothing of settlement, so the conformance tests and the bench check
sscard's interface against what a HIS sends and expects.

    his = His(http, key="...", fixmedins_code="H11010500001", fixmedins_name="...", mdtrtarea_admvs="110000")
    his.sign_in()                                          # 9001: keeps sign_no for later messages
    out = his.ok("1101", {"data": {"mdtrt_cert_type": "03", "mdtrt_cert_no": card, "card_sn": sn}})
    reply = his.call("2207", {...}, insuplc_admdvs="110000")   # the whole reply, amounts as Decimal

Amounts in replies are parsed exactly (`Decimal`); `fen(x)` turns one into integer fen and fails if it is
not a whole number of fen.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import json
import zipfile
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any

import httpx

PATH = "/fsi/api/rsfComIfsService/callService"
CST = dt.timezone(dt.timedelta(hours=8))


def fen(amount: Decimal | int | float | str) -> int:
    """A reply's yuan amount as integer fen (AssertionError if it carries a fraction of a fen)."""
    d = Decimal(str(amount)) * 100
    assert d == d.to_integral_value(), f"{amount} yuan is not a whole number of fen"
    return int(d)


def yuan(f: int) -> str:
    """Fen as the yuan string a HIS sends ("12.30")."""
    sign = "-" if f < 0 else ""
    return f"{sign}{abs(f) // 100}.{abs(f) % 100:02d}"


class _Encoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, Decimal):
            return float(o)  # a JSON number, as HIS code serialises its decimals
        return super().default(o)


class His:
    """One HIS (one institution, one terminal key) on the national interface."""

    def __init__(self, http: httpx.Client, *, key: str, fixmedins_code: str, fixmedins_name: str,
                 mdtrtarea_admvs: str, clock: Callable[[], dt.datetime] | None = None, opter: str = "0001",
                 path: str = PATH) -> None:
        self.http, self.key, self.path = http, key, path
        self.fixmedins_code, self.fixmedins_name, self.region = fixmedins_code, fixmedins_name, mdtrtarea_admvs
        self.clock = clock or (lambda: dt.datetime.now(CST))
        self.opter = opter
        self.sign_no = ""
        self._seq = itertools.count(1)

    def msgid(self) -> str:
        """定点医药机构编号 + yyyyMMddHHmmss + 4-digit sequence."""
        now = self.clock().astimezone(CST)
        return f"{self.fixmedins_code}{now:%Y%m%d%H%M%S}{next(self._seq) % 10000:04d}"

    def envelope(self, infno: str, input: dict[str, Any], *, insuplc_admdvs: str = "",
                 msgid: str | None = None) -> dict[str, Any]:
        now = self.clock().astimezone(CST)
        return {
            "infno": infno, "msgid": msgid or self.msgid(), "mdtrtarea_admvs": self.region,
            "insuplc_admdvs": insuplc_admdvs, "recer_sys_code": "YBXT", "dev_no": "", "dev_safe_info": "",
            "cainfo": "", "signtype": "", "infver": "V1.0", "opter_type": "1", "opter": self.opter,
            "opter_name": "收费员", "inf_time": f"{now:%Y-%m-%d %H:%M:%S}", "fixmedins_code": self.fixmedins_code,
            "fixmedins_name": self.fixmedins_name, "sign_no": self.sign_no, "input": input,
        }

    def post(self, envelope: dict[str, Any] | bytes) -> httpx.Response:
        body = envelope if isinstance(envelope, bytes) else json.dumps(envelope, ensure_ascii=False, cls=_Encoder)
        return self.http.post(self.path, content=body, headers={"X-Terminal-Key": self.key,
                                                                "Content-Type": "application/json"})

    def call(self, infno: str, input: dict[str, Any], **kw: Any) -> dict[str, Any]:
        """Send one transaction; the reply as parsed JSON (HTTP 200 asserted)."""
        r = self.post(self.envelope(infno, input, **kw))
        assert r.status_code == 200, (r.status_code, r.text)
        reply: dict[str, Any] = json.loads(r.text, parse_float=Decimal)
        return reply

    def ok(self, infno: str, input: dict[str, Any], **kw: Any) -> Any:
        """Send one transaction and return its output (AssertionError with err_msg unless infcode 0)."""
        reply = self.call(infno, input, **kw)
        assert reply["infcode"] == 0, f"{infno}: {reply['err_msg']}"
        return reply["output"]

    def sign_in(self) -> str:
        out = self.ok("9001", {"signIn": {"opter_no": self.opter, "mac": "00-16-3E-00-00-01", "ip": "10.0.0.8"}})
        self.sign_no = out["signinoutb"]["sign_no"]
        return self.sign_no

    def download(self, file_qury_no: str, filename: str) -> bytes:
        """9102: the file's bytes (the platform answers the file itself)."""
        r = self.post(self.envelope("9102", {"fsDownloadIn": {"file_qury_no": file_qury_no, "filename": filename,
                                                              "fixmedins_code": self.fixmedins_code}}))
        assert r.status_code == 200 and not r.headers["content-type"].startswith("application/json"), r.text
        return r.content


def detail_file(rows: Iterable[Sequence[Any]]) -> bytes:
    """The 3202 detail file: a zip holding one UTF-8 text, one settlement per line, tab separated
    (setl_id, mdtrt_id, psn_no, medfee_sumamt, fund_pay_sumamt, acct_pay, refd_setl_flag)."""
    text = "".join("\t".join(str(c) for c in row) + "\n" for row in rows)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("detail.txt", text)
    return buf.getvalue()


def result_rows(zipped: bytes) -> list[list[str]]:
    """The rows of a 3202 result file (result.txt in the zip 9102 answers), tab separated."""
    with zipfile.ZipFile(io.BytesIO(zipped)) as z:
        text = z.read("result.txt").decode("utf-8")
    return [line.split("\t") for line in text.splitlines() if line]
