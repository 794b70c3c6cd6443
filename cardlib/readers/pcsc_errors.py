"""Every PC/SC return code, named as pcsc-lite's pcsclite.h names it, and the typed error it becomes.

The table is the one place a PC/SC code is described (the reader, the watcher and the CLI all use it).
Codes seen with pcscd + vpcd in design/PCSC.md: a pulled card gives 0x80100016 first, then 0x80100069;
pcscd stopped under an open context gives 0x8010001D; a context whose socket to pcscd broke (pcscd killed,
or our own watchdog cutting a call that overran its deadline) gives 0x80100013.
"""

from __future__ import annotations

from typing import NamedTuple

from cardlib.errors import (
    CardRemoved,
    CardReset,
    CardTimeout,
    CardUnresponsive,
    NoCard,
    ReaderInUse,
    ReaderNotFound,
    ReaderUnavailable,
    ServiceUnavailable,
    TransportError,
    UnsupportedCard,
)


class PcscCode(NamedTuple):
    name: str
    error: type[TransportError]
    meaning: str


SUCCESS = 0x00000000
#: SCardGetStatusChange's "nothing changed in the time given": not an error for a waiter.
TIMEOUT = 0x8010000A
NO_READERS = 0x8010002E

#: code -> (pcsclite.h name, cardlib error, what it means at a counter)
PCSC_CODES: dict[int, PcscCode] = {
    0x80100001: PcscCode("SCARD_F_INTERNAL_ERROR", TransportError, "internal error in the PC/SC service"),
    0x80100002: PcscCode("SCARD_E_CANCELLED", TransportError, "the call was cancelled"),
    0x80100003: PcscCode("SCARD_E_INVALID_HANDLE", ServiceUnavailable,
                         "the PC/SC context is gone (the service was restarted)"),
    0x80100004: PcscCode("SCARD_E_INVALID_PARAMETER", TransportError, "invalid parameter"),
    0x80100005: PcscCode("SCARD_E_INVALID_TARGET", TransportError, "invalid target"),
    0x80100006: PcscCode("SCARD_E_NO_MEMORY", TransportError, "the PC/SC service is out of memory"),
    0x80100007: PcscCode("SCARD_F_WAITED_TOO_LONG", CardTimeout, "the PC/SC service waited too long"),
    0x80100008: PcscCode("SCARD_E_INSUFFICIENT_BUFFER", TransportError, "the answer did not fit the buffer"),
    0x80100009: PcscCode("SCARD_E_UNKNOWN_READER", ReaderNotFound, "no reader of that name"),
    0x8010000A: PcscCode("SCARD_E_TIMEOUT", CardTimeout, "the operation timed out"),
    0x8010000B: PcscCode("SCARD_E_SHARING_VIOLATION", ReaderInUse, "another program holds the card exclusively"),
    0x8010000C: PcscCode("SCARD_E_NO_SMARTCARD", NoCard, "no card in the reader"),
    0x8010000D: PcscCode("SCARD_E_UNKNOWN_CARD", UnsupportedCard, "unknown card"),
    0x8010000E: PcscCode("SCARD_E_CANT_DISPOSE", TransportError, "the card cannot be disposed of as asked"),
    0x8010000F: PcscCode("SCARD_E_PROTO_MISMATCH", UnsupportedCard, "the card speaks neither T=0 nor T=1"),
    0x80100010: PcscCode("SCARD_E_NOT_READY", ReaderUnavailable, "the reader is not ready"),
    0x80100011: PcscCode("SCARD_E_INVALID_VALUE", TransportError, "invalid value"),
    0x80100012: PcscCode("SCARD_E_SYSTEM_CANCELLED", ServiceUnavailable, "the system is shutting down"),
    0x80100013: PcscCode("SCARD_F_COMM_ERROR", ServiceUnavailable, "the link to the PC/SC service broke"),
    0x80100014: PcscCode("SCARD_F_UNKNOWN_ERROR", TransportError, "unknown PC/SC error"),
    0x80100015: PcscCode("SCARD_E_INVALID_ATR", UnsupportedCard, "the card's ATR is invalid"),
    0x80100016: PcscCode("SCARD_E_NOT_TRANSACTED", CardRemoved,
                         "the card stopped answering or was pulled during the command"),
    0x80100017: PcscCode("SCARD_E_READER_UNAVAILABLE", ReaderUnavailable, "the reader is unplugged or unusable"),
    0x80100018: PcscCode("SCARD_P_SHUTDOWN", ServiceUnavailable, "the PC/SC service is shutting down"),
    0x80100019: PcscCode("SCARD_E_PCI_TOO_SMALL", TransportError, "protocol control block too small"),
    0x8010001A: PcscCode("SCARD_E_READER_UNSUPPORTED", ReaderUnavailable, "the reader driver is not supported"),
    0x8010001B: PcscCode("SCARD_E_DUPLICATE_READER", TransportError, "a reader of that name exists already"),
    0x8010001C: PcscCode("SCARD_E_CARD_UNSUPPORTED", UnsupportedCard, "the reader does not support this card"),
    0x8010001D: PcscCode("SCARD_E_NO_SERVICE", ServiceUnavailable, "the PC/SC service (pcscd) is not running"),
    0x8010001E: PcscCode("SCARD_E_SERVICE_STOPPED", ServiceUnavailable, "the PC/SC service was stopped"),
    0x8010001F: PcscCode("SCARD_E_UNSUPPORTED_FEATURE", TransportError, "the reader does not support this"),
    0x8010002E: PcscCode("SCARD_E_NO_READERS_AVAILABLE", ReaderNotFound, "no reader is connected"),
    0x8010002F: PcscCode("SCARD_E_COMM_DATA_LOST", TransportError, "data was lost between reader and card"),
    0x80100031: PcscCode("SCARD_E_SERVER_TOO_BUSY", ServiceUnavailable, "the PC/SC service is too busy"),
    0x80100065: PcscCode("SCARD_W_UNSUPPORTED_CARD", UnsupportedCard, "the card's ATR does not fit the reader"),
    0x80100066: PcscCode("SCARD_W_UNRESPONSIVE_CARD", CardUnresponsive,
                         "the card does not answer reset: is it inserted chip first, the right way up?"),
    0x80100067: PcscCode("SCARD_W_UNPOWERED_CARD", CardRemoved, "the card lost power"),
    0x80100068: PcscCode("SCARD_W_RESET_CARD", CardReset, "another program reset the card"),
    0x80100069: PcscCode("SCARD_W_REMOVED_CARD", CardRemoved, "the card was removed"),
    0x8010006A: PcscCode("SCARD_W_SECURITY_VIOLATION", TransportError, "access to the card was denied"),
}


def u32(code: int) -> int:
    """A PC/SC return code as the unsigned 32-bit number pcsclite.h writes (pyscard may give it signed)."""
    return code & 0xFFFFFFFF


def describe(code: int) -> str:
    """'SCARD_E_NO_SERVICE (0x8010001D): the PC/SC service (pcscd) is not running'."""
    code = u32(code)
    known = PCSC_CODES.get(code)
    if known is None:
        return f"PC/SC error 0x{code:08X}"
    return f"{known.name} (0x{code:08X}): {known.meaning}"


def pcsc_error(code: int, context: str) -> TransportError:
    """The typed error for a PC/SC return code, its message saying `context` (what was being done where)."""
    code = u32(code)
    known = PCSC_CODES.get(code)
    cls = known.error if known else TransportError
    return cls(f"{context}: {describe(code)}", code)
