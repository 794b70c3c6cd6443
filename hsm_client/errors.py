"""Typed HSM errors, each with a stable two-character error code (payShield style).

`ERROR_CODES` is the one table of codes; `error_for_code()` turns a code from the wire back into the
same exception class the in-process API raises, so callers see one set of errors either way.

The codes are tabled in hsm_mock/README.md (a test keeps the table and `ERROR_CODES` in step).
"""

from __future__ import annotations


class HsmError(Exception):
    """Base of every HSM error (the mock's and the client's); `code` is the two-character error code."""

    code = "99"
    default_message = "HSM error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)


class VerificationFailed(HsmError):
    code = "01"
    default_message = "verification failed"


class KeyNotFound(HsmError):
    code = "10"
    default_message = "key not found"


class WrongKeyType(HsmError):
    code = "11"
    default_message = "wrong key type for this operation"


class WrongSuite(HsmError):
    code = "12"
    default_message = "wrong cipher suite"


class KeyExists(HsmError):
    code = "13"
    default_message = "key already exists"


class KcvMismatch(HsmError):
    code = "14"
    default_message = "key check value mismatch"


class InvalidInput(HsmError, ValueError):
    code = "15"
    default_message = "invalid input"


class LmkError(HsmError):
    code = "17"
    default_message = "LMK missing or wrong"


class PinBlockError(HsmError):
    code = "20"
    default_message = "PIN block format error"


class AuthenticationFailed(HsmError):
    """No credential, an unknown client, another client's key, or a frame whose tag does not verify (a
    replayed, reordered or altered frame): the HSM answers once and closes the connection."""

    code = "40"
    default_message = "client authentication failed"


class NotAuthorised(HsmError):
    """The client's role may not run this command (the message names the role and the command)."""

    code = "41"
    default_message = "command not allowed for this client's role"


class RateLimited(HsmError):
    """The client ran this command faster than its limit allows (the message names the limit)."""

    code = "42"
    default_message = "rate limit exceeded"


class ConnectionLimit(HsmError):
    """The HSM has as many connections as it accepts (in total, or for this client); it closes this one."""

    code = "43"
    default_message = "too many connections"


class UnknownCommand(HsmError):
    code = "68"
    default_message = "unknown command"


class FrameError(HsmError, ValueError):
    code = "80"
    default_message = "malformed frame"


class HsmUnavailable(HsmError):
    code = "98"
    default_message = "HSM unavailable"


class InternalError(HsmError):
    code = "99"
    default_message = "internal HSM error"


OK = "00"

ERROR_CODES: dict[str, type[HsmError]] = {
    cls.code: cls
    for cls in (
        VerificationFailed,
        KeyNotFound,
        WrongKeyType,
        WrongSuite,
        KeyExists,
        KcvMismatch,
        InvalidInput,
        LmkError,
        PinBlockError,
        AuthenticationFailed,
        NotAuthorised,
        RateLimited,
        ConnectionLimit,
        UnknownCommand,
        FrameError,
        HsmUnavailable,
        InternalError,
    )
}


def error_for_code(code: str, message: str | None = None) -> HsmError:
    """The exception for a non-"00" error code (unknown codes become InternalError)."""
    cls = ERROR_CODES.get(code, InternalError)
    return cls(message or f"{cls.default_message} (code {code})")
