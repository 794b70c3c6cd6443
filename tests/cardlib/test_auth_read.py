"""Third-generation cards that refuse EF06 (6982) until the terminal authenticates: authenticate-then-read with
a PSAM, and the national interface's two-step HSM read (iReadCardBas_HSM_Step1/Step2).

Field evidence: a third-generation reader notes that a 3.0 card needs the RKSSSE external authentication
before the holder's basic data can be read, and its iReadCardBas_HSM_Step1 gathers region code, ATR,
algorithm flag, card identification code and the challenges for the HSM, Step2 authenticates and reads
EF05/EF06 (gdgly/SI_3rdCard code/SSCARD/SSCARD/SSCARD/SSCARDCtrl.cpp; winkexp/SiChuanActivex
GYHMeter/GYHMeter/GYHMeterCtrl.cpp; a vendor manual: "读三代社保卡,插入 PSAM 卡可读全部信息").
"""

from __future__ import annotations

import json

import pytest

from cardlib import errors
from cardlib.card import SocialSecurityCard
from cardlib.hsm_read import ReadState, hsm_step
from cardlib.layout import EF06
from cardlib.psam import Psam, PsamSecurity
from cardlib.readers.memory import MemoryReader
from sim.issuer import Issuer
from sim.personalize import issue_sample
from sim.psam import SimPsam


def v3_card(**kw):
    sim = issue_sample("li_si", ef06_requires_auth=True, **kw)
    return sim, SocialSecurityCard(MemoryReader(sim))


def psam_sm(issuer=None):
    psam = Psam(MemoryReader(SimPsam(issuer)))
    return psam, PsamSecurity(psam)


def test_the_sim_refuses_ef06_until_external_authenticate():
    sim, card = v3_card()
    card.select_ssse()
    with pytest.raises(errors.SecurityStatusNotSatisfied, match="EF06 record 1"):
        card.read_item(EF06, "social_security_number")
    _, sm = psam_sm()
    card.authenticate_terminal(sm)
    assert card.read_item(EF06, "name") == "李四"
    sim.power_on()  # a reset forgets the authentication
    card.connect()
    with pytest.raises(errors.SecurityStatusNotSatisfied):
        card.read_basic()


def test_without_a_security_module_the_read_says_what_it_needs():
    sim, card = v3_card()
    with pytest.raises(errors.AuthenticationRequired, match="PSAM or the centre's HSM"):
        card.read_basic()
    assert sim.pin.tries_left == 3


def test_authenticate_then_read_with_a_psam():
    sim, card = v3_card()
    psam, sm = psam_sm()
    info = SocialSecurityCard(card.reader, security=sm).read_basic()
    assert info.name == "李四" and info.profile == "generation-3" and not info.warnings
    # SELECT + 7 EF05 + EF06 record 1 (6982) + GET CHALLENGE + EXTERNAL AUTHENTICATE + 6 EF06 = 17
    card2 = SocialSecurityCard(MemoryReader(issue_sample("li_si", ef06_requires_auth=True)))
    card2.read_basic(security=sm)
    assert card2.apdu_count == 17


def test_a_profile_can_authenticate_first():
    from cardlib.profiles import CardProfile

    eager = CardProfile("guangzhou-v3", 3, authenticate_first=True, regions=("4401",))
    _, card = v3_card()
    _, sm = psam_sm()
    card = SocialSecurityCard(card.reader, security=sm, profiles=[eager])
    info = card.read_basic()
    assert info.profile == "guangzhou-v3" and card.apdu_count == 16  # no 6982 first


def test_a_psam_with_the_wrong_keys_is_refused_by_the_card():
    _, card = v3_card()
    _, sm = psam_sm(Issuer())  # another issuer's master keys
    with pytest.raises(errors.ExternalAuthFailed):
        card.read_basic(security=sm)


def test_two_step_hsm_read_with_a_serialisable_state():
    sim, card = v3_card(t0=True)
    _, sm = psam_sm()  # any SecurityModule can play the HSM's part
    state = card.read_basic_step1()
    wire = json.dumps(state.to_dict())  # e.g. kept by a reader bridge between two HTTP calls
    request = state.request()
    assert set(request) == {"region_code", "atr", "algorithm", "suite", "card_id", "random", "response", "challenge"}
    assert request["algorithm"] == "03" and request["region_code"] == "440100"
    assert "李四" not in json.dumps(request) and request["card_id"].startswith("440100")
    cryptogram = hsm_step(sm, json.loads(json.dumps(request)))
    again = SocialSecurityCard(card.reader, connected=True)  # a new object: only the state carries over
    info = again.read_basic_step2(ReadState.from_dict(json.loads(wire)), cryptogram)
    assert info.name == "李四" and info.card_id == state.card_id and info.spec_version == "3.00"
    assert card.apdu_count + again.apdu_count <= 19  # T=0: INTERNAL AUTHENTICATE costs a GET RESPONSE


def test_two_step_catches_a_counterfeit_and_a_wrong_cryptogram():
    counterfeit = issue_sample("li_si", ef06_requires_auth=True, issuer=Issuer())
    card = SocialSecurityCard(MemoryReader(counterfeit))
    _, sm = psam_sm()
    state = card.read_basic_step1()
    with pytest.raises(errors.CounterfeitCard):
        hsm_step(sm, state.request())
    _, card = v3_card()
    state = card.read_basic_step1()
    with pytest.raises(errors.ExternalAuthFailed):
        card.read_basic_step2(state, bytes(16))


@pytest.mark.parametrize(
    "bad",
    [{}, {"card_id": "zz"}, {"ef05": {"01": [1, "00"]}}, {"suite": "RC4"}, {"random": 5}, {"ef05": []}],
)
def test_a_damaged_state_is_refused(bad):
    _, card = v3_card()
    d = card.read_basic_step1().to_dict()
    d.update(bad)
    if bad == {}:
        d.pop("challenge")
    with pytest.raises(ValueError, match="not a card read state"):
        ReadState.from_dict(d)
    with pytest.raises(ValueError, match="not a card read request"):
        hsm_step(psam_sm()[1], {"card_id": "zz"})
