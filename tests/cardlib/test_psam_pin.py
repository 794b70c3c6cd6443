"""PIN ENCIPHER: the PSAM's PIN blocks, checked against hsm_mock's format-0 code and verified by the HSM; the
HSM path (encrypt_pin) and the PSAM-then-HSM fallback give blocks the HSM verifies too."""

from __future__ import annotations

import pytest

from cardlib import errors
from cardlib.crypto import suite_for
from cardlib.psam import Psam, PsamSecurity, pan_field, pin_field
from cardlib.readers.memory import MemoryReader
from hsm_client.errors import VerificationFailed
from hsm_mock import KeyStore, Lmk, LocalHsm
from hsm_mock.pinblock import decode_format0, encode_format0
from sim.issuer import Issuer, install_into_hsm, pik_label, pvk_label
from sim.psam import SimPsam
from terminal.daemon import FallbackSecurity
from terminal.security import HsmSecurity

PAN = "110105198001010016"


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture(scope="module")
def hsm(issuer):
    store = KeyStore(Lmk.ephemeral())
    h = LocalHsm(store)
    labels = install_into_hsm(issuer, h, lambda *a: store.load_components(a[0], "KEK", *a[1:]))
    assert {"SSSE-3DES-PIK", "SSSE-SM4-PIK", "SSSE-SM4-PVK"} <= set(labels)
    yield h
    h.close()


def psam_for(issuer: Issuer) -> Psam:
    return Psam(MemoryReader(SimPsam(issuer)))


def test_format0_fields():
    assert pin_field("1234").hex().upper() == "041234FFFFFFFFFF"
    assert pin_field("123456789012").hex().upper() == "0C123456789012FF"
    assert pan_field("4000001234562").hex() == "0000400000123456"  # check digit 2 dropped
    assert pan_field("12").hex() == "0000000000000001"
    for bad in ("123", "1234567890123", "12a4", "", "١٢٣٤"):
        with pytest.raises(ValueError):
            pin_field(bad)
    for bad in ("1", "12345678901234567890", "11010519800101001X"):
        with pytest.raises(ValueError):
            pan_field(bad)


@pytest.mark.parametrize(("suite", "size"), [("3DES", 8), ("SM4", 16)])
@pytest.mark.parametrize("pin", ["1234", "123456", "987654321098"])
def test_psam_block_is_format0_under_the_pik(issuer, suite, size, pin):
    block = psam_for(issuer).encipher_pin(pin, PAN, suite)
    clear = suite_for(suite).decrypt(issuer.pin_key(suite), block)
    assert len(block) == size and clear == encode_format0(pin, PAN, size)  # hsm_mock's own encoder agrees
    assert decode_format0(clear, PAN) == pin


@pytest.mark.parametrize("suite", ["3DES", "SM4"])
def test_psam_and_hsm_blocks_verify_at_the_hsm(issuer, hsm, suite):
    pik, pvk = pik_label(suite), pvk_label()
    psam_block = PsamSecurity(psam_for(issuer), pin_suite=suite).pin_block("123456", PAN)
    hsm_block = HsmSecurity(hsm, pin_suite=suite).pin_block("123456", PAN)
    assert psam_block == hsm_block  # same PIK, ECB: the same block
    reference = hsm.pin_reference(pik, pvk, hsm_block, PAN)
    hsm.verify_pin(pik, pvk, psam_block, PAN, reference)
    with pytest.raises(VerificationFailed):
        hsm.verify_pin(pik, pvk, psam_for(issuer).encipher_pin("123457", PAN, suite), PAN, reference)
    with pytest.raises(VerificationFailed):  # the block is bound to its PAN
        other = "110105198001019916"
        hsm.verify_pin(pik, pvk, psam_for(issuer).encipher_pin("123456", other, suite), other,
                       hsm.pin_reference(pik, pvk, psam_block, PAN))


def test_a_psam_without_pin_keys_falls_back_to_the_hsm(issuer, hsm):
    no_pik = Issuer(issuer.masters, pin_keys={})
    psam = PsamSecurity(psam_for(no_pik))
    with pytest.raises(errors.SecurityModuleError):
        psam.pin_block("123456", PAN)
    both = FallbackSecurity(psam, HsmSecurity(hsm))
    block = both.pin_block("123456", PAN)
    ref = hsm.pin_reference(pik_label("SM4"), pvk_label(), block, PAN)
    hsm.verify_pin(pik_label("SM4"), pvk_label(), PsamSecurity(psam_for(issuer)).pin_block("123456", PAN), PAN,
                   ref)
    with pytest.raises(ValueError):  # a malformed PIN is refused before any module sees it
        both.pin_block("12", PAN)
    with pytest.raises(errors.SecurityModuleError):  # an HSM without the PIK: typed, never a raw HSM error
        HsmSecurity(hsm, prefix="OTHER").pin_block("123456", PAN)


def test_psam_refuses_malformed_pin_encipher_commands(issuer):
    psam = psam_for(issuer)
    psam.connect()
    raw = psam.channel.transport.transmit
    good = pin_field("123456") + pan_field(PAN)
    assert raw(b"\x80\xf8\x00\x02\x10" + good + b"\x00")[-2:] == b"\x90\x00"
    assert raw(b"\x80\xf8\x00\x03\x10" + good + b"\x00") == b"\x6a\x86"  # unknown suite
    assert raw(b"\x80\xf8\x01\x02\x10" + good + b"\x00") == b"\x6a\x86"
    assert raw(b"\x80\xf8\x00\x02\x08" + good[:8] + b"\x00") == b"\x67\x00"
    for bad_pin in ("0312FFFFFFFFFFFF", "041234FFFFFFFFF0", "14123456FFFFFFFF", "04123AFFFFFFFFFF"):
        data = bytes.fromhex(bad_pin) + good[8:]
        assert raw(b"\x80\xf8\x00\x02\x10" + data + b"\x00") == b"\x6a\x80", bad_pin
    bad_pan = good[:8] + bytes.fromhex("1000400000123456")
    assert raw(b"\x80\xf8\x00\x02\x10" + bad_pan + b"\x00") == b"\x6a\x80"
    with pytest.raises(errors.SecurityModuleError):
        Psam(MemoryReader(SimPsam(Issuer(issuer.masters, pin_keys={})))).encipher_pin("123456", PAN, "3DES")
