"""Known-answer tests for the cipher suites, and the MAC/diversification rebuilt by hand from single DES."""

from __future__ import annotations

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from hsm_client.errors import InvalidInput
from hsm_mock.suites import DES3, SM4_SUITE, Suite, get_suite, pad_m2, unpad_m2

h = bytes.fromhex


def des(key8: bytes, block: bytes, decrypt: bool = False) -> bytes:
    """Single DES, independent of hsm_mock: 3DES with K1 = K2 = K3."""
    ctx = Cipher(TripleDES(key8 * 3), modes.ECB())
    op = ctx.decryptor() if decrypt else ctx.encryptor()
    return op.update(block)


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def retail_mac_by_hand(key: bytes, data: bytes, iv: bytes = bytes(8)) -> bytes:
    """ISO 9797-1 MAC algorithm 3 built block by block from single DES (no padding)."""
    kl, kr = key[:8], key[8:]
    state = iv
    for i in range(0, len(data), 8):
        state = des(kl, xor(state, data[i : i + 8]))
    return des(kl, des(kr, state, decrypt=True))


# ---- block ciphers ----------------------------------------------------------------------------------------
def test_sm4_gbt32907_vector() -> None:
    # GB/T 32907-2016 appendix A, example 1.
    key = h("0123456789abcdeffedcba9876543210")
    assert SM4_SUITE.encrypt(key, key) == h("681edf34d206965e86b3e94f536e4246")
    assert SM4_SUITE.decrypt(key, h("681edf34d206965e86b3e94f536e4246")) == key


@pytest.mark.parametrize(
    ("key", "plain", "cipher"),
    [
        # J. Orlin Grabbe, "The DES Algorithm Illustrated" (worked example).
        ("133457799BBCDFF1", "0123456789ABCDEF", "85E813540F0AB405"),
        # NIST SP 800-17, variable-plaintext known-answer test, round 0.
        ("0101010101010101", "8000000000000000", "95F8A5E5DD31D900"),
    ],
)
def test_single_des_vectors(key: str, plain: str, cipher: str) -> None:
    assert des(h(key), h(plain)) == h(cipher)


def test_tdea_sp800_67_example() -> None:
    # NIST SP 800-67 Rev. 1, appendix B example (three keys); checks the library behind both suites.
    key = h("0123456789ABCDEF" "23456789ABCDEF01" "456789ABCDEF0123")
    ct = Cipher(TripleDES(key), modes.ECB()).encryptor().update(b"The qufck brown fox jump")
    assert ct == h("A826FD8CE53B855F" "CCE21C8112256FE6" "68D5C05DD9B6B900")


def test_double_length_3des_is_ede_of_single_des() -> None:
    key, block = h("0123456789ABCDEFFEDCBA9876543210"), h("4E6F772069732074")
    by_hand = des(key[:8], des(key[8:], des(key[:8], block), decrypt=True))
    assert DES3.encrypt(key, block) == by_hand
    assert DES3.decrypt(key, by_hand) == block


def test_kcv() -> None:
    # Widely cited KCV of the test key 0123456789ABCDEF FEDCBA9876543210: 08D7B4.
    key = h("0123456789ABCDEFFEDCBA9876543210")
    assert DES3.kcv(key) == h("08D7B4")
    assert DES3.kcv(key) == des(key[:8], des(key[8:], des(key[:8], bytes(8)), decrypt=True))[:3]
    sm4_key = h("0123456789abcdeffedcba9876543210")
    expected = Cipher(algorithms.SM4(sm4_key), modes.ECB()).encryptor().update(bytes(16))[:3]
    assert SM4_SUITE.kcv(sm4_key) == expected


# ---- MACs -------------------------------------------------------------------------------------------------
def test_retail_mac_bouncycastle_vector() -> None:
    # Bouncy Castle ISO9797Alg3MacTest: no padding, zero IV.
    key = h("7CA110454A1A6E570131D9619DC1376E")
    assert DES3.mac(key, b"Hello World !!!!", pad=False) == h("F09B856213BAB83B")
    assert retail_mac_by_hand(key, b"Hello World !!!!") == h("F09B856213BAB83B")


