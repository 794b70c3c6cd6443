"""The national reader interface at the counter: what vendor reader bridges offer web pages, served by the daemon.

Hospital pages call card readers through one function set, implemented by a vendor DLL (SSCardDriver and
the like) and carried to the browser by a small local bridge over WebSocket or HTTP. This module is that
function set on the daemon's readers, so a page written for a vendor bridge switches to sscard by changing
the bridge's URL (transports: `terminal.routers.bridge`).

Functions (the DLL's signature, then what a page sends):

| function | DLL (every one returns `long`; pOutInfo is the output) | page message |
|---|---|---|
| `iReadCardBas` | `(int iType, char *pOutInfo)` | `{"function": "iReadCardBas", "iType": 3}` |
| `iReadCardBas_HSM_Step1` | `(int iType, char *pOutInfo)` | `..., "iType": 3` |
| `iReadCardBas_HSM_Step2` | `(char *pKey, char *pOutInfo)` | `..., "pKey": ..., "handle": ...` |
| `iVerifyPIN` | `(int iType, char *pOutInfo)` | `..., "iType": 3, "pPIN": "123456"` |
| `iChangePIN` | `(int iType, char *pOutInfo)` | `..., "iType": 3, "pOldPIN": ..., "pNewPIN": ...` |

Arguments come as named keys beside `function` (as the bridges' pages send them), or under `args` as an
object or a list in the DLL's order (`{"function": "iReadCardBas", "args": [3]}`); `reader` (optional)
names one of the daemon's user-card readers. The answer is `{"function", "functionName", "result",
"success", "pOutInfo", "message"}`: `result` is what the DLL returns (0, or a negative code), `success` is
what the WebSocket bridges put in their answers (1 on success, else the code), `pOutInfo` the output string
(the basic data, or the error's description), `message` the code's meaning (`reader_codes.toml`).
`tries_left` accompanies -51 and `handle` the HSM step 1.

- `iType`: 1 contact, 2 contactless, 3 automatic (contact first), 4 automatic (contactless first). The
  counter's readers are contact readers: 1, 3 and 4 read the contact card; 2 finds no card (-2).
- `iReadCardBas`: the basic data, `区号|社会保障号码|卡号|卡识别码|姓名|卡复位信息|规范版本|发卡日期|
  卡有效期|终端机编号|终端设备号|` (cardlib.basic.BasicInfo.national: ATR historical bytes, YYYYMMDD dates,
  the PSAM's terminal number, the terminal id as device number). With a PSAM or the HSM configured the
  card is authenticated too (INTERNAL AUTHENTICATE: -21 for a counterfeit) and a card that shows its holder
  data only to an authenticated terminal is read; without one such a card answers -2201 (no PSAM), and a
  PSAM without the card's keys -2203: a page then uses the HSM two-step below.
- `iReadCardBas_HSM_Step1`: EF05, INTERNAL AUTHENTICATE with a terminal random and GET CHALLENGE
  (cardlib.hsm_read); the output is what the centre's HSM needs:
  `区号|卡复位信息|算法标识|卡识别码|R1|R2|R3|R4|终端机编号|`. R1..R4 are the terminal random then the card's
  challenge, in 8-byte (16 hex digit) pieces: 4 pieces for SM4 (16-byte blocks), 2 and two empty fields
  for 3DES. The card's answer to the random stays on the terminal, with the challenge, under a `handle`
  (returned beside pOutInfo); the reader is held for this read until step 2 or `hsm_step_ttl` seconds.
- `iReadCardBas_HSM_Step2`: pKey is the HSM's answer `内部认证数据|外部认证数据|`: what the card must have
  answered to the random (compared with what it did answer: -25 when they differ, and nothing more is
  sent to the card) and the EXTERNAL AUTHENTICATE cryptogram for the challenge; then EF06 is read and
  the output is the basic data as iReadCardBas gives it. `handle` names the step 1 (without it: the
  caller's latest pending step 1 on that reader); a handle is good once, for the caller that got it
  (the WebSocket connection, or the bearer token over HTTP): anything else is -14 and touches no card.
- `iVerifyPIN` / `iChangePIN`: the PIN at the card (VERIFY; CHANGE PIN 80 5E). A vendor's reader takes
  the PIN on its own pad; here the page passes it (`pPIN`; `pOldPIN`, `pNewPIN`), as the PIN-as-argument
  variants of the DLLs do (iVerifyPINK / iChangePINK). The card is authenticated first when a PSAM or the
  HSM is configured, so a counterfeit never sees the PIN (-21). -51 carries `tries_left`, -52 is blocked.
  PINs are never logged nor kept.

Errors are data (`reader_codes.toml`): -1 card type, -2 no card, -4 no answer, -11 reader connection
(also: the reader is busy with another flow), -13 unknown function, -14 bad arguments, -15 data the
national string cannot carry, -20 bad card identification code, -21 internal authentication failed, -25
internal authentication disagrees with the HSM, -33 PIN length, -41/-42 pKey not hex / wrong length,
-51/-52 PIN, -2201 no PSAM, -2203 PSAM without the card's keys, and -SW for any other card status word. A
card on the counter's blacklist (terminal/blacklist.py, checked on every read, before any PIN) answers
-27265 (-0x6A81), as a card whose application is blocked does.

The two-step format (the 9 fields of step 1, pKey as two hex blocks each followed by `|`, the HSM computing
both the expected internal-authentication answer and the external cryptogram) is our reading of field
code, not of the specification: the step 1 string is documented field by field in HIS code that forwards
it to a centre service (区号, 卡复位信息, 算法标识, 卡识别码 and four random fields; a terminal code at
index 8 in another), and the HSM's answer comes back as "internal authentication data|external
authentication data|" (16-byte hex values for a card with algorithm flag 03).

Sources (public field code; facts only, nothing copied):
- a page's WebSocket reader library (ws://127.0.0.1:12342): `{'function': 'iReadCardBas', 'iType': iType}`,
  `{'function': 'iVerifyPIN', 'iType': ...}`, Step2 with `pKey`; answers read `functionName`, `success`
  ("1" or the code) and `pOutInfo`; step 1's fields [0] region, [2] algorithm flag, [8] terminal code; its
  error table (-1 ... -52, -2201 ... -2204, -25536 = -0x63C0 ... as -SW) and the codes that send a page to
  the HSM two-step (-2201, -2202, -2203, -27272, -24) (GitHub code search: "iReadCardBas_HSM_Step1" JS);
- a registration page (uni-app) sending `{'function': 'iReadCardBas', 'iType': 3}` and splitting pOutInfo
  on `|` ([1] social security number, [4] name), `success == -2` for no card;
- a Go bridge calling SSCardDriver (iReadCardBas, then on -2201/-2202/-2203/-27272/-24 Step1, a centre
  service, Step2 with `pKey` = "hex32|hex32|"); a HIS in C# doing the same (services 1903/1904: fields
  aab301, aaz507 ATR, aaa254 algorithm, aaz501 card id, aaa311..aaa314 randoms; answer aaa315 internal,
  aaa316 external authentication data joined as `a|b|`);
- DLL headers and P/Invoke declarations: `iReadCardBas(int iType, char* pOutInfo)`,
  `iReadCardBas_HSM_Step2(char *pKey, char *pOutInfo)`, `iVerifyPINK(int iType, string pPIN, ...)`,
  `iChangePINK(int iType, string pOldPIN, string pNewPIN, ...)`; iType 1 contact ... 4 contactless first;
- LD/T 6001.5-2023 (社会保障卡检测规范 第5部分：读写终端接口检测) lists the functions with these signatures.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
import tomllib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cardlib import errors as ce
from cardlib.crypto import suite_for
from cardlib.hsm_read import ALGORITHM_FLAGS, ReadState
from cardlib.readers.base import historical_bytes
from terminal.errors import TerminalError
from terminal.logs import event
from terminal.session import ReaderSession, SessionError

log = logging.getLogger(__name__)

CODES: dict[int, str] = {int(k): v for k, v in tomllib.loads(
    (Path(__file__).with_name("reader_codes.toml")).read_text(encoding="utf-8"))["codes"].items()}
OK, WRONG_CARD_TYPE, NO_CARD, NO_ANSWER, READER_ERROR = 0, -1, -2, -4, -11
UNSUPPORTED, BAD_ARGUMENT, BAD_DATA, BAD_CARD_ID = -13, -14, -15, -20
INTERNAL_AUTH_FAILED, DISAGREES_WITH_HSM, BAD_INPUT = -21, -25, -23
PIN_LENGTH, NOT_HEX, WRONG_LENGTH, PIN_WRONG, PIN_BLOCKED = -33, -41, -42, -51, -52
NO_PSAM, PSAM_WITHOUT_KEY = -2201, -2203
ITYPES = {1: "contact", 2: "contactless", 3: "contact first", 4: "contactless first"}
NATIONAL_FIELDS = 11
PIECE = 16  # hex digits per random field of step 1 (8 bytes)
UNKNOWN, USED, EXPIRED = "无效", "已使用过", "已过期"  # why a handle cannot be used


class BridgeError(Exception):
    """A national return code with what it means here."""

    def __init__(self, code: int, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or CODES.get(code, ""))
        self.code, self.detail, self.extra = code, detail or CODES.get(code, ""), extra


def describe(code: int) -> str:
    """A code's meaning: from the table, or the card status word it carries."""
    if code in CODES:
        return CODES[code]
    if -0xFFFF <= code < 0:
        return f"卡片返回状态字 {-code:04X}"
    return "未知错误"


