"""ISO 7816-4 command and response APDUs, and the channel that sends them.

`CommandAPDU` encodes the four cases in short or extended form and parses raw bytes back (the simulator
uses that). `ResponseAPDU` splits data and SW and raises the typed error for the SW. `CardChannel` sends
commands over a transport and hides T=0 behaviour: 61xx -> GET RESPONSE until all data is in; 6Cxx ->
the same command again with the Le the card asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from cardlib.errors import MalformedResponse, StatusError, WrongLe, error_for_sw
from cardlib.trace import describe_apdu

SW_OK = 0x9000
MAX_SHORT_LC = 255
MAX_SHORT_LE = 256
MAX_EXTENDED = 65536
#: GET RESPONSE rounds accepted before the card is declared hostile (each may carry up to 256 bytes).
MAX_GET_RESPONSE = 64


@dataclass(frozen=True, slots=True)
class CommandAPDU:
    """A command APDU. `le` None = no response data expected; 256 (short) or 65536 (extended) = 'all'."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None

    def __post_init__(self) -> None:
        for name in ("cla", "ins", "p1", "p2"):
            v = getattr(self, name)
            if not 0 <= v <= 0xFF:
                raise ValueError(f"{name} out of range: {v}")
        if len(self.data) > MAX_EXTENDED - 1:
            raise ValueError(f"command data too long: {len(self.data)}")
        if self.le is not None and not 0 <= self.le <= MAX_EXTENDED:
            raise ValueError(f"Le out of range: {self.le}")

    @property
    def extended(self) -> bool:
        """True when the command needs the extended-length form."""
        return len(self.data) > MAX_SHORT_LC or (self.le is not None and self.le > MAX_SHORT_LE)

    def to_bytes(self, extended: bool | None = None) -> bytes:
        ext = self.extended if extended is None else extended
        out = bytearray((self.cla, self.ins, self.p1, self.p2))
        lc, le = len(self.data), self.le
        if not ext:
            if lc:
                out.append(lc)
                out += self.data
            if le is not None:
                out.append(le & 0xFF)  # 256 -> 00
            return bytes(out)
        if lc:
            out += b"\x00" + lc.to_bytes(2, "big") + self.data
            if le is not None:
                out += (le & 0xFFFF).to_bytes(2, "big")
        elif le is not None:
            out += b"\x00" + (le & 0xFFFF).to_bytes(2, "big")
        return bytes(out)

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    def with_le(self, le: int) -> CommandAPDU:
        return CommandAPDU(self.cla, self.ins, self.p1, self.p2, self.data, le)

    @classmethod
    def from_bytes(cls, raw: bytes) -> CommandAPDU:
        """Parse a C-APDU in any of the 7 encodings (case 1, 2S/E, 3S/E, 4S/E). Raises MalformedResponse."""
        raw = bytes(raw)
        if len(raw) < 4:
            raise MalformedResponse(f"command APDU shorter than 4 bytes: {raw.hex()}")
        cla, ins, p1, p2 = raw[:4]
        body = raw[4:]
        n = len(body)
        if n == 0:
            return cls(cla, ins, p1, p2)
        if n == 1:  # case 2S
            return cls(cla, ins, p1, p2, b"", body[0] or 256)
        if body[0] != 0 or n < 3:  # short form: case 3S or 4S
            lc = body[0]
            if lc == 0:
                raise MalformedResponse("short Lc of 0")
            if n == 1 + lc:
                return cls(cla, ins, p1, p2, body[1:])
            if n == 2 + lc:
                return cls(cla, ins, p1, p2, body[1:-1], body[-1] or 256)
            raise MalformedResponse(f"Lc {lc} does not match body length {n}")
        # extended forms start with 00
        if n == 3:  # case 2E
            le = int.from_bytes(body[1:3], "big")
            return cls(cla, ins, p1, p2, b"", le or MAX_EXTENDED)
        lc = int.from_bytes(body[1:3], "big")
        if lc == 0:
            raise MalformedResponse("extended Lc of 0")
        if n == 3 + lc:
            return cls(cla, ins, p1, p2, body[3:])
        if n == 5 + lc:
            le = int.from_bytes(body[-2:], "big")
            return cls(cla, ins, p1, p2, body[3:-2], le or MAX_EXTENDED)
        raise MalformedResponse(f"extended Lc {lc} does not match body length {n}")


