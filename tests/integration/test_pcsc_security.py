"""Mutual authentication and a protected record write through pcscd: user card on slot 0, PSAM on slot 1."""

from __future__ import annotations

import os

import pytest

from cardlib import errors, layout
from cardlib.card import SocialSecurityCard
from cardlib.psam import Psam, PsamSecurity
from cardlib.readers.pcsc import PcscReader
from sim.issuer import Issuer
from sim.personalize import issue_card, issue_sample, load_holder, sample_holders
from sim.psam import SimPsam


@pytest.fixture
def terminal_slots(slots):
    """Slot 1 holds a PSAM for the test, then gets its user card back."""
    s0, s1 = slots
    card0, card1 = s0.card, s1.card
    s1.replace(SimPsam(terminal_number="440100000077"))  # type: ignore[arg-type]
    yield s0, s1
    s1.replace(card1)
    if s0.card is not card0:
        s0.replace(card0)


@pytest.mark.parametrize("stem,suite", [("zhang_san", "3DES"), ("li_si", "SM4")])
def test_mutual_authentication_and_protected_write_through_pcscd(terminal_slots, stem, suite):
    s0, s1 = terminal_slots
    if s0.card.label != load_holder(sample_holders()[stem]).name:
        s0.replace(issue_sample(stem))
    with PcscReader(s0.reader) as ur, PcscReader(s1.reader) as pr:
        card, psam = SocialSecurityCard(ur), Psam(pr)
        sm = PsamSecurity(psam)
        assert psam.terminal_number() == "440100000077"
        info = card.read_basic()
        assert info.national(psam.terminal_number()).split("|")[9] == "440100000077"
        assert card.identity()[1] == suite
        card.authenticate(sm)
        record = os.urandom(layout.DF04_TRANSACTIONS.record_length)
        card.append_record(sm, layout.DF04, layout.DF04_TRANSACTIONS, record)
        assert card.read_record(layout.DF04_TRANSACTIONS.sfi, 1, len(record)) == record


def test_counterfeit_card_through_pcscd(terminal_slots):
    s0, s1 = terminal_slots
    s0.replace(issue_card(load_holder(sample_holders()["zhang_san"]), issuer=Issuer()))
    with PcscReader(s0.reader) as ur, PcscReader(s1.reader) as pr:
        card = SocialSecurityCard(ur)
        with pytest.raises(errors.CounterfeitCard):
            card.authenticate(PsamSecurity(Psam(pr)))
        with pytest.raises(errors.SecurityStatusNotSatisfied):
            card.append_record(PsamSecurity(Psam(pr)), layout.DF04, layout.DF04_TRANSACTIONS, bytes(48))


@pytest.mark.parametrize("stem,suite", [("zhang_san", "3DES"), ("li_si", "SM4")])
def test_application_blocked_and_unblocked_through_pcscd(terminal_slots, stem, suite):
    """APPLICATION BLOCK (84 1E 00 00) with the PSAM's MAC, then APPLICATION UNBLOCK (84 18 00 00), as a
    counter does for a blacklisted card and for the same card once unlocked (the field evidence is cited in
    sim/card_security.py)."""
    s0, s1 = terminal_slots
    s0.replace(issue_sample(stem))
    with PcscReader(s0.reader) as ur, PcscReader(s1.reader) as pr:
        card, sm = SocialSecurityCard(ur), PsamSecurity(Psam(pr))
        card.read_basic()
        assert card.identity()[1] == suite and not card.application_blocked(layout.DF04)
        card.block_application(sm, layout.DF04)  # no terminal authentication: the MAC is the authority
        with pytest.raises(errors.CardBlocked) as blocked:
            card.append_record(sm, layout.DF04, layout.DF04_TRANSACTIONS, bytes(48))
        assert blocked.value.until_unblocked
        assert card.read_basic().card_number  # the card's identity still reads
    with PcscReader(s0.reader) as ur, PcscReader(s1.reader) as pr:  # a new session: the block is on the card
        card, sm = SocialSecurityCard(ur), PsamSecurity(Psam(pr))
        card.read_basic()
        assert card.application_blocked(layout.DF04)
        assert card.unblock_application(sm, layout.DF04)
        assert not card.unblock_application(sm, layout.DF04)  # nothing to do twice
        card.authenticate(sm)
        record = os.urandom(layout.DF04_TRANSACTIONS.record_length)
        card.append_record(sm, layout.DF04, layout.DF04_TRANSACTIONS, record)
        assert card.read_record(layout.DF04_TRANSACTIONS.sfi, 1, len(record)) == record
