"""Typed card errors. Every status word a card may answer maps to one class; transport faults have their own.

The table `STATUS_WORDS` is the one place SWs are described; `error_for_sw()` turns an SW into an exception
that carries the SW, a readable message and, for 63Cx, the tries left.
"""

from __future__ import annotations


class CardError(Exception):
    """Base of everything cardlib raises."""


# ---- transport and reader level -------------------------------------------------------------------------
class TransportError(CardError):
    """The reader or the link to it failed (not the card's answer). `pcsc_code` keeps the PC/SC return code
    when there was one (cardlib.readers.pcsc_errors names every code)."""

    def __init__(self, message: str, pcsc_code: int | None = None) -> None:
        super().__init__(message)
        self.pcsc_code = pcsc_code


class ReaderNotFound(TransportError):
    """No reader with that name (or no reader at all)."""


class ReaderUnavailable(TransportError):
    """The reader is there by name but cannot be used now (unplugged, not ready)."""


class ServiceUnavailable(ReaderUnavailable):
    """The PC/SC service (pcscd) is not running, went away or was restarted under an open context."""


class ReaderInUse(TransportError):
    """Another program holds the card exclusively (PC/SC sharing violation)."""


class NoCard(TransportError):
    """The reader has no card in it."""


class CardRemoved(TransportError):
    """The card was pulled (or went silent) during a session: PC/SC 0x80100016 and 0x80100069 both land here."""


class CardReset(CardRemoved):
    """Another program reset the card: what this session had selected or proven is gone."""


class CardTimeout(TransportError):
    """The card or reader did not answer in time."""


class CardUnresponsive(CardTimeout):
    """The card does not answer reset (no ATR): a mute card, or one inserted the wrong way round."""


class UnsupportedCard(TransportError):
    """The reader cannot talk to this card (invalid ATR, protocol mismatch)."""


class MalformedResponse(CardError):
    """The card answered something that is not a valid response (too short, wrong tag, wrong length...)."""


class ItemUnreadable(MalformedResponse):
    """A data item the read cannot do without (or asked for strictly) could not be read or decoded. Names the
    file, the record number (None when read by identifier), the tag, the item and the raw bytes (hex)."""

    def __init__(self, message: str, *, file: str, record: int | None, tag: int, item: str, raw: bytes = b"") -> None:
        self.file, self.record, self.tag, self.item, self.raw = file, record, tag, item, bytes(raw)
        where = f"{file} record {record}" if record is not None else f"{file} (by identifier)"
        super().__init__(f"{where}, tag {tag:02X} ({item}): {message}; raw {self.raw.hex().upper() or '(none)'}")


class FieldError(CardError, ValueError):
    """A data item could not be encoded or decoded in its declared format."""


class TlvError(CardError, ValueError):
    """A TLV structure is malformed."""


class FrameError(TransportError, ValueError):
    """A serial reader frame is malformed (bad STX/ETX, length or BCC)."""


# ---- security ---------------------------------------------------------------------------------------------
class SecurityError(CardError):
    """A security check failed: authentication, MAC, key or blocked card."""


class CounterfeitCard(SecurityError):
    """The card's internal-authentication answer is wrong: it does not hold the issuer's keys."""


class ExternalAuthFailed(SecurityError):
    """The card refused the terminal's cryptogram (wrong keys at PSAM/HSM); `tries_left` before the key locks."""

    def __init__(self, message: str, tries_left: int | None = None) -> None:
        super().__init__(message)
        self.tries_left = tries_left


class CardBlocked(SecurityError):
    """The card (6A81 on SELECT) or an application is blocked: for good (9303 on SELECT), or until the issuer
    unblocks it (6283 "selected file invalidated" on SELECT; `until_unblocked` is then True)."""

    def __init__(self, message: str, *, until_unblocked: bool = False) -> None:
        super().__init__(message)
        self.until_unblocked = until_unblocked


class SecurityModuleError(SecurityError):
    """The PSAM or HSM could not do what was asked (no key for this card, bad answer)."""


# ---- status words -----------------------------------------------------------------------------------------
class StatusError(CardError):
    """The card answered with a non-success status word."""

    default_message = "card returned an error status"

    def __init__(self, sw: int, message: str | None = None) -> None:
        self.sw = sw
        self.message = message or self.default_message
        super().__init__(f"{self.message} (SW {sw:04X})")


