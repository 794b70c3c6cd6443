"""The HSM path: mutual authentication and protected writes with the centre's HSM instead of a PSAM."""

from __future__ import annotations

import os

import pytest

from cardlib import errors, layout
from cardlib.card import SocialSecurityCard
from cardlib.readers.memory import MemoryReader
from hsm_client.client import HsmClient
from hsm_mock import KeyStore, Lmk, LocalHsm
from hsm_mock.access import AccessPolicy
from hsm_mock.server import ServerThread
from sim.issuer import Issuer, install_into_hsm
from sim.personalize import issue_card, load_holder, sample_holders
from terminal.security import HsmSecurity

TX = layout.DF04_TRANSACTIONS


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


LMK = Lmk.ephemeral()
ACCESS = AccessPolicy.of(LMK, {"T0001": "terminal"})


@pytest.fixture(scope="module")
def local_hsm(issuer):
    store = KeyStore(LMK)
    hsm = LocalHsm(store)
    labels = install_into_hsm(issuer, hsm, lambda *a: store.load_components(a[0], "KEK", *a[1:]))
    assert "SSSE-SM4-EAK" in labels and "SSSE-3DES-MAK_DF04" in labels
    yield hsm
    hsm.close()


@pytest.fixture(scope="module")
def tcp_hsm(local_hsm):
    server = ServerThread(local_hsm, access=ACCESS)
    server.start()
    client = HsmClient(*server.address, credential=ACCESS.credential("T0001"), pool_size=2)
    yield client
    client.close()
    server.stop()


def card_for(stem: str, issuer: Issuer):
    sim = issue_card(load_holder(sample_holders()[stem]), issuer=issuer)
    return sim, SocialSecurityCard(MemoryReader(sim))


@pytest.mark.parametrize("stem", ["zhang_san", "li_si"])
@pytest.mark.parametrize("where", ["local", "tcp"])
def test_mutual_authentication_and_protected_write_via_hsm(stem, where, issuer, local_hsm, tcp_hsm):
    sm = HsmSecurity(local_hsm if where == "local" else tcp_hsm)
    sim, card = card_for(stem, issuer)
    card.authenticate(sm)
    rec = os.urandom(TX.record_length)
    card.append_record(sm, layout.DF04, TX, rec)
    assert card.read_record(TX.sfi, 1, TX.record_length) == rec


@pytest.mark.parametrize("stem", ["zhang_san", "li_si"])
def test_application_blocked_and_unblocked_with_the_hsms_mac(stem, issuer, tcp_hsm):
    """What a counter without a PSAM does to a blacklisted card (APPLICATION BLOCK) and to the same card once
    unlocked (APPLICATION UNBLOCK), both suites; another province's keys change nothing on the card."""
    sim, card = card_for(stem, issuer)
    card.read_basic()
    with pytest.raises(errors.SecurityModuleError):
        card.block_application(HsmSecurity(tcp_hsm, prefix="OTHER-PROVINCE"), layout.DF04)
    assert not sim.blocked_apps
    sm = HsmSecurity(tcp_hsm)
    card.block_application(sm, layout.DF04)
    assert sim.blocked_apps == {"DF04": False} and card.application_blocked(layout.DF04)
    with pytest.raises(errors.CardBlocked):
        card.append_record(sm, layout.DF04, TX, bytes(TX.record_length))
    assert card.unblock_application(sm, layout.DF04) and not sim.blocked_apps
    card.authenticate(sm)
    card.append_record(sm, layout.DF04, TX, bytes(TX.record_length))


def test_counterfeit_caught_by_the_hsm(issuer, tcp_hsm):
    _sim, card = card_for("li_si", Issuer())
    with pytest.raises(errors.CounterfeitCard):
        card.authenticate(HsmSecurity(tcp_hsm))


def test_hsm_without_the_keys_is_a_typed_security_error(issuer, tcp_hsm):
    _sim, card = card_for("zhang_san", issuer)
    with pytest.raises(errors.SecurityModuleError):
        card.authenticate(HsmSecurity(tcp_hsm, prefix="OTHER-PROVINCE"))


def test_psam_for_one_province_hands_other_cards_to_the_hsm(issuer, tcp_hsm):
    """A Guangzhou card at a Beijing counter: the PSAM (Beijing keys only) declines, the HSM serves it."""
    from cardlib.psam import Psam, PsamSecurity
    from sim.psam import SimPsam
    from terminal.daemon import FallbackSecurity

    psam = PsamSecurity(Psam(MemoryReader(SimPsam(issuer))), regions={"11"})
    sm = FallbackSecurity(psam, HsmSecurity(tcp_hsm))
    _sim, card = card_for("li_si", issuer)  # region 440100
    with pytest.raises(errors.SecurityModuleError):
        card.authenticate(psam)
    card.authenticate(sm)
    card.append_record(sm, layout.DF04, TX, bytes(TX.record_length))
    _sim, beijing = card_for("zhang_san", issuer)
    beijing.authenticate(psam)  # the PSAM's own region


@pytest.mark.parametrize("where", ["local", "tcp"])
def test_third_generation_card_read_with_the_hsm(where, issuer, local_hsm, tcp_hsm):
    """A v3 card refusing EF06 until the terminal authenticates: read_basic with the HSM, and the national
    interface's two steps (terminal, HSM, terminal)."""
    from cardlib.hsm_read import ReadState, hsm_step

    sm = HsmSecurity(local_hsm if where == "local" else tcp_hsm)
    sim = issue_card(load_holder(sample_holders()["li_si"]), issuer=issuer, ef06_requires_auth=True)
    card = SocialSecurityCard(MemoryReader(sim))
    with pytest.raises(errors.AuthenticationRequired):
        card.read_basic()
    assert card.read_basic(security=sm).name == "李四"
    sim.power_on()
    card.connect()
    state = card.read_basic_step1()
    cryptogram = hsm_step(sm, state.request())
    info = card.read_basic_step2(ReadState.from_dict(state.to_dict()), cryptogram)
    assert info.name == "李四" and info.spec_version == "3.00"
    counterfeit = SocialSecurityCard(MemoryReader(issue_card(load_holder(sample_holders()["li_si"]),
                                                             issuer=Issuer(), ef06_requires_auth=True)))
    with pytest.raises(errors.CounterfeitCard):
        hsm_step(sm, counterfeit.read_basic_step1().request())