@pytest.mark.parametrize(
    ("key", "data", "mac"),
    [
        # ICAO Doc 9303 part 11, appendix D.3 (BAC mutual authentication): padding method 2, zero IV.
        ("7962D9ECE03D1ACD4C76089DCE131543",
         "72C29C2371CC9BDB65B779B8E8D37B29ECC154AA56A8799FAE2F498F76ED92F2", "5F1448EEA8AD90A7"),
        ("7962D9ECE03D1ACD4C76089DCE131543",
         "46B9342A41396CD7386BF5803104D7CEDC122B9132139BAF2EEDC94EE178534F", "2F2D235D074D7449"),
        # ICAO Doc 9303 part 11, appendix D.4.1 (secure messaging).
        ("F1CB1F1FB5ADF208806B89DC579DC1F8",
         "887022120C06C2270CA4020C800000008709016375432908C044F6", "BF8B92D635FF24F8"),
    ],
)
def test_retail_mac_icao_vectors(key: str, data: str, mac: str) -> None:
    assert DES3.mac(h(key), h(data)) == h(mac)
    assert retail_mac_by_hand(h(key), pad_m2(h(data), 8)) == h(mac)


KEY16 = st.binary(min_size=16, max_size=16)


@settings(deadline=None)
@given(key=KEY16, data=st.binary(max_size=64), iv=st.binary(min_size=8, max_size=8))
def test_retail_mac_matches_hand_built(key: bytes, data: bytes, iv: bytes) -> None:
    assert DES3.mac(key, data, iv) == retail_mac_by_hand(key, pad_m2(data, 8), iv)


@settings(deadline=None)
@given(key=KEY16, data=st.binary(max_size=64), iv=KEY16)
def test_sm4_mac_is_last_cbc_block(key: bytes, data: bytes, iv: bytes) -> None:
    state = iv
    padded = pad_m2(data, 16)
    enc = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    for i in range(0, len(padded), 16):
        state = enc.update(xor(state, padded[i : i + 16]))
    assert SM4_SUITE.mac(key, data, iv) == state


def test_mac_iv_sizes() -> None:
    key = bytes(range(16))
    assert SM4_SUITE.mac(key, b"x", b"\x01" * 8) == SM4_SUITE.mac(key, b"x", b"\x01" * 8 + bytes(8))
    assert DES3.mac(key, b"x", b"\x01" * 4) == DES3.mac(key, b"x", b"\x01" * 4 + bytes(4))
    assert DES3.mac(key, b"x", b"") == DES3.mac(key, b"x", bytes(8)) == DES3.mac(key, b"x")
    for bad_iv in (bytes(9), bytes(3)):
        with pytest.raises(InvalidInput):
            DES3.mac(key, b"x", bad_iv)
    with pytest.raises(InvalidInput):
        SM4_SUITE.mac(key, b"x", bytes(17))
    with pytest.raises(InvalidInput):
        DES3.mac(bytes(24), b"x")


# ---- padding, diversification -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "padded"),
    [
        ("", "8000000000000000"),
        ("01", "0180000000000000"),
        ("0102030405060708", "01020304050607088000000000000000"),
    ],
)
def test_padding_method_2(data: str, padded: str) -> None:
    assert pad_m2(h(data), 8) == h(padded)
    assert unpad_m2(h(padded), 8) == h(data)


@settings(deadline=None)
@given(st.binary(max_size=40), st.sampled_from([8, 16]))
def test_padding_round_trip(data: bytes, bs: int) -> None:
    padded = pad_m2(data, bs)
    assert len(padded) % bs == 0 and len(padded) > len(data)
    assert unpad_m2(padded, bs) == data


@pytest.mark.parametrize("bad", ["", "0000000000000000", "0180000000000001", "800000000000000000"])
def test_unpad_rejects(bad: str) -> None:
    with pytest.raises(InvalidInput):
        unpad_m2(h(bad), 8)


def test_diversification_3des_by_hand() -> None:
    mk, d = h("0123456789ABCDEFFEDCBA9876543210"), h("0000000012345678")
    not_d = bytes(b ^ 0xFF for b in d)
    left = des(mk[:8], des(mk[8:], des(mk[:8], d), decrypt=True))
    right = des(mk[:8], des(mk[8:], des(mk[:8], not_d), decrypt=True))
    assert DES3.diversify(mk, d) == left + right


def test_diversification_sm4_by_hand() -> None:
    mk, d = h("0123456789abcdeffedcba9876543210"), h("0000000012345678")
    block = d + bytes(b ^ 0xFF for b in d)
    assert SM4_SUITE.diversify(mk, d) == Cipher(algorithms.SM4(mk), modes.ECB()).encryptor().update(block)


def test_get_suite() -> None:
    assert get_suite("3DES") is DES3 and get_suite(Suite.SM4) is SM4_SUITE
    with pytest.raises(InvalidInput):
        get_suite("AES")
