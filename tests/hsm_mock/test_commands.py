"""In-process commands, checked against computations done here with the raw ciphers."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from hsm_client.api import HsmApi
from hsm_client.errors import (
    InvalidInput,
    KeyNotFound,
    PinBlockError,
    VerificationFailed,
    WrongKeyType,
    WrongSuite,
)
from hsm_mock.commands import LocalHsm
from hsm_mock.factors import check_rule, factor
from hsm_mock.pinblock import decode_format0, encode_format0
from hsm_mock.suites import pad_m2
from tests.hsm_mock.conftest import CARD_ID, TEST_KEYS

h = bytes.fromhex


def key(label: str) -> bytes:
    return h(TEST_KEYS[label][2])


def ecb(suite: str, k: bytes, data: bytes, decrypt: bool = False) -> bytes:
    alg = TripleDES(k + k[:8]) if suite == "3DES" else algorithms.SM4(k)
    c = Cipher(alg, modes.ECB())
    return (c.decryptor() if decrypt else c.encryptor()).update(data)


def card_key(suite: str, mk: bytes, d: bytes) -> bytes:
    """The documented diversification, written out: 3DES E(D)||E(~D), SM4 E(D||~D)."""
    nd = bytes(b ^ 0xFF for b in d)
    if suite == "3DES":
        return ecb(suite, mk, d) + ecb(suite, mk, nd)
    return ecb(suite, mk, d + nd)


def session_mac_by_hand(suite: str, k: bytes, challenge: bytes, message: bytes) -> bytes:
    bs = 8 if suite == "3DES" else 16
    padded, state = pad_m2(message, bs), challenge
    for i in range(0, len(padded), bs):
        block = bytes(a ^ b for a, b in zip(state, padded[i : i + bs], strict=True))
        last = i + bs == len(padded)
        if suite == "3DES":  # single DES with the left half, 3DES-EDE on the last block
            state = ecb(suite, k, block) if last else ecb(suite, k[:8] * 2, block)
        else:
            state = ecb(suite, k, block)
    return state[:4]


def test_local_hsm_implements_the_api(hsm: LocalHsm) -> None:
    assert isinstance(hsm, HsmApi)
    assert hsm.ping().startswith("sscard-hsm-mock")


# ---- diversification and authentication ------------------------------------------------------------------
@pytest.mark.parametrize(("mk", "suite"), [("mk.ea.3des", "3DES"), ("mk.ea.sm4", "SM4")])
def test_diversify_returns_kcv_and_key_under_kek_only(hsm: LocalHsm, mk: str, suite: str) -> None:
    expected = card_key(suite, key(mk), CARD_ID[8:])  # default rule last8
    kcv = ecb(suite, expected, bytes(8 if suite == "3DES" else 16))[:3]
    assert hsm.diversify(mk, CARD_ID).kcv == kcv
    assert hsm.diversify(mk, CARD_ID).under_kek is None
    kek = f"kek.{suite.lower()}"
    wrapped = hsm.diversify(mk, CARD_ID, kek)
    assert wrapped.under_kek == ecb(suite, key(kek), expected)
    assert expected not in repr(wrapped).encode()
    other = "kek.sm4" if suite == "3DES" else "kek.3des"
    with pytest.raises(WrongSuite):
        hsm.diversify(mk, CARD_ID, other)


def test_diversification_rules() -> None:
    cid = bytes(range(16))
    assert factor(cid, "last8") == cid[8:] and factor(cid, "first8") == cid[:8]
    assert factor(cid, "xor8") == bytes(a ^ b for a, b in zip(cid[:8], cid[8:], strict=True))
    assert factor(cid, "offset:3") == cid[3:11] and factor(cid[:8], "raw") == cid[:8]
    assert check_rule("") == "last8"
    for bad_rule in ("offset:9", "offset:03", "last4", "offset:"):
        with pytest.raises(InvalidInput):
            check_rule(bad_rule)
    with pytest.raises(InvalidInput):
        factor(cid[:15], "last8")
    with pytest.raises(InvalidInput):
        factor(cid, "raw")


def test_mk_rule_is_used(hsm: LocalHsm) -> None:
    k = key("mk.ea.3des")
    hsm.keystore.load_components("mk.first8", "MK", "3DES", [k], hsm.keystore.get("mk.ea.3des").kcv, "first8")
    expected = card_key("3DES", k, CARD_ID[:8])
    assert hsm.diversify("mk.first8", CARD_ID).kcv == ecb("3DES", expected, bytes(8))[:3]


@pytest.mark.parametrize(("mk", "suite", "size"), [("mk.ea.3des", "3DES", 8), ("mk.ea.sm4", "SM4", 16)])
def test_external_authentication(hsm: LocalHsm, mk: str, suite: str, size: int) -> None:
    challenge = bytes(range(1, size + 1))
    expected = ecb(suite, card_key(suite, key(mk), CARD_ID[8:]), challenge)
    assert hsm.ext_auth_cryptogram(mk, CARD_ID, challenge) == expected
    hsm.verify_ext_auth(mk, CARD_ID, challenge, expected)
    with pytest.raises(VerificationFailed):
        hsm.verify_ext_auth(mk, CARD_ID, challenge, bytes(size))
    with pytest.raises(InvalidInput):  # the challenge is exactly one block
        hsm.ext_auth_cryptogram(mk, CARD_ID, bytes(size + 1))


def test_internal_authentication(hsm: LocalHsm) -> None:
    rnd = h("0102030405060708")
    response = ecb("3DES", card_key("3DES", key("mk.ia.3des"), CARD_ID[8:]), rnd)
    hsm.verify_int_auth("mk.ia.3des", CARD_ID, rnd, response)
    with pytest.raises(VerificationFailed):  # another card answers with its own key
        hsm.verify_int_auth("mk.ia.3des", CARD_ID[:8] + bytes(8), rnd, response)


@pytest.mark.parametrize(("mk", "suite", "size"), [("mk.mt.3des", "3DES", 8), ("mk.mt.sm4", "SM4", 16)])
def test_session_mac_for_protected_write(hsm: LocalHsm, mk: str, suite: str, size: int) -> None:
    challenge = bytes(range(0xA0, 0xA0 + size))
    data = b"\x01\x08" + b"20260101"
    message = bytes([0x04, 0xDC, 0x01, 0x0C, len(data) + 4]) + data  # CLA INS P1 P2 Lc data
    expected = session_mac_by_hand(suite, card_key(suite, key(mk), CARD_ID[8:]), challenge, message)
    assert hsm.session_mac(mk, CARD_ID, challenge, message) == expected
    hsm.verify_session_mac(mk, CARD_ID, challenge, message, expected)
    with pytest.raises(VerificationFailed):  # a replay under a new challenge fails
        hsm.verify_session_mac(mk, CARD_ID, bytes(size), message, expected)
    full = hsm.session_mac(mk, CARD_ID, challenge, message, mac_len=size)
    assert len(full) == size and full[:4] == expected
    with pytest.raises(InvalidInput):
        hsm.session_mac(mk, CARD_ID, challenge, message, mac_len=3)


# ---- MACs under a MAK -------------------------------------------------------------------------------------
def test_mac_under_mak(hsm: LocalHsm) -> None:
    # The ICAO 9303 D.3 vector again, now through a stored key.
    data = h("72C29C2371CC9BDB65B779B8E8D37B29ECC154AA56A8799FAE2F498F76ED92F2")
    assert hsm.generate_mac("mak.3des", data, mac_len=8) == h("5F1448EEA8AD90A7")
    hsm.verify_mac("mak.3des", data, h("5F1448EE"))
    with pytest.raises(VerificationFailed):
        hsm.verify_mac("mak.3des", data + b"\x00", h("5F1448EE"))
    iv = bytes(range(16))
    mac = hsm.generate_mac("mak.sm4", b"hello", iv)
    assert mac == session_mac_by_hand("SM4", key("mak.sm4"), iv, b"hello")
    hsm.verify_mac("mak.sm4", b"hello", mac, iv)
    with pytest.raises(VerificationFailed):
        hsm.verify_mac("mak.sm4", b"hello", mac)


@pytest.mark.parametrize(
    "call",
    [
        lambda x: x.generate_mac("pik.3des", b"data"),  # a PIN key is not a MAC key
        lambda x: x.verify_mac("mk.ea.3des", b"data", bytes(4)),
        lambda x: x.ext_auth_cryptogram("mak.3des", CARD_ID, bytes(8)),  # a MAK is not a master key
        lambda x: x.session_mac("kek.3des", CARD_ID, bytes(8), b"m"),
        lambda x: x.verify_pin("mak.3des", "pvk.3des", bytes(8), "4000001234562", bytes(16)),
        lambda x: x.pin_reference("pik.3des", "pik2.3des", bytes(8), "4000001234562"),
        lambda x: x.diversify("mk.ea.3des", CARD_ID, "mk.ia.3des"),  # only a KEK may wrap
    ],
)
def test_wrong_key_type_is_rejected(hsm: LocalHsm, call: Callable[[LocalHsm], object]) -> None:
    with pytest.raises(WrongKeyType):
        call(hsm)


def test_unknown_key(hsm: LocalHsm) -> None:
    with pytest.raises(KeyNotFound):
        hsm.generate_mac("nope", b"x")
    with pytest.raises(KeyNotFound):
        hsm.generate_mac("mak.3des@7", b"x")


# ---- PIN blocks -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pin", "pan", "size", "block"),
    [
        # Worked by hand: PIN field 041234FFFFFFFFFF, PAN field 0000400000123456 (check digit 2 dropped).
        ("1234", "4000001234562", 8, "041274FFFFEDCBA9"),
        # The ISO 9564 format-0 example on Wikipedia ("ISO 9564"): PAN field 0000987654321098.
        ("1234", "43219876543210987", 8, "0412AC89ABCDEF67"),
        # 16-byte (SM4) form: PIN field 06123654 F.., PAN field 20 zeros then 660100772688.
        ("123654", "6230606601007726888", 16, "06123654FFFFFFFFFFFF99FEFF88D977"),
    ],
)
def test_format0_vectors(pin: str, pan: str, size: int, block: str) -> None:
    assert encode_format0(pin, pan, size) == h(block)
    assert decode_format0(h(block), pan) == pin


def test_format0_rejects() -> None:
    for pin in ("123", "1234567890123", "12a4"):
        with pytest.raises(InvalidInput):
            encode_format0(pin, "4000001234562")
    with pytest.raises(InvalidInput):
        encode_format0("1234", "40000012345X2")
    good = encode_format0("1234", "4000001234562")
    with pytest.raises(PinBlockError):  # with another PAN the F padding turns into garbage
        decode_format0(good, "4000001239992")
    with pytest.raises(PinBlockError):
        decode_format0(bytes([0x14]) + good[1:], "4000001234562")  # format 1 nibble


@pytest.mark.parametrize(
    ("pik", "pvk", "suite"), [("pik.3des", "pvk.3des", "3DES"), ("pik.sm4", "pvk.sm4", "SM4")]
)
def test_pin_reference_and_verify(hsm: LocalHsm, pik: str, pvk: str, suite: str) -> None:
    pan = "6230606601007726888"
    size = 8 if suite == "3DES" else 16
    block = ecb(suite, key(pik), encode_format0("123456", pan, size))
    reference = hsm.pin_reference(pik, pvk, block, pan)
    assert len(reference) == 16 and b"123456" not in reference
    hsm.verify_pin(pik, pvk, block, pan, reference)
    wrong = ecb(suite, key(pik), encode_format0("654321", pan, size))
    with pytest.raises(VerificationFailed):
        hsm.verify_pin(pik, pvk, wrong, pan, reference)
    with pytest.raises(PinBlockError):  # not a format-0 block once decrypted
        hsm.verify_pin(pik, pvk, bytes(size), pan, reference)
    with pytest.raises(InvalidInput):
        hsm.verify_pin(pik, pvk, block, pan, reference[:8])


def test_translate_pin(hsm: LocalHsm) -> None:
    pan = "4000001234562"
    block = ecb("3DES", key("pik.3des"), encode_format0("1234", pan))
    out = hsm.translate_pin("pik.3des", "pik2.3des", block, pan)
    assert ecb("3DES", key("pik2.3des"), out, decrypt=True) == h("041274FFFFEDCBA9")
    to_sm4 = hsm.translate_pin("pik.3des", "pik.sm4", block, pan)
    assert ecb("SM4", key("pik.sm4"), to_sm4, decrypt=True) == encode_format0("1234", pan, 16)


# ---- audit ------------------------------------------------------------------------------------------------
def test_every_command_is_audited_without_secrets(hsm: LocalHsm) -> None:
    pan, pin = "4000001234562", "918273"
    block = ecb("3DES", key("pik.3des"), encode_format0(pin, pan))
    ref = hsm.pin_reference("pik.3des", "pvk.3des", block, pan)
    hsm.verify_pin("pik.3des", "pvk.3des", block, pan, ref)
    mac = hsm.session_mac("mk.mt.3des", CARD_ID, bytes(8), b"\x04\xdc\x01\x0c\x05X")
    with pytest.raises(VerificationFailed):
        hsm.verify_mac("mak.3des", b"data", bytes(4))
    hsm.diversify("mk.ea.3des", CARD_ID, "kek.3des")
    entries = hsm.audit.entries()
    commands = ["pin_reference", "verify_pin", "session_mac", "verify_mac", "diversify"]
    assert [e.command for e in entries] == commands
    assert [e.result for e in entries] == ["00", "00", "00", "01", "00"]
    assert entries[0].labels == ("pik.3des", "pvk.3des") and entries[-1].labels == ("mk.ea.3des", "kek.3des")
    assert all(e.duration_us >= 0 and e.ts > 0 for e in entries)
    text = repr(entries).upper()
    for secret in [key(lb) for lb in TEST_KEYS] + [block, ref, mac, CARD_ID]:
        assert secret.hex().upper() not in text
    words = " ".join(e.command + " " + " ".join(e.labels) for e in entries)
    assert pin not in words and pan not in words
    assert hsm.audit.entries(command="verify_pin")[0].labels == ("pik.3des", "pvk.3des")
    assert len(hsm.audit.entries(label="mk.ea.3des")) == 1


# ---- encrypt a clear PIN (BA) -----------------------------------------------------------------------------
@pytest.mark.parametrize(("pik", "suite", "size"), [("pik.3des", "3DES", 8), ("pik.sm4", "SM4", 16)])
def test_encrypt_pin_round_trips_and_verifies(hsm: LocalHsm, pik: str, suite: str, size: int) -> None:
    pan, pin = "6230606601007726888", "2468013579"
    block = hsm.encrypt_pin(pik, pin, pan)
    clear = ecb(suite, key(pik), block, decrypt=True)
    assert len(block) == size and clear == encode_format0(pin, pan, size)
    assert decode_format0(clear, pan) == pin
    ref = hsm.pin_reference(pik, "pvk.sm4", block, pan)
    hsm.verify_pin(pik, "pvk.sm4", block, pan, ref)
    other = "pik.sm4" if suite == "3DES" else "pik.3des"  # the reference does not depend on the PIK
    hsm.verify_pin(other, "pvk.sm4", hsm.encrypt_pin(other, pin, pan), pan, ref)
    with pytest.raises(VerificationFailed):
        hsm.verify_pin(pik, "pvk.sm4", hsm.encrypt_pin(pik, "2468013578", pan), pan, ref)
    assert hsm.translate_pin(pik, other, block, pan) == hsm.encrypt_pin(other, pin, pan)


def test_encrypt_pin_refusals_never_quote_the_pin(hsm: LocalHsm) -> None:
    for pin in ("123", "1234567890123", "12a456", "١٢٣٤٥٦"):
        with pytest.raises(InvalidInput) as e:
            hsm.encrypt_pin("pik.sm4", pin, "4000001234562")
        assert pin not in str(e.value)
    with pytest.raises(InvalidInput):
        hsm.encrypt_pin("pik.sm4", "918273", "40000X")
    with pytest.raises(WrongKeyType):  # only a PIN key encrypts PINs
        hsm.encrypt_pin("mak.sm4", "918273", "4000001234562")
    with pytest.raises(KeyNotFound):
        hsm.encrypt_pin("pik.none", "918273", "4000001234562")
    entries = hsm.audit.entries(command="encrypt_pin")
    assert [e.result for e in entries][-3:] == ["15", "11", "10"]
    assert all(e.labels in (("pik.sm4",), ("mak.sm4",), ("pik.none",)) for e in entries)
    assert "918273" not in repr(hsm.audit.entries())
