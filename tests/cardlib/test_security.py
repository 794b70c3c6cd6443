"""Cipher suites, the PSAM, mutual authentication and MAC-protected writes against the simulated card."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from cardlib import errors, layout
from cardlib.apdu import CommandAPDU
from cardlib.card import SocialSecurityCard
from cardlib.crypto import DES3, SM4_SUITE, CryptoError, factor, pad, suite_for
from cardlib.layout import KeyType
from cardlib.psam import Psam, PsamSecurity
from cardlib.readers.memory import MemoryReader
from cardlib.reading import BASE_PROFILE
from sim.issuer import Issuer
from sim.personalize import issue_card, issue_sample, load_holder, sample_holders
from sim.psam import SimPsam

TX = layout.DF04_TRANSACTIONS
DF04_ITEMS = layout.DF04.files[0]


# ---- known answers -----------------------------------------------------------------------------------------
def test_sm4_gbt_32907_example():
    k = bytes.fromhex("0123456789abcdeffedcba9876543210")
    assert SM4_SUITE.encrypt(k, k).hex() == "681edf34d206965e86b3e94f536e4246"
    assert SM4_SUITE.decrypt(k, bytes.fromhex("681edf34d206965e86b3e94f536e4246")) == k


def test_des_fips81_example_through_the_3des_suite():
    # FIPS 81 (appendix B): DES key 0123456789ABCDEF, "Now is t" -> 3FA40E8A984D4815. A double-length key
    # with equal halves is single DES.
    k = bytes.fromhex("0123456789ABCDEF")
    assert DES3.encrypt(k + k, b"Now is t").hex().upper() == "3FA40E8A984D4815"


def _des(key8: bytes, block: bytes) -> bytes:
    e = Cipher(TripleDES(key8 * 3), modes.ECB()).encryptor()
    return e.update(block) + e.finalize()


def _des_inv(key8: bytes, block: bytes) -> bytes:
    d = Cipher(TripleDES(key8 * 3), modes.ECB()).decryptor()
    return d.update(block) + d.finalize()


def test_retail_mac_is_iso9797_algorithm_3_built_from_single_des():
    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    kl, kr = key[:8], key[8:]
    for data, iv in ((b"Now is the time for all ", bytes(8)), (os.urandom(13), os.urandom(8)), (b"", bytes(8))):
        msg = pad(data, 8)
        h = iv
        for i in range(0, len(msg), 8):
            h = _des(kl, bytes(a ^ b for a, b in zip(msg[i : i + 8], h, strict=True)))
        h = _des(kl, _des_inv(kr, h))
        assert DES3.mac(key, data, iv) == h


def test_sm4_mac_is_cbc_over_padded_data():
    key, iv = os.urandom(16), os.urandom(16)
    data = os.urandom(21)
    c = Cipher(__import__("cryptography.hazmat.primitives.ciphers.algorithms", fromlist=["SM4"]).SM4(key),
               modes.CBC(iv)).encryptor()
    assert SM4_SUITE.mac(key, data, iv) == (c.update(pad(data, 16)) + c.finalize())[-16:]


def test_diversification_is_ecb_of_factor_and_complement():
    mk = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    d = bytes.fromhex("0102030405060708")
    nd = bytes(b ^ 0xFF for b in d)
    assert DES3.diversify(mk, d) == DES3.encrypt(mk, d) + DES3.encrypt(mk, nd)
    assert SM4_SUITE.diversify(mk, d) == SM4_SUITE.encrypt(mk, d + nd)
    assert factor(bytes(range(16))) == bytes(range(8, 16))


@pytest.mark.parametrize(
    "bad",
    [
        lambda: DES3.encrypt(bytes(8), bytes(8)),
        lambda: SM4_SUITE.encrypt(bytes(16), bytes(5)),
        lambda: DES3.diversify(bytes(16), bytes(7)),
        lambda: suite_for("AES"),
        lambda: factor(bytes(15)),
    ],
)
def test_bad_sizes_are_typed_errors(bad):
    with pytest.raises(CryptoError):
        bad()


# ---- the card and the PSAM -----------------------------------------------------------------------------------
def terminal(stem: str = "zhang_san", *, psam_issuer: Issuer | None = None, card_issuer: Issuer | None = None):
    h = load_holder(sample_holders()[stem])
    sim = issue_card(h, issuer=card_issuer)
    card = SocialSecurityCard(MemoryReader(sim))
    psam = Psam(MemoryReader(SimPsam(psam_issuer)))
    return sim, card, PsamSecurity(psam)


def records(sim):
    return list(sim.mf.children[0xDDF1].children[0xDF04].children[0xEF15].records)


@pytest.mark.parametrize("stem,suite", [("zhang_san", "3DES"), ("li_si", "SM4")])
def test_mutual_authentication_and_protected_append(stem, suite):
    sim, card, sm = terminal(stem)
    assert card.identity()[1] == suite
    card.authenticate(sm)
    rec = os.urandom(48)
    card.append_record(sm, layout.DF04, TX, rec)
    assert card.read_record(TX.sfi, 1, 48) == rec
    rec2 = os.urandom(48)
    card.append_record(sm, layout.DF04, TX, rec2)
    assert records(sim)[:2] == [rec2, rec]  # cyclic: newest first


def test_cyclic_file_keeps_the_newest_records():
    sim, card, sm = terminal()
    card.authenticate(sm)
    for i in range(TX.max_records + 3):
        card.append_record(sm, layout.DF04, TX, bytes([i]) * 48)
    recs = records(sim)
    assert len(recs) == TX.max_records and recs[0][0] == TX.max_records + 2


def test_protected_update_of_a_df_item():
    sim, card, sm = terminal()
    card.authenticate(sm)
    recno = BASE_PROFILE.record_number(DF04_ITEMS, DF04_ITEMS.item("insured_category"))
    assert recno == 2  # record 2 carries tag 51
    card.update_record(sm, layout.DF04, DF04_ITEMS, recno, b"\x51\x012")
    assert card.read_item(DF04_ITEMS, "insured_category") == "2"


def test_psam_terminal_number():
    _, _, sm = terminal()
    assert sm.psam.terminal_number() == "110100000001"


# ---- what must be refused, with nothing changed ------------------------------------------------------------------
def raw_protected(card, sm, *, tamper=False, cla=0x04, reuse=None):
    """Build an APPEND RECORD with a MAC by hand; return (apdu, challenge) for replays."""
    card_id, suite = card.identity()
    card.select_application(layout.DF04)
    ch = card.get_challenge(suite_for(suite).block)
    data = bytes(48)
    header = bytes((0x04, 0xE2, 0x00, TX.sfi << 3))
    mac = sm.command_mac(KeyType.MAK_DF04, card_id, suite, ch, header, data)
    if tamper:
        mac = bytes([mac[0] ^ 1]) + mac[1:]
    return CommandAPDU(cla, 0xE2, 0x00, TX.sfi << 3, data + (mac if cla == 0x04 else b""))


def test_tampered_mac_is_rejected_and_nothing_written():
    sim, card, sm = terminal()
    card.authenticate(sm)
    with pytest.raises(errors.MacWrong):
        card.channel.check(raw_protected(card, sm, tamper=True))
    assert records(sim) == []


def test_missing_mac_is_rejected():
    sim, card, sm = terminal()
    card.authenticate(sm)
    with pytest.raises(errors.MacMissing):
        card.channel.check(raw_protected(card, sm, cla=0x00))
    assert records(sim) == []


def test_replayed_command_is_rejected():
    sim, card, sm = terminal()
    card.authenticate(sm)
    apdu = raw_protected(card, sm)
    card.channel.check(apdu)
    assert len(records(sim)) == 1
    with pytest.raises(errors.ChallengeInvalid):  # the challenge it was made for is spent
        card.channel.check(apdu)
    card.get_challenge(8)
    with pytest.raises(errors.MacWrong):  # a new challenge: the old MAC no longer fits
        card.channel.check(apdu)
    assert len(records(sim)) == 1


def test_write_without_terminal_authentication_is_refused():
    sim, card, sm = terminal()
    with pytest.raises(errors.SecurityStatusNotSatisfied):
        card.append_record(sm, layout.DF04, TX, bytes(48))
    assert records(sim) == []


def test_issuer_files_never_change():
    sim, card, sm = terminal()
    card.authenticate(sm)
    card.select_ssse()
    with pytest.raises(errors.ConditionsNotSatisfied):
        card.channel.check(CommandAPDU(0x04, 0xDC, 0x02, layout.EF06.p2_sfi, bytes(36)))


def test_wrong_cryptogram_counts_down_and_locks_the_key():
    other = Issuer()
    sim, card, sm = terminal(psam_issuer=other)  # a PSAM with another issuer's keys
    for left in (4, 3, 2, 1):
        with pytest.raises(errors.ExternalAuthFailed) as e:
            card.authenticate_terminal(sm)
        assert e.value.tries_left == left
    with pytest.raises(errors.ExternalAuthFailed) as e:
        card.authenticate_terminal(sm)
    assert e.value.tries_left == 0
    with pytest.raises(errors.SecurityStatusNotSatisfied):
        card.append_record(sm, layout.DF04, TX, bytes(48))
    assert records(sim) == []


def test_counterfeit_card_is_caught():
    sim, card, sm = terminal(card_issuer=Issuer())  # same data, another issuer's keys
    assert card.read_basic().name == "张三"  # reads fine: basic data is not protected
    with pytest.raises(errors.CounterfeitCard):
        card.authenticate(sm)


def test_external_authentication_without_challenge():
    sim, card, sm = terminal()
    card.select_ssse()
    with pytest.raises(errors.ChallengeInvalid):
        card.channel.check(CommandAPDU(0x00, 0x82, 0x00, KeyType.EAK.value, bytes(8)))


def test_blocked_pin_unblocked_and_reloaded_with_issuer_keys():
    sim, card, sm = terminal()
    for _ in range(3):
        with pytest.raises((errors.PinWrong, errors.PinBlocked)):
            card.verify_pin("000000")
    with pytest.raises(errors.PinBlocked):
        card.verify_pin("123456")
    card.unblock_pin(sm)
    card.verify_pin("123456")
    card.reload_pin(sm, "808080")
    card.verify_pin("808080")


def test_pin_unblock_with_a_wrong_key_changes_nothing():
    sim, card, sm = terminal(psam_issuer=Issuer())
    for _ in range(3):
        with pytest.raises((errors.PinWrong, errors.PinBlocked)):
            card.verify_pin("000000")
    with pytest.raises(errors.MacWrong):
        card.unblock_pin(sm)
    assert sim.pin.blocked


def test_application_and_card_block():
    sim, card, sm = terminal()
    card.authenticate(sm)
    card.block_application(sm, layout.DF04)
    with pytest.raises(errors.CardBlocked):
        card.append_record(sm, layout.DF04, TX, bytes(48))
    card.read_basic()  # the rest of the card still works
    card.block_card(sm)
    with pytest.raises(errors.CardBlocked):
        SocialSecurityCard(card.reader).read_basic()


def mac_command(card, sm, ins: int, p2: int = 0, *, tamper: bool = False, df=layout.DF04) -> CommandAPDU:
    """84 ins 00 p2 04 MAC, the MAC under `df`'s maintenance key over a fresh challenge."""
    card_id, suite = card.identity()
    challenge = card.get_challenge(suite_for(suite).block)
    mac = sm.command_mac(layout.maintenance_key(df.name), card_id, suite, challenge, bytes((0x84, ins, 0, p2)), b"")
    return CommandAPDU(0x84, ins, 0x00, p2, bytes([mac[0] ^ 1]) + mac[1:] if tamper else mac)


