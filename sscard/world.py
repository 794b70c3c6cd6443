"""A small simulated world for demos and end-to-end tests: the sample card holders enrolled at the centre.

`seed(engine)` registers each sample holder as an insured person (person id = the social security number
on the card, so a terminal finds the person from the card) with their card enrolled at the centre (number,
identification code, spec version, dates: `enrol_card`), a few designated institutions, personal account
money for the employee, and a pension for the retirees (certified at enrolment by their community office),
issued for the current month. Idempotent.

`issue_and_enrol(engine, holder)` is the simulated issuer's one step: personalise a card for a holder (a
new card number and identification code for a replacement: `new_card`) and enrol it at the centre, as the
person's first card or as the replacement of their card. Test and demo use only: a real card is enrolled by
the issuing bureau's import or at a service hall (`sscard centre card issue`).

Given the centre's HSM (`seed(engine, hsm=...)`, keys from `sim.issuer.install_into_hsm`), it also does
what issuance does for the online PIN check: each card's initial PIN becomes a format-0 PIN block under the
SM4 terminal PIN key inside the HSM (`encrypt_pin`), then the HSM's one-way `pin_reference` under the PVK,
recorded for the person and card at the centre (`registry.set_pin_reference`). The PAN is the social
security number (`settlement.wire.pin_pan`). Neither the PIN nor the block is kept.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from settlement.wire import Card, pin_pan
from sim.card import SimCard
from sim.issuer import Issuer, pik_label, pvk_label
from sim.personalize import Holder, issue_card, load_holder, sample_holders

#: sample holder -> (region of record, insured category, personal account deposit in fen, monthly pension in fen)
PEOPLE = {
    "zhang_san": ("110000", "employee", 5_000_00, 0),
    "li_si": ("990100", "resident", 0, 0),
    "wang_xiuying": ("110000", "retiree", 800_00, 4_200_00),
    "zhao_deming": ("990100", "resident", 0, 0),
}
#: institution code -> (name, region, level)
INSTITUTIONS = {
    "H11000301": ("北京示例第三医院 Beijing sample level-3 hospital", "110000", "3"),
    "H11000101": ("北京示例社区医院 Beijing sample level-1 hospital", "110000", "1"),
    "S11000001": ("北京示例社保服务大厅 Beijing sample service hall", "110000", "community"),
    "H99010101": ("示例市第一医院 Example City level-1 hospital", "990100", "1"),
}


def person_id(stem: str) -> str:
    return str(load_holder(sample_holders()[stem]).holder["social_security_number"])


def card_no(stem: str) -> str:
    """The card number of a sample holder's card (the proof of the card the centre asks a terminal for)."""
    return str(load_holder(sample_holders()[stem]).card["card_number"])


def enrol_pin(engine, hsm, person: str, card_no: str, pin: str, prefix: str = "SSSE") -> None:
    """Issuance: record the PIN reference of `pin` for the person's card (through the HSM, see above)."""
    pan = pin_pan(person)
    pik = pik_label("SM4", prefix)
    reference = hsm.pin_reference(pik, pvk_label(prefix), hsm.encrypt_pin(pik, pin, pan), pan)
    engine.registry.set_pin_reference(person, card_no, reference, actor="issuance")


def _date(value: object) -> dt.date | None:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)) if value else None


def enrol_card(engine, h: Holder, *, replace: bool = False, actor: str = "issuer",
               reason: str = "personalised and enrolled by the issuer") -> Card:
    """Enrol holder `h`'s card at the centre (person id = its social security number): as the person's card
    (`issue`; it completes a card number enrolled earlier without its identification code) or, with
    `replace`, as the replacement of their card."""
    c = h.card
    enrol = engine.cards.replace if replace else engine.cards.issue
    return enrol(str(h.holder["social_security_number"]), str(c["card_number"]), str(c["card_id"]), actor=actor,
                 reason=reason, spec_version=str(c.get("spec_version", "2.00")), issued_on=_date(c.get("issue_date")),
                 expires_on=_date(c.get("expiry_date")))


def new_card(h: Holder, card_number: str, card_id: str) -> Holder:
    """The same holder with another card (a replacement: new number and identification code)."""
    return dataclasses.replace(h, card={**h.card, "card_number": card_number, "card_id": card_id})


def issue_and_enrol(engine, h: Holder, *, replace: bool = False, issuer: Issuer | None = None,
                    actor: str = "issuer", **card_options: object) -> SimCard:
    """The simulated issuer in one step: personalise a card for `h` and enrol it at the centre (see above).
    A holder file the card cannot hold is refused (HolderError) before anything is enrolled."""
    card = issue_card(h, issuer=issuer, **card_options)  # type: ignore[arg-type]
    enrol_card(engine, h, replace=replace, actor=actor)
    return card


def seed(engine, today: dt.date | None = None, *, hsm=None, prefix: str = "SSSE") -> dict[str, str]:
    """Enrol the sample holders and institutions (and, with `hsm`, their PIN references); returns sample
    stem -> person id."""
    today = today or engine.today()
    reg = engine.registry
    for code, (name, region, level) in INSTITUTIONS.items():
        reg.add_institution(code, name, region, level)
    ids = {}
    for stem, (region, category, deposit, pension) in PEOPLE.items():
        h = load_holder(sample_holders()[stem])
        pid = str(h.holder["social_security_number"])
        reg.add_person(pid, h.name, region, category, card_no=str(h.card["card_number"]))
        enrol_card(engine, h)
        if hsm is not None:
            enrol_pin(engine, hsm, pid, str(h.card["card_number"]), h.pin, prefix)
        if deposit:
            reg.deposit(f"seed:deposit:{pid}", pid, deposit)
        if pension:
            month = today.strftime("%Y-%m")
            engine.pensions.enrol(pid, pension, month)
            # certified at enrolment by the region's community office, so this month's pension is issued
            engine.identity.certify(f"seed:certify:{pid}", pid, "assisted", actor="seed", agent_id="community-office",
                                    agent_region=region)
        ids[stem] = pid
    for region in {r for r, *_ in PEOPLE.values()}:
        engine.pensions.issue_month(region, today.strftime("%Y-%m"), actor="seed")
    return ids
