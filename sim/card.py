"""A simulated social security card: an ISO 7816-4 file system with the card's commands.

It answers raw APDUs (`process(apdu) -> response`) the way a real card does: SELECT by AID and by FID,
READ RECORD as ISO 7816-4 addresses records (below), READ BINARY, VERIFY with a 3-try PIN counter (63Cx,
then 6983), CHANGE PIN, and in T=0 mode 61xx/GET RESPONSE and 6Cxx. The PIN is kept only as a salted hash.
Faults (garbage, truncated answers, wrong SW, slow or pulled card) are armed via `faults`.

READ RECORD (00 B2 P1 P2) and UPDATE RECORD (04 DC P1 P2), ISO 7816-4 with its Annex C record pointer:
- P2 b8..b4: SFI (the file becomes current and its record pointer is reset; 6A82 if no such file), or
  00000 for the current EF (6986 when there is none); 11111 is RFU (6A86). A transparent EF answers 6981.
- P2 b3..b1 = 100: record NUMBER P1; P1 = 00 is the current record (6A83 while the pointer is undefined).
  Reading by number leaves the record pointer where it was.
- P2 b3..b1 = 000/001/010/011: the first/last/next/previous record whose identifier (the SIMPLE-TLV tag)
  is P1; P1 = 00 matches any record. Next/previous count from the record pointer (from the start/end while
  it is undefined) and move it to the record read. A card built with `identifier_mode=False` refuses these
  with 6A86, as cards that only address by number do.
- P2 b3..b1 = 101/110 (several records) and 111 are not supported (6A86), nor is P1 = FF (RFU).
- 6A83 when no record matches; 6982 when the file needs a PIN or (third-generation cards built with
  `ef06_requires_auth`) the terminal's EXTERNAL AUTHENTICATE first.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from dataclasses import dataclass, field

from cardlib.apdu import CommandAPDU
from cardlib.errors import MalformedResponse
from cardlib.layout import RecordFile, RecordKind
from sim.card_security import SecurityCommands
from sim.faults import FaultSet
from sim.issuer import CardKeys

SW_OK = b"\x90\x00"


def _sw(v: int) -> bytes:
    return v.to_bytes(2, "big")


def make_atr(t0: bool, historical: bytes) -> bytes:
    """A valid ATR: T=0 only (no TCK), or T=0+T=1 with TCK, carrying `historical` bytes (max 15)."""
    k = len(historical)
    if k > 15:
        raise ValueError("at most 15 historical bytes")
    if t0:
        return bytes([0x3B, k]) + historical
    body = bytes([0x80 | k, 0x80, 0x01]) + historical  # T0: TD1 present; TD1: TD2 present, T=0; TD2: T=1
    tck = 0
    for x in body:
        tck ^= x
    return b"\x3b" + body + bytes([tck])


@dataclass
class EF:
    """A record EF (SIMPLE-TLV item records, or fixed-length cyclic records) or a transparent EF."""

    fid: int
    name: str
    sfi: int = 0
    records: list[bytes] = field(default_factory=list)
    kind: RecordKind = RecordKind.ITEMS
    binary: bytearray | None = None  # transparent EF when not None
    max_records: int = 0  # cyclic file when > 0
    record_length: int = 0  # fixed record length (0: records are TLVs of their own length)
    read_needs_pin: bool = False
    read_needs_auth: bool = False  # READ RECORD answers 6982 until EXTERNAL AUTHENTICATE succeeded

    def identifier(self, index: int) -> int | None:
        """The record identifier: the tag of a SIMPLE-TLV item record; cyclic records have none."""
        rec = self.records[index]
        return rec[0] if self.kind is RecordKind.ITEMS and rec else None

    @classmethod
    def from_layout(cls, f: RecordFile, records: list[bytes]) -> EF:
        return cls(f.fid, f.name, f.sfi, list(records), f.kind, max_records=f.max_records,
                   record_length=f.record_length)


@dataclass
class DF:
    fid: int
    name: str
    aid: bytes = b""
    children: dict[int, EF | DF] = field(default_factory=dict)
    parent: DF | None = field(default=None, repr=False)

    def add(self, node: EF | DF) -> EF | DF:
        self.children[node.fid] = node
        if isinstance(node, DF):
            node.parent = self
        return node

    def by_sfi(self, sfi: int) -> EF | None:
        for c in self.children.values():
            if isinstance(c, EF) and c.sfi == sfi:
                return c
        return None

    def walk(self):
        yield self
        for c in self.children.values():
            if isinstance(c, DF):
                yield from c.walk()


class PinCounter:
    """The holder PIN: a salted hash and a retry counter (3 tries, then blocked)."""

    def __init__(self, pin: str, tries: int = 3) -> None:
        self._salt = os.urandom(16)
        self._hash = self._digest(pin)
        self.max_tries = tries
        self.tries_left = tries

    def _digest(self, pin: str) -> bytes:
        return hmac.new(self._salt, pin.encode(), hashlib.sha256).digest()

    @property
    def blocked(self) -> bool:
        return self.tries_left == 0

    def check(self, pin: str) -> bool:
        ok = hmac.compare_digest(self._digest(pin), self._hash)
        self.tries_left = self.max_tries if ok else self.tries_left - 1
        return ok

    def set(self, pin: str) -> None:
        self._hash = self._digest(pin)
        self.tries_left = self.max_tries

    def unblock(self) -> None:
        self.tries_left = self.max_tries


def decode_bcd_pin(data: bytes) -> str | None:
    """BCD PIN bytes -> digits (trailing F allowed), or None when not a valid PIN encoding."""
    digits = data.hex().upper()
    if digits.endswith("F"):
        digits = digits[:-1]
    if not digits.isdigit() or not 4 <= len(digits) <= 12:
        return None
    return digits


class SimCard(SecurityCommands):
    """The card. Thread-safe: one APDU at a time (a real card is single-threaded too)."""

    def __init__(
        self,
        mf: DF,
        pin: str,
        *,
        t0: bool = False,
        atr: bytes | None = None,
        label: str = "",
        keys: CardKeys | None = None,
        identifier_mode: bool = True,
    ) -> None:
        self.mf = mf
        self.identifier_mode = identifier_mode
        self._init_security(keys)
        self.pin = PinCounter(pin)
        self.t0 = t0
        self.atr = atr or make_atr(t0, b"MOHRSS-SIM")
        self.label = label
        self.faults = FaultSet()
        self.present = True
        self.powered = False
        self.apdus = 0
        self._lock = threading.Lock()
        self._reset_state()

    # ---- power -----------------------------------------------------------------------------------------
    def _reset_state(self) -> None:
        self.cur_df: DF = self.mf
        self.cur_ef: EF | None = None
        self.cur_record: int | None = None  # record pointer (index) in cur_ef; None = undefined
        self.pin_verified = False
        self._pending = b""  # T=0 GET RESPONSE buffer
        self._reset_security()

    def power_on(self) -> bytes:
        if not self.present:
            raise ConnectionError("card removed")
        with self._lock:
            self._reset_state()
            self.powered = True
        return self.atr

    def power_off(self) -> None:
        with self._lock:
            self._reset_state()
            self.powered = False

    def pull(self) -> None:
        """Take the card out of the reader."""
        self.present = False
        self.powered = False

    def reinsert(self) -> None:
        self.present = True

    # ---- APDU entry point ------------------------------------------------------------------------------
    def process(self, apdu: bytes) -> bytes | None:
        """One C-APDU in, one R-APDU out. Raises ConnectionError when pulled, TimeoutError when mute."""
        if not self.present:
            raise ConnectionError("card removed")
        fault = self.faults.pick(apdu) if self.faults.armed else None
        if fault is not None:
            if fault.kind == "pull":
                self.pull()
                raise ConnectionError("card pulled during the command")
            if fault.kind == "mute":
                raise TimeoutError("card does not answer")
            if fault.kind == "slow":
                time.sleep(fault.delay)
            if fault.kind == "garbage":
                return self.faults.garbage()
            if fault.kind == "sw":
                return _sw(fault.sw)
        with self._lock:
            self.apdus += 1
            resp = self._dispatch(apdu)
        if fault is not None:
            if fault.kind == "truncate":
                return resp[: fault.length]
            if fault.kind == "no_sw":
                return resp[:-2]
        return resp

    def _dispatch(self, raw: bytes) -> bytes:
        try:
            cmd = CommandAPDU.from_bytes(raw)
        except (MalformedResponse, ValueError):
            return _sw(0x6700)
        if self.blocked_card:
            return _sw(0x6A81)
        if cmd.ins != 0xC0:
            self._pending = b""
        if cmd.cla not in (0x00, 0x04, 0x80, 0x84):
            return _sw(0x6E00)
        handler = self.handlers().get((cmd.cla & 0xF0 == 0x80, cmd.ins))
        if handler is None:
            return _sw(0x6D00)
        if self.blocked_here(cmd.ins):
            return _sw(0x6A81)
        return handler(cmd)

    def handlers(self):
        """(proprietary class?, INS) -> handler. Subclasses extend this table."""
        return {
            (False, 0xA4): self._select,
            (False, 0xB2): self._read_record,
            (False, 0xB0): self._read_binary,
            (False, 0x20): self._verify,
            (True, 0x5E): lambda cmd: self.pin_reload(cmd) if cmd.cla == 0x84 else self._change_pin(cmd),
            (False, 0xC0): self._get_response,
            **self.security_handlers(),
        }

    # ---- helpers ---------------------------------------------------------------------------------------
    def _respond(self, cmd: CommandAPDU, data: bytes) -> bytes:
        """Data answer with T=0 rules: 6Cxx for a wrong Le on a case-2 command, 61xx for case 4."""
        if self.t0:
            if cmd.data:  # case 4: data waits for GET RESPONSE
                if not data:
                    return SW_OK
                self._pending = data
                return _sw(0x6100 | min(len(data), 256) & 0xFF)
            le = cmd.le if cmd.le is not None else 256
            if le != 256 and le != len(data):
                return _sw(0x6C00 | (len(data) & 0xFF))
            if len(data) > 256:
                self._pending = data[256:]
                return data[:256] + _sw(0x6100 | min(len(self._pending), 256) & 0xFF)
            return data + SW_OK
        if cmd.le is None and data and not cmd.data:
            return _sw(0x6700)
        le = cmd.le if cmd.le is not None else 0
        if le and le not in (256, 65536) and le < len(data):
            return _sw(0x6C00 | (len(data) & 0xFF))
        return data + SW_OK

    def _get_response(self, cmd: CommandAPDU) -> bytes:
        if not self._pending:
            return _sw(0x6985)
        le = cmd.le if cmd.le is not None else 256
        if le > len(self._pending):
            return _sw(0x6C00 | (len(self._pending) & 0xFF))
        chunk, self._pending = self._pending[:le], self._pending[le:]
        if self._pending:
            return chunk + _sw(0x6100 | (min(len(self._pending), 256) & 0xFF))
        return chunk + SW_OK

    def _fci(self, node: EF | DF) -> bytes:
        body = b"\x83\x02" + node.fid.to_bytes(2, "big")
        if isinstance(node, DF) and node.aid:
            body += b"\x84" + bytes([len(node.aid)]) + node.aid
        return b"\x6f" + bytes([len(body)]) + body

    # ---- SELECT ----------------------------------------------------------------------------------------
    def _select(self, cmd: CommandAPDU) -> bytes:
        target: EF | DF | None = None
        if cmd.p1 == 0x04:  # by DF name (AID)
            for df in self.mf.walk():
                if df.aid and df.aid == cmd.data:
                    target = df
                    break
        elif cmd.p1 in (0x00, 0x01, 0x02) and len(cmd.data) == 2:
            fid = int.from_bytes(cmd.data, "big")
            if fid == self.mf.fid and cmd.p1 == 0x00:
                target = self.mf
            else:
                target = self.cur_df.children.get(fid)
                if target is None and cmd.p1 == 0x00 and self.cur_df.parent is not None:
                    target = self.cur_df.parent.children.get(fid)  # sibling DF
                if cmd.p1 == 0x01 and not isinstance(target, DF):
                    target = None
                if cmd.p1 == 0x02 and not isinstance(target, EF):
                    target = None
        elif cmd.p1 == 0x00 and not cmd.data:
            target = self.mf
        else:
            return _sw(0x6A86)
        if target is None:
            return _sw(0x6A82)
        if isinstance(target, DF) and self.blocked_apps.get(target.name):
            return _sw(0x9303)  # blocked for good: not selected
        if isinstance(target, DF):
            self.cur_df, self.cur_ef = target, None
        else:
            self.cur_ef = target
        self.cur_record = None
        if isinstance(target, DF) and target.name in self.blocked_apps:
            return _sw(0x6283)  # blocked until unblocked: selected, with a warning and no FCI
        if cmd.p2 & 0x0C == 0x0C:
            return SW_OK
        fci = self._fci(target)
        if not self.t0:
            return fci + SW_OK if cmd.le is not None else SW_OK
        self._pending = fci
        return _sw(0x6100 | len(fci))

    # ---- READ RECORD / READ BINARY -----------------------------------------------------------------------
    def _record_file(self, sfi: int) -> EF | bytes:
        """The record EF a record command names (SFI, or 0 for the current EF), or the SW to answer."""
        if sfi == 0x1F:
            return _sw(0x6A86)
        ef = self.cur_ef if sfi == 0 else self.cur_df.by_sfi(sfi)
        if ef is None:
            return _sw(0x6986 if sfi == 0 else 0x6A82)
        if ef.binary is not None:
            return _sw(0x6981)
        if sfi:
            self.cur_ef, self.cur_record = ef, None
        return ef

    def _record_mode_ok(self, p1: int, mode: int) -> bool:
        return p1 != 0xFF and (mode == 4 or (mode < 4 and self.identifier_mode))

    def _locate(self, ef: EF, p1: int, mode: int) -> int | bytes:
        """The index of the record P1/mode addresses in `ef` (ISO 7816-4 Annex C), or 6A83."""
        n, cp = len(ef.records), self.cur_record
        if mode == 4:  # record number P1; 00 = the current record
            if p1 == 0:
                return cp if cp is not None else _sw(0x6A83)
            return p1 - 1 if p1 <= n else _sw(0x6A83)
        order = {
            0: range(n),  # first occurrence
            1: range(n - 1, -1, -1),  # last occurrence
            2: range(0 if cp is None else cp + 1, n),  # next occurrence
            3: range(n - 1 if cp is None else cp - 1, -1, -1),  # previous occurrence
        }[mode]
        for i in order:
            if p1 == 0 or ef.identifier(i) == p1:
                self.cur_record = i
                return i
        return _sw(0x6A83)

    def read_allowed(self, ef: EF) -> bool:
        return (not ef.read_needs_pin or self.pin_verified) and (not ef.read_needs_auth or self.ext_auth)

    def _read_record(self, cmd: CommandAPDU) -> bytes:
        if not self._record_mode_ok(cmd.p1, cmd.p2 & 0x07):
            return _sw(0x6A86)
        ef = self._record_file(cmd.p2 >> 3)
        if isinstance(ef, bytes):
            return ef
        if not self.read_allowed(ef):
            return _sw(0x6982)
        i = self._locate(ef, cmd.p1, cmd.p2 & 0x07)
        if isinstance(i, bytes):
            return i
        return self._respond(cmd, ef.records[i])

    def _read_binary(self, cmd: CommandAPDU) -> bytes:
        if cmd.p1 & 0x80:
            ef = self.cur_df.by_sfi(cmd.p1 & 0x1F)
            offset = cmd.p2
        else:
            ef = self.cur_ef
            offset = (cmd.p1 << 8) | cmd.p2
        if ef is None:
            return _sw(0x6986)
        if ef.binary is None:
            return _sw(0x6981)
        if ef is not self.cur_ef:
            self.cur_ef, self.cur_record = ef, None
        if offset > len(ef.binary):
            return _sw(0x6B00)
        le = cmd.le if cmd.le is not None else 256
        data = bytes(ef.binary[offset : offset + le])
        if len(data) < le and le not in (256, 65536):
            return data + _sw(0x6282)  # end of file reached before Le bytes
        return data + SW_OK

    # ---- PIN -------------------------------------------------------------------------------------------
    def _verify(self, cmd: CommandAPDU) -> bytes:
        if cmd.p1 != 0x00 or cmd.p2 != 0x00:
            return _sw(0x6A86)
        if self.pin.blocked:
            return _sw(0x6983)
        if not cmd.data:
            return SW_OK if self.pin_verified else _sw(0x63C0 | self.pin.tries_left)
        pin = decode_bcd_pin(cmd.data)
        if pin is None:
            return _sw(0x6A80)
        if self.pin.check(pin):
            self.pin_verified = True
            return SW_OK
        self.pin_verified = False
        return _sw(0x6983) if self.pin.blocked else _sw(0x63C0 | self.pin.tries_left)

    def _change_pin(self, cmd: CommandAPDU) -> bytes:
        if cmd.p1 != 0x01 or cmd.p2 != 0x00:
            return _sw(0x6A86)
        if self.pin.blocked:
            return _sw(0x6983)
        parts = cmd.data.split(b"\xff")
        if len(parts) != 2:
            return _sw(0x6A80)
        old, new = (decode_bcd_pin(p) for p in parts)
        if old is None or new is None:
            return _sw(0x6A80)
        if not self.pin.check(old):
            self.pin_verified = False
            return _sw(0x6983) if self.pin.blocked else _sw(0x63C0 | self.pin.tries_left)
        self.pin.set(new)
        return SW_OK