@dataclass
class Answer:
    function: str
    result: int
    out: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"function": self.function, "functionName": self.function, "result": self.result,
                "success": 1 if self.result == OK else self.result, "pOutInfo": self.out,
                "message": describe(self.result), **self.extra}


# ---- arguments --------------------------------------------------------------------------------------------
def _int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, str) and v.strip().lstrip("-").isdigit())):
        raise BridgeError(BAD_ARGUMENT, f"{name} 应为整数")
    return int(v)


def _text(name: str, v: Any, limit: int = 256) -> str:
    if not isinstance(v, str) or len(v) > limit:
        raise BridgeError(BAD_ARGUMENT, f"{name} 应为不超过 {limit} 个字符的字符串")
    return v


def _itype(v: Any) -> int:
    n = _int("iType", v)
    if n not in ITYPES:
        raise BridgeError(BAD_ARGUMENT, "iType 应为 1（接触）、2（非接触）、3 或 4（自动寻卡）")
    return n


#: function -> its arguments in the DLL's order: (name, parser, required)
SIGNATURES: dict[str, tuple[tuple[str, Callable[[Any], Any], bool], ...]] = {
    "iReadCardBas": (("iType", _itype, True),),
    "iReadCardBas_HSM_Step1": (("iType", _itype, True),),
    "iReadCardBas_HSM_Step2": (("pKey", lambda v: _text("pKey", v), True),
                               ("handle", lambda v: _text("handle", v, 64), False)),
    "iVerifyPIN": (("iType", _itype, True), ("pPIN", lambda v: _text("pPIN", v, 32), True)),
    "iChangePIN": (("iType", _itype, True), ("pOldPIN", lambda v: _text("pOldPIN", v, 32), True),
                   ("pNewPIN", lambda v: _text("pNewPIN", v, 32), True)),
}
COMMON = {"reader": lambda v: _text("reader", v, 128)}


