"""The PC/SC return-code table: names as pcsc-lite spells them, and the typed error of each code."""

from __future__ import annotations

import pytest
from smartcard import scard

from cardlib import errors
from cardlib.readers.pcsc_errors import PCSC_CODES, describe, pcsc_error


@pytest.mark.parametrize("code", sorted(PCSC_CODES))
def test_each_name_is_pcsc_lites_name_for_that_code(code):
    """pyscard exports pcsclite.h's constants: the table's name must be the constant with that value."""
    assert getattr(scard, PCSC_CODES[code].name) & 0xFFFFFFFF == code


@pytest.mark.parametrize(
    "code,cls",
    [
        (0x80100013, errors.ServiceUnavailable),  # SCARD_F_COMM_ERROR: socket to pcscd broke (killed pcscd)
        (0x8010001D, errors.ServiceUnavailable),  # SCARD_E_NO_SERVICE
        (0x8010001E, errors.ServiceUnavailable),  # SCARD_E_SERVICE_STOPPED
        (0x80100003, errors.ServiceUnavailable),  # SCARD_E_INVALID_HANDLE: context from before a restart
        (0x80100017, errors.ReaderUnavailable),  # SCARD_E_READER_UNAVAILABLE: unplugged
        (0x80100009, errors.ReaderNotFound),  # SCARD_E_UNKNOWN_READER
        (0x8010002E, errors.ReaderNotFound),  # SCARD_E_NO_READERS_AVAILABLE
        (0x80100016, errors.CardRemoved),  # SCARD_E_NOT_TRANSACTED: first error of a pulled card
        (0x80100069, errors.CardRemoved),  # SCARD_W_REMOVED_CARD
        (0x80100068, errors.CardReset),  # SCARD_W_RESET_CARD
        (0x80100066, errors.CardUnresponsive),  # SCARD_W_UNRESPONSIVE_CARD: no ATR
        (0x8010000C, errors.NoCard),  # SCARD_E_NO_SMARTCARD
        (0x8010000A, errors.CardTimeout),  # SCARD_E_TIMEOUT
        (0x8010000B, errors.ReaderInUse),  # SCARD_E_SHARING_VIOLATION
        (0x8010000F, errors.UnsupportedCard),  # SCARD_E_PROTO_MISMATCH
    ],
)
def test_codes_become_typed_errors_that_keep_the_code(code, cls):
    e = pcsc_error(code, "reading")
    assert type(e) is cls
    assert e.pcsc_code == code
    assert str(e).startswith("reading: SCARD_") and f"0x{code:08X}" in str(e)


def test_signed_codes_and_unknown_codes():
    assert pcsc_error(0x8010001D - (1 << 32), "x").pcsc_code == 0x8010001D  # pyscard may hand back signed ints
    e = pcsc_error(0x80101234, "x")
    assert type(e) is errors.TransportError and "0x80101234" in str(e)
    assert describe(0x8010001D) == "SCARD_E_NO_SERVICE (0x8010001D): the PC/SC service (pcscd) is not running"


def test_every_service_outage_is_a_reader_unavailable():
    """The terminal answers READER_UNAVAILABLE for the whole family (pcscd down, reader unplugged)."""
    assert issubclass(errors.ServiceUnavailable, errors.ReaderUnavailable)
    assert issubclass(errors.CardReset, errors.CardRemoved)
