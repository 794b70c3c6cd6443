"""A small simulated world for demos and end-to-end tests: the sample card holders enrolled at the centre.

`seed(engine)` registers each sample holder as an insured person (person id = the social security number
on the card, so a terminal finds the person from the card), a few designated institutions, personal
account money for the employee, and a pension for the retirees (certified at enrolment by their community
office), issued for the current month. Idempotent.
"""

from __future__ import annotations

import datetime as dt

from sim.personalize import load_holder, sample_holders

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


def seed(engine, today: dt.date | None = None) -> dict[str, str]:
    """Enrol the sample holders and institutions; returns sample stem -> person id."""
    today = today or dt.date.today()
    reg = engine.registry
    for code, (name, region, level) in INSTITUTIONS.items():
        reg.add_institution(code, name, region, level)
    ids = {}
    for stem, (region, category, deposit, pension) in PEOPLE.items():
        h = load_holder(sample_holders()[stem])
        pid = str(h.holder["social_security_number"])
        reg.add_person(pid, h.name, region, category, card_no=str(h.card["card_number"]))
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