def _sw(name: str, message: str) -> type[StatusError]:
    return type(name, (StatusError,), {"default_message": message, "__doc__": message})


WrongLength = _sw("WrongLength", "wrong length")
SecurityStatusNotSatisfied = _sw("SecurityStatusNotSatisfied", "security status not satisfied")
AuthenticationFailed = _sw("AuthenticationFailed", "authentication method blocked")
ChallengeInvalid = _sw("ChallengeInvalid", "challenge used or invalid")
ConditionsNotSatisfied = _sw("ConditionsNotSatisfied", "conditions of use not satisfied")
MacMissing = _sw("MacMissing", "secure messaging data object missing (MAC missing)")
MacWrong = _sw("MacWrong", "secure messaging data object incorrect (MAC wrong)")
WrongData = _sw("WrongData", "incorrect data in the command")
FunctionNotSupported = _sw("FunctionNotSupported", "function not supported")
FileNotFound = _sw("FileNotFound", "file or application not found")
RecordNotFound = _sw("RecordNotFound", "record not found")
IncorrectParameters = _sw("IncorrectParameters", "incorrect parameters P1-P2")
InsNotSupported = _sw("InsNotSupported", "instruction not supported")
ClaNotSupported = _sw("ClaNotSupported", "class not supported")
CommandNotAllowed = _sw("CommandNotAllowed", "command not allowed (no current EF)")
MemoryFailure = _sw("MemoryFailure", "memory failure")
ApplicationBlocked = _sw("ApplicationBlocked", "application or card blocked")
ApplicationInvalidated = _sw("ApplicationInvalidated", "selected file invalidated (application blocked)")
UnknownStatus = _sw("UnknownStatus", "unknown status word")


class PinBlocked(StatusError):
    """The PIN is blocked (6983): no tries left; it needs unblocking with the issuer's key."""

    default_message = "PIN blocked"

    def __init__(self, sw: int = 0x6983, message: str | None = None) -> None:
        super().__init__(sw, message)
        self.tries_left = 0


class PinWrong(StatusError):
    """The PIN was wrong (63Cx): `tries_left` = x."""

    default_message = "wrong PIN"

    def __init__(self, sw: int, message: str | None = None) -> None:
        self.tries_left = sw & 0x0F
        super().__init__(sw, message or f"wrong PIN, {self.tries_left} tries left")


class WrongLe(StatusError):
    """6Cxx: the card wants Le = xx. Handled transparently by the channel; surfaces only if resend fails."""

    default_message = "wrong Le"

    def __init__(self, sw: int, message: str | None = None) -> None:
        self.correct_le = sw & 0xFF
        super().__init__(sw, message or f"wrong Le, card asks for {self.correct_le}")


STATUS_WORDS: dict[int, type[StatusError]] = {
    0x6283: ApplicationInvalidated,
    0x6581: MemoryFailure,
    0x6700: WrongLength,
    0x6882: FunctionNotSupported,  # secure messaging not supported
    0x6981: CommandNotAllowed,
    0x6982: SecurityStatusNotSatisfied,
    0x6983: PinBlocked,
    0x6984: ChallengeInvalid,
    0x6985: ConditionsNotSatisfied,
    0x6986: CommandNotAllowed,
    0x6987: MacMissing,
    0x6988: MacWrong,
    0x6A80: WrongData,
    0x6A81: FunctionNotSupported,
    0x6A82: FileNotFound,
    0x6A83: RecordNotFound,
    0x6A84: MemoryFailure,
    0x6A86: IncorrectParameters,
    0x6A88: RecordNotFound,
    0x6B00: IncorrectParameters,
    0x6D00: InsNotSupported,
    0x6E00: ClaNotSupported,
    0x9303: ApplicationBlocked,
}


class AuthenticationRequired(SecurityStatusNotSatisfied):  # type: ignore[misc, valid-type]
    """6982 on data the card shows only to an authenticated terminal (third-generation cards' EF06), and no
    security module was given (or authenticating did not unlock it)."""


def error_for_sw(sw: int) -> StatusError:
    """The typed exception for a non-success status word."""
    if sw & 0xFFF0 == 0x63C0:
        return PinWrong(sw)
    if sw & 0xFF00 == 0x6C00:
        return WrongLe(sw)
    cls = STATUS_WORDS.get(sw)
    if cls is None:
        return UnknownStatus(sw)
    return cls(sw)
