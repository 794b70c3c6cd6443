"""APDU traces: what went over the wire to a card, as JSON lines, with timings and secrets masked.

One JSON object per line, `type` first:

    {"type": "trace", "version": 1, "reader": "...", "started": "2026-11-30T08:00:00+00:00", "tool": "..."}
    {"type": "connect", "t": 0.0, "ms": 0.412, "atr": "3B8F8001..."}
    {"type": "apdu", "n": 1, "t": 0.52, "ms": 0.118, "name": "SELECT", "c": "00A404000F7378...", "r": "9000"}
    {"type": "apdu", "n": 2, "t": 0.71, "ms": 0.101, "name": "VERIFY", "c": "0020000003******", "r": "9000"}
    {"type": "apdu", "n": 3, "t": 0.9, "ms": 5000.2, "name": "READ RECORD", "c": "00B2012C00",
     "error": "CardTimeout", "message": "..."}
    {"type": "disconnect", "t": 1.2}

`t` is seconds since the trace started, `ms` the call's duration. `c` and `r` are upper-case hex; a masked
byte is written `**` (PIN digits, authentication cryptograms, MACs: `SECRET_DATA_INS` says which), so a
trace can be handed over from a counter without handing over the holder's PIN or the terminal's keys.
An `apdu` record has `r` (the card answered) or `error` (the transport failed: the error class and message).

`TracingReader` writes a trace while a reader is used (`sscard card read --trace FILE`); `read_trace`
loads one; sim's replay card plays one back (sim/replay.py).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cardlib.errors import CardError, MalformedResponse
from cardlib.readers.base import Reader

VERSION = 1
MASK = "**"
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

#: INS -> command name, for traces and error messages (ISO 7816-4 and the social security card's own).
INS_NAMES: dict[int, str] = {
    0x0E: "ERASE BINARY",
    0x16: "CARD BLOCK",
    0x1E: "APPLICATION BLOCK",
    0x20: "VERIFY",
    0x24: "PIN UNBLOCK",
    0x5E: "CHANGE PIN",
    0x82: "EXTERNAL AUTHENTICATE",
    0x84: "GET CHALLENGE",
    0x88: "INTERNAL AUTHENTICATE",
    0xA4: "SELECT",
    0xB0: "READ BINARY",
    0xB2: "READ RECORD",
    0xC0: "GET RESPONSE",
    0xCA: "GET DATA",
    0xD6: "UPDATE BINARY",
    0xDC: "UPDATE RECORD",
    0xE2: "APPEND RECORD",
}

#: MAC length of secure-messaging commands (cardlib.crypto.MAC_SIZE, repeated to keep this module leaf-like)
_MAC = 4


#: Commands whose whole data a trace never shows: VERIFY and CHANGE PIN (80 5E) carry PIN digits, PIN RELOAD
#: (84 5E) and PIN UNBLOCK a new PIN and a MAC, EXTERNAL AUTHENTICATE the terminal's cryptogram. Any other
#: secure-messaging command (CLA 04 or 84) has its trailing MAC masked.
SECRET_DATA_INS: frozenset[int] = frozenset({0x20, 0x5E, 0x24, 0x82})


def ins_name(apdu: bytes) -> str:
    if len(apdu) < 2:
        return "?"
    return INS_NAMES.get(apdu[1], f"INS {apdu[1]:02X}")


def describe_apdu(apdu: bytes) -> str:
    """A command by name and header, never its data: 'READ RECORD (00 B2 07 2C)'."""
    apdu = bytes(apdu)
    return f"{ins_name(apdu)} ({apdu[:4].hex(' ').upper()})"


def _data_span(apdu: bytes) -> tuple[int, int]:
    """(start, end) of a C-APDU's command data (short or extended Lc); (0, 0) when it has none."""
    n = len(apdu)
    if n <= 5:
        return 0, 0
    if apdu[4] != 0:
        lc = apdu[4]
        return (5, 5 + lc) if n >= 5 + lc else (0, 0)
    if n >= 7:
        lc = int.from_bytes(apdu[5:7], "big")
        return (7, 7 + lc) if lc and n >= 7 + lc else (0, 0)
    return 0, 0


def masked_hex(apdu: bytes) -> str:
    """The C-APDU as hex with its secret bytes written `**` (see SECRET_DATA_INS)."""
    apdu = bytes(apdu)
    start, end = _data_span(apdu)
    hidden: tuple[int, int] | None = None
    if end > start:
        if apdu[1] in SECRET_DATA_INS:
            hidden = (start, end)
        elif apdu[0] in (0x04, 0x84) and end - start >= _MAC:
            hidden = (end - _MAC, end)
    if hidden is None:
        return apdu.hex().upper()
    a, b = hidden
    return apdu[:a].hex().upper() + MASK * (b - a) + apdu[b:].hex().upper()