def parse_call(message: Any) -> tuple[str, dict[str, Any]]:
    """(function, arguments) of a page's message; BridgeError -13 for an unknown function, -14 otherwise."""
    if not isinstance(message, dict) or not isinstance(message.get("function"), str):
        raise BridgeError(BAD_ARGUMENT, '调用应为 JSON 对象 {"function": 函数名, 参数...}')
    name = message["function"]
    if name not in SIGNATURES:
        raise BridgeError(UNSUPPORTED, f"不支持函数 {name[:64]!r}；支持：{'、'.join(SIGNATURES)}")
    spec = SIGNATURES[name]
    given = {k: v for k, v in message.items() if k not in ("function", "args")}
    if "args" in message:
        args = message["args"]
        if isinstance(args, list):
            if len(args) > len(spec):
                raise BridgeError(BAD_ARGUMENT, f"{name} 最多 {len(spec)} 个参数")
            args = {s[0]: v for s, v in zip(spec, args, strict=False)}
        if not isinstance(args, dict):
            raise BridgeError(BAD_ARGUMENT, "args 应为对象或数组")
        both = set(args) & set(given)
        if both:
            raise BridgeError(BAD_ARGUMENT, f"参数 {sorted(both)[0]} 重复")
        given |= args
    known = {s[0] for s in spec} | set(COMMON)
    unknown = sorted(str(k) for k in given if k not in known)
    if unknown:
        raise BridgeError(BAD_ARGUMENT, f"{name} 没有参数 {unknown[0][:64]!r}")
    out = {}
    for arg, parse, required in spec:
        if arg in given:
            out[arg] = parse(given[arg])
        elif required:
            raise BridgeError(BAD_ARGUMENT, f"{name} 缺少参数 {arg}")
    for arg, parse in COMMON.items():
        if arg in given:
            out[arg] = parse(given[arg])
    return name, out