@dataclass(frozen=True, slots=True)
class ResponseAPDU:
    """A response APDU: data plus status word."""

    data: bytes
    sw: int

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    @property
    def ok(self) -> bool:
        return self.sw == SW_OK

    @classmethod
    def from_bytes(cls, raw: bytes) -> ResponseAPDU:
        if len(raw) < 2:
            raise MalformedResponse(f"response shorter than a status word: {bytes(raw).hex() or '(empty)'}")
        raw = bytes(raw)
        return cls(raw[:-2], int.from_bytes(raw[-2:], "big"))

    def to_bytes(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")

    def check(self) -> ResponseAPDU:
        """Return self on 9000 (and 62xx/63xx warnings other than 63Cx); raise the typed error otherwise."""
        if self.sw == SW_OK:
            return self
        raise error_for_sw(self.sw)


class Transport(Protocol):
    """What a reader gives the channel: raw bytes in, raw bytes out (see cardlib.readers)."""

    def transmit(self, apdu: bytes) -> bytes: ...


@dataclass
class CardChannel:
    """Sends CommandAPDUs over a transport; handles T=0 61xx/6Cxx; counts APDUs on the wire."""

    transport: Transport
    apdu_count: int = 0
    log: list[tuple[bytes, bytes]] | None = field(default=None, repr=False)

    def _raw(self, cmd: CommandAPDU) -> ResponseAPDU:
        raw_cmd = cmd.to_bytes()
        raw = self.transport.transmit(raw_cmd)
        self.apdu_count += 1
        if self.log is not None:
            self.log.append((raw_cmd, bytes(raw)))
        try:
            return ResponseAPDU.from_bytes(raw)
        except MalformedResponse as e:
            raise MalformedResponse(f"{_named(cmd)}: {e}") from None

    def send(self, cmd: CommandAPDU) -> ResponseAPDU:
        """Send one command; return the complete response (any SW). Raises only for malformed answers."""
        resp = self._raw(cmd)
        if resp.sw1 == 0x6C:
            if cmd.le is None:
                raise MalformedResponse(f"{_named(cmd)}: card asked for Le {resp.sw2} on a command without Le")
            resp = self._raw(cmd.with_le(resp.sw2 or 256))
            if resp.sw1 == 0x6C:
                raise WrongLe(resp.sw, f"{_named(cmd)}: card asked for a different Le twice")
        if resp.sw1 == 0x61 and cmd.le is not None:
            data = bytearray(resp.data)
            for _ in range(MAX_GET_RESPONSE):
                resp = self._raw(CommandAPDU(cmd.cla & 0x03, 0xC0, 0, 0, b"", resp.sw2 or 256))
                data += resp.data
                if resp.sw1 != 0x61:
                    break
            else:
                raise MalformedResponse(f"{_named(cmd)}: card kept answering 61xx after {MAX_GET_RESPONSE} "
                                        "GET RESPONSEs")
            resp = ResponseAPDU(bytes(data), resp.sw)
        elif resp.sw1 == 0x61:
            # case 1/3 command: data is available but was not asked for; the command itself succeeded.
            resp = ResponseAPDU(resp.data, SW_OK)
        return resp

    def check(self, cmd: CommandAPDU) -> bytes:
        """Send and return the data of a 9000 answer; raise the typed StatusError otherwise, its message
        naming the command."""
        resp = self.send(cmd)
        if resp.sw == SW_OK:
            return resp.data
        e = error_for_sw(resp.sw)
        raise type(e)(e.sw, f"{_named(cmd)}: {e.message}")


def _named(cmd: CommandAPDU) -> str:
    return describe_apdu(bytes((cmd.cla, cmd.ins, cmd.p1, cmd.p2)))


__all__ = [
    "CardChannel",
    "CommandAPDU",
    "ResponseAPDU",
    "StatusError",
    "SW_OK",
    "Transport",
]
