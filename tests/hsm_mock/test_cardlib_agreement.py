"""Contract test: the mock HSM and cardlib.crypto (the card side, used by sim/) compute the same card keys,
cryptograms and protected-write MACs. hsm_mock itself imports nothing from cardlib; only this test does."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardlib import crypto
from hsm_mock.commands import LocalHsm
from hsm_mock.keystore import KeyStore, Lmk
from hsm_mock.suites import get_suite

HSM = LocalHsm(KeyStore(Lmk.ephemeral()))
MASTER = bytes.fromhex("8899AABBCCDDEEFF0011223344556677")
for _suite in ("3DES", "SM4"):
    HSM.keystore.load_components(f"mk.{_suite}", "MK", _suite, [MASTER], get_suite(_suite).kcv(MASTER))


@pytest.mark.parametrize("suite", ["3DES", "SM4"])
@settings(deadline=None, max_examples=40)
@given(card_id=st.binary(min_size=16, max_size=16), data=st.binary(max_size=40), short=st.booleans())
def test_same_answers(suite: str, card_id: bytes, data: bytes, short: bool) -> None:
    card = crypto.suite_for(suite)
    card_key = card.diversify(MASTER, crypto.factor(card_id))
    assert HSM.diversify(f"mk.{suite}", card_id).kcv == card.kcv(card_key)
    challenge = bytes(range(1, card.challenge_size + 1))
    assert HSM.ext_auth_cryptogram(f"mk.{suite}", card_id, challenge) == card.encrypt(card_key, challenge)
    header = bytes([0x04, 0xDC, 0x01, 0x0C])
    iv = challenge[:8] if short else challenge  # an SM4 card may give an 8-byte challenge
    message = header + bytes([len(data) + 4]) + data
    assert HSM.session_mac(f"mk.{suite}", card_id, iv, message) == card.command_mac(card_key, header, data, iv)