def sw(card, cmd: CommandAPDU) -> int:
    return card.channel.send(cmd).sw


def select_df04(card) -> int:
    card.select_ssse()
    card.forget_selection()
    return sw(card, CommandAPDU(0x00, 0xA4, 0x00, 0x00, b"\xdf\x04"))


@pytest.mark.parametrize("stem", ["zhang_san", "li_si"])
def test_application_block_until_unblocked_as_a_real_card_answers(stem):
    """Field behaviour (sim/card_security.py cites it): 6283 on SELECT of the blocked application, which is
    selected all the same; 6A81 for its other commands; APPLICATION UNBLOCK with the MAC lifts it; a wrong MAC
    is 6988 and changes nothing; a short MAC 6700; P2 other than 00/01 6A86."""
    sim, card, sm = terminal(stem)
    card.read_basic()
    assert select_df04(card) == 0x9000
    assert sw(card, mac_command(card, sm, 0x1E, tamper=True)) == 0x6988 and not sim.blocked_apps
    assert sw(card, CommandAPDU(0x84, 0x1E, 0x00, 0x00, b"\x11\x22\x33")) == 0x6700
    assert sw(card, mac_command(card, sm, 0x1E, p2=0x02)) == 0x6A86
    assert sw(card, mac_command(card, sm, 0x1E)) == 0x9000 and sim.blocked_apps == {"DF04": False}
    assert select_df04(card) == 0x6283
    assert sw(card, CommandAPDU(0x00, 0xB2, 0x01, (TX.sfi << 3) | 4, b"", 48)) == 0x6A81  # blocked: no reads
    assert sw(card, mac_command(card, sm, 0x18, tamper=True)) == 0x6988 and sim.blocked_apps
    assert sw(card, mac_command(card, sm, 0x18)) == 0x9000 and not sim.blocked_apps
    assert select_df04(card) == 0x9000