# ---- the pending HSM reads ------------------------------------------------------------------------------------
@dataclass
class Pending:
    handle: str
    caller: str
    session: ReaderSession
    state: ReadState
    hold: AbstractContextManager[Any]
    expires: float


class PendingReads:
    """Step 1s waiting for their step 2, each holding its reader; time is injected (`clock`)."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.clock = ttl, clock
        self._pending: dict[str, Pending] = {}
        self._spent: dict[str, str] = {}  # handle -> why it can no longer be used (bounded)
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def add(self, caller: str, session: ReaderSession, state: ReadState, hold: AbstractContextManager[Any]) -> str:
        handle = secrets.token_urlsafe(18)
        with self._lock:
            self._pending[handle] = Pending(handle, caller, session, state, hold, self.clock() + self.ttl)
        self._schedule()
        return handle

    def take(self, handle: str | None, caller: str, reader: str) -> Pending:
        """The pending read `handle` (or the caller's latest on `reader`), removed: good once."""
        with self._lock:
            if handle is None:
                mine = [p for p in self._pending.values() if p.caller == caller and p.session.name == reader]
                if not mine:
                    raise BridgeError(BAD_ARGUMENT, "该读卡器上没有待完成的 iReadCardBas_HSM_Step1，请先调用它")
                handle = mine[-1].handle
            p = self._pending.get(handle)
            if p is None:
                why = self._spent.get(handle, UNKNOWN)
                raise BridgeError(BAD_ARGUMENT, f"handle {why}，请重新调用 iReadCardBas_HSM_Step1")
            if p.caller != caller:
                raise BridgeError(BAD_ARGUMENT, f"handle {UNKNOWN}，请重新调用 iReadCardBas_HSM_Step1")
            del self._pending[handle]
            self._forget(handle, USED)
        return p

    def _forget(self, handle: str, why: str) -> None:
        self._spent[handle] = why
        while len(self._spent) > 1000:
            del self._spent[next(iter(self._spent))]

    def release(self, p: Pending) -> None:
        p.hold.__exit__(None, None, None)

    def drop(self, predicate: Callable[[Pending], bool], why: str) -> int:
        """Release the pending reads `predicate` picks (expired, or their caller went away)."""
        with self._lock:
            gone = [p for p in self._pending.values() if predicate(p)]
            for p in gone:
                del self._pending[p.handle]
                self._forget(p.handle, why)
        for p in gone:
            self.release(p)
            event("bridge.hsm_read_dropped", reader=p.session.name, why=why)
        return len(gone)

    def sweep(self) -> int:
        now = self.clock()
        return self.drop(lambda p: p.expires <= now, EXPIRED)

    def _schedule(self) -> None:
        """A timer that sweeps when the next pending read expires (on the real clock)."""
        with self._lock:
            if self._timer is not None or not self._pending:
                return
            delay = max(0.0, min(p.expires for p in self._pending.values()) - self.clock())
            self._timer = threading.Timer(delay + 0.05, self._tick)
            self._timer.daemon = True
            self._timer.start()

    def _tick(self) -> None:
        with self._lock:
            self._timer = None
        self.sweep()
        self._schedule()

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        self.drop(lambda p: True, "已关闭")


# ---- the card errors as national codes -----------------------------------------------------------------------
#: a blacklisted card's refusal (terminal/flows.py `screen`), as the bridge says it (the national interface has
#: no code of its own for it: the card is answered as locked, -0x6A81)
BLACKLISTED = {"CARD_REPORTED_LOST": "该卡已挂失", "CARD_CANCELLED": "该卡已注销",
               "CARD_REPLACED": "该卡已补换，旧卡失效"}


def code_of(e: Exception) -> BridgeError:
    """The national code of a card or reader failure (subclasses before their bases)."""
    if isinstance(e, BridgeError):
        return e
    if isinstance(e, ce.PinBlocked):
        return BridgeError(PIN_BLOCKED)
    if isinstance(e, ce.PinWrong):
        return BridgeError(PIN_WRONG, f"{CODES[PIN_WRONG]}，还可尝试 {e.tries_left} 次", tries_left=e.tries_left)
    if isinstance(e, ce.AuthenticationRequired):
        return BridgeError(NO_PSAM, "该卡只向经过认证的终端显示持卡人信息；本终端没有 PSAM 或加密机，"
                                    "请用加密机两步读卡")
    if isinstance(e, ce.CounterfeitCard):
        return BridgeError(INTERNAL_AUTH_FAILED)
    if isinstance(e, ce.ExternalAuthFailed):
        sw = 0x63C0 | e.tries_left if e.tries_left else 0x6983
        return BridgeError(-sw, f"外部认证失败：{e}")
    if isinstance(e, ce.CardBlocked):
        return BridgeError(-0x6A81, f"卡片或应用已锁定：{e}")
    if isinstance(e, TerminalError) and e.code in BLACKLISTED:  # the card is on the blacklist: refused as locked
        return BridgeError(-0x6A81, f"卡片或应用已锁定：{BLACKLISTED[e.code]}")
    if isinstance(e, ce.SecurityModuleError):
        return BridgeError(PSAM_WITHOUT_KEY, f"{CODES[PSAM_WITHOUT_KEY]}：{e}")
    if isinstance(e, ce.ItemUnreadable):
        return BridgeError(BAD_CARD_ID if e.item == "card_id" else BAD_DATA, str(e))
    if isinstance(e, ce.MalformedResponse):
        return BridgeError(BAD_DATA, str(e))
    if isinstance(e, (ce.NoCard, ce.CardRemoved)):
        return BridgeError(NO_CARD)
    if isinstance(e, ce.CardTimeout):
        return BridgeError(NO_ANSWER)
    if isinstance(e, ce.UnsupportedCard):
        return BridgeError(WRONG_CARD_TYPE, str(e))
    if isinstance(e, ce.StatusError):
        return BridgeError(-e.sw, str(e))
    if isinstance(e, (ce.TransportError, SessionError)):
        return BridgeError(READER_ERROR, str(e))
    return BridgeError(BAD_DATA, str(e))


def _hex_block(name: str, text: str, size: int) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise BridgeError(NOT_HEX, f"pKey 的{name}不是十六进制") from None
    if len(value) != size:
        raise BridgeError(WRONG_LENGTH, f"pKey 的{name}为 {len(value)} 字节，该卡的算法需要 {size} 字节")
    return value


def national_string(info, terminal_number: str, device: str) -> str:
    """The basic-data string; -15 when a field would carry the separator or a control character."""
    out = info.national(terminal_number, device)
    fields = out.split("|")
    if len(fields) != NATIONAL_FIELDS + 1 or any(not c.isprintable() for c in out):
        raise BridgeError(BAD_DATA, "卡内数据含分隔符 | 或控制字符，无法写成基本信息串")
    return out


def step1_string(state: ReadState, terminal_number: str) -> str:
    pieces = [(state.random + state.challenge)[i:i + PIECE] for i in range(0, len(state.random + state.challenge),
                                                                            PIECE)]
    pieces += [""] * (4 - len(pieces))
    fields = [state.region_code, historical_bytes(state.atr_bytes).hex().upper(), ALGORITHM_FLAGS[state.suite],
              state.card_id, *pieces, terminal_number]
    return "".join(f"{f}|" for f in fields)


# ---- the functions ---------------------------------------------------------------------------------------------
class ReaderBridge:
    """The national reader functions over a terminal's readers and security module."""

    def __init__(self, terminal, hsm_step_ttl: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.t = terminal
        self.pending = PendingReads(hsm_step_ttl, clock)

    def call(self, message: Any, caller: str) -> Answer:
        """Run one call; every outcome is an Answer (never an exception). `caller` scopes the HSM handles."""
        name = message.get("function") if isinstance(message, dict) and isinstance(message.get("function"), str) \
            else "?"
        try:
            name, args = parse_call(message)
            out, extra = getattr(self, name)(caller, **args)
            answer = Answer(name, OK, out, extra)
        except Exception as e:  # every failure is a code; an unexpected one is logged with its traceback
            if not isinstance(e, (BridgeError, ce.CardError, SessionError, TerminalError)):
                log.error("reader bridge: %s failed", name, exc_info=e)
            err = code_of(e)
            answer = Answer(name[:64], err.code, err.detail, err.extra)
        event("bridge.call", function=answer.function, result=answer.result, caller=":".join(caller.split(":")[:2]))
        return answer

    # -- helpers
    def _session(self, reader: str | None, itype: int) -> ReaderSession:
        s = self.t.session(reader)
        if itype == 2:
            raise BridgeError(NO_CARD, "这台读卡器只有接触式卡座，非接触区无卡")
        return s

    def _authenticated_card(self, s: ReaderSession):
        """The card's data, and the card authenticated when a PSAM or the HSM is configured."""
        info = s.ensure_read()
        self.t.screen(s, info)  # the blacklist, before anything else (a PIN) is done with the card
        sm = self.t.security
        if sm is not None and self.t.config.policy.require_card_auth:
            s.card.authenticate_card(sm)
        return info

    def _string(self, info) -> str:
        return national_string(info, self.t.terminal_number, self.t.config.terminal.id)

    # -- the national functions
    def iReadCardBas(self, caller: str, iType: int, reader: str | None = None) -> tuple[str, dict]:
        s = self._session(reader, iType)
        with s.claim("bridge:iReadCardBas"):
            s.info = None  # read the card afresh, as the DLL does
            return self._string(self._authenticated_card(s)), {}

    def iReadCardBas_HSM_Step1(self, caller: str, iType: int, reader: str | None = None) -> tuple[str, dict]:
        s = self._session(reader, iType)
        hold = s.claim("bridge:hsm-read")
        hold.__enter__()
        try:
            s.info = None
            s.card.connect()
            s.card_seen = True
            state = s.card.read_basic_step1()
        except BaseException:
            hold.__exit__(None, None, None)
            raise
        handle = self.pending.add(caller, s, state, hold)
        return step1_string(state, self.t.terminal_number), {"handle": handle}

    def iReadCardBas_HSM_Step2(self, caller: str, pKey: str, handle: str | None = None,
                               reader: str | None = None) -> tuple[str, dict]:
        p = self.pending.take(handle, caller, self.t.session(reader).name if handle is None else "")
        try:
            size = suite_for(p.state.suite).block
            parts = pKey.split("|")
            if len(parts) < 2 or parts[2:] not in ([], [""]):
                raise BridgeError(BAD_INPUT, "pKey 应为 内部认证数据|外部认证数据|（两段十六进制，各以 | 结尾）")
            expected = _hex_block("内部认证数据", parts[0], size)
            cryptogram = _hex_block("外部认证数据", parts[1], size)
            if not hmac.compare_digest(expected, bytes.fromhex(p.state.response)):
                raise BridgeError(DISAGREES_WITH_HSM)
            info = p.session.card.read_basic_step2(p.state, cryptogram)
            p.session.info = info
            self.t.screen(p.session, info)
            return self._string(info), {}
        finally:
            self.pending.release(p)

    def iVerifyPIN(self, caller: str, iType: int, pPIN: str, reader: str | None = None) -> tuple[str, dict]:
        _pin_form(pPIN)
        s = self._session(reader, iType)
        with s.claim("bridge:iVerifyPIN"):
            self._authenticated_card(s)
            s.card.verify_pin(pPIN)
        return "", {}

    def iChangePIN(self, caller: str, iType: int, pOldPIN: str, pNewPIN: str,
                   reader: str | None = None) -> tuple[str, dict]:
        _pin_form(pOldPIN)
        _pin_form(pNewPIN)
        s = self._session(reader, iType)
        with s.claim("bridge:iChangePIN"):
            self._authenticated_card(s)
            s.card.change_pin(pOldPIN, pNewPIN)
        return "", {}

    def forget(self, caller: str) -> int:
        """Release what `caller` (a closed WebSocket) left pending."""
        return self.pending.drop(lambda p: p.caller == caller, "调用方已断开")

    def close(self) -> None:
        self.pending.close()


def _pin_form(pin: str) -> None:
    """A PIN as the card takes it (4 to 12 digits), checked before any card sees it."""
    if not (pin.isascii() and pin.isdigit()):
        raise BridgeError(BAD_INPUT, "PIN 只能是数字")
    if not 4 <= len(pin) <= 12:
        raise BridgeError(PIN_LENGTH)