def matches(pattern: str, apdu: bytes) -> bool:
    """Whether `apdu` is the command a trace recorded as `pattern` (masked bytes match any byte)."""
    if len(pattern) != 2 * len(apdu):
        return False
    got = bytes(apdu).hex().upper()
    for i in range(0, len(pattern), 2):
        p = pattern[i : i + 2]
        if p != MASK and p != got[i : i + 2]:
            return False
    return True


# ---- writing --------------------------------------------------------------------------------------------
class TraceWriter:
    """Appends trace records to a JSON-lines stream, flushed at each record (a hang still leaves the trace)."""

    def __init__(self, out: IO[str], *, reader: str = "", tool: str = "sscard",
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.out = out
        self.clock = clock
        self.t0 = clock()
        self.count = 0
        self.write({"type": "trace", "version": VERSION, "reader": reader,
                    "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "tool": tool})

    def write(self, record: dict[str, Any]) -> None:
        self.out.write(_encode(record) + "\n")
        self.out.flush()

    def since(self, t: float) -> float:
        return round(t - self.t0, 6)

    def apdu(self, command: bytes, t_start: float, t_end: float, response: bytes | None = None,
             error: BaseException | None = None) -> None:
        self.count += 1
        rec: dict[str, Any] = {"type": "apdu", "n": self.count, "t": self.since(t_start),
                               "ms": round((t_end - t_start) * 1e3, 3), "name": ins_name(command),
                               "c": masked_hex(command)}
        if error is None:
            rec["r"] = bytes(response or b"").hex().upper()
        else:
            rec["error"] = type(error).__name__
            rec["message"] = str(error)
        self.write(rec)

    def event(self, kind: str, t_start: float, t_end: float | None = None, **fields: Any) -> None:
        rec: dict[str, Any] = {"type": kind, "t": self.since(t_start)}
        if t_end is not None:
            rec["ms"] = round((t_end - t_start) * 1e3, 3)
        rec.update(fields)
        self.write(rec)


class TracingReader(Reader):
    """A reader that writes every connect, APDU and transport error of `inner` to a TraceWriter.

    Everything else (close, wait_for_card, timeout...) is the inner reader's.
    """

    def __init__(self, inner: Reader, writer: TraceWriter) -> None:
        self.inner = inner
        self.writer = writer
        self.name = inner.name

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def atr(self) -> bytes:  # type: ignore[override]
        return self.inner.atr

    def _connecting(self, kind: str, fn: Callable[[], bytes]) -> bytes:
        clock = self.writer.clock
        t = clock()
        try:
            atr = fn()
        except CardError as e:
            self.writer.event(kind, t, clock(), error=type(e).__name__, message=str(e))
            raise
        self.writer.event(kind, t, clock(), atr=bytes(atr).hex().upper())
        return atr

    def connect(self) -> bytes:
        return self._connecting("connect", self.inner.connect)

    def reconnect(self) -> bytes:
        return self._connecting("reconnect", self.inner.reconnect)

    def transmit(self, apdu: bytes) -> bytes:
        clock = self.writer.clock
        t = clock()
        try:
            resp = self.inner.transmit(apdu)
        except CardError as e:
            self.writer.apdu(apdu, t, clock(), error=e)
            raise
        self.writer.apdu(apdu, t, clock(), resp)
        return resp

    def disconnect(self) -> None:
        self.writer.event("disconnect", self.writer.clock())
        self.inner.disconnect()

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        close() if close else self.inner.disconnect()

    def __exit__(self, *exc: object) -> None:
        self.inner.__exit__(*exc)


# ---- reading --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TraceRecord:
    """One line of a trace."""

    type: str
    fields: dict[str, Any]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


def parse_trace(lines: Iterator[str] | list[str]) -> list[TraceRecord]:
    """Parse trace lines; MalformedResponse naming the line when one is not a trace record."""
    out: list[TraceRecord] = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise MalformedResponse(f"trace line {i} is not JSON: {e}") from e
        if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
            raise MalformedResponse(f"trace line {i} has no record type")
        if i == 1 and (obj["type"] != "trace" or obj.get("version") != VERSION):
            raise MalformedResponse(f"not a version {VERSION} APDU trace (line 1: {line.strip()[:80]})")
        if obj["type"] == "apdu" and not (isinstance(obj.get("c"), str) and ("r" in obj or "error" in obj)):
            raise MalformedResponse(f"trace line {i}: an apdu record needs 'c' and 'r' or 'error'")
        out.append(TraceRecord(obj["type"], obj))
    if not out:
        raise MalformedResponse("empty trace")
    return out


def read_trace(path: str | Path) -> list[TraceRecord]:
    with open(path, encoding="utf-8") as f:
        return parse_trace(list(f))