def test_a_permanent_block_cannot_be_unblocked():
    sim, card, sm = terminal()
    card.read_basic()
    card.block_application(sm, layout.DF04, permanent=True)
    assert select_df04(card) == 0x9303
    with pytest.raises(errors.CardBlocked) as e:
        card.unblock_application(sm, layout.DF04)
    assert not e.value.until_unblocked
    with pytest.raises(errors.CardBlocked):
        card.append_record(sm, layout.DF04, TX, bytes(48))


def test_unblock_with_another_issuers_keys_changes_nothing():
    sim, card, _ = terminal()
    card.read_basic()
    _, _, right = terminal()
    card.block_application(PsamSecurity(Psam(MemoryReader(SimPsam()))), layout.DF04)
    wrong = PsamSecurity(Psam(MemoryReader(SimPsam(Issuer()))))
    with pytest.raises(errors.MacWrong):
        card.unblock_application(wrong, layout.DF04)
    assert sim.blocked_apps == {"DF04": False}
    assert card.unblock_application(right, layout.DF04) and not sim.blocked_apps


def test_psam_refuses_unknown_keys_and_bad_requests():
    psam = Psam(MemoryReader(SimPsam()))
    with pytest.raises(errors.SecurityModuleError):
        psam.encrypt(bytes(8))  # no working key yet
    assert psam.channel.transport.transmit(b"\x80") == b"\x67\x00"  # junk gets a status word
    assert psam.channel.transport.transmit(b"\x80\x1a\x77\x01\x08" + bytes(8)) == b"\x6a\x88"


def test_sample_cards_of_both_suites_authenticate_through_one_psam():
    psam = PsamSecurity(Psam(MemoryReader(SimPsam())))
    for stem in sample_holders():
        card = SocialSecurityCard(MemoryReader(issue_sample(stem)))
        card.authenticate(psam)
