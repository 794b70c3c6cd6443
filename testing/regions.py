"""A country's day, end to end: N regional centres, each its own settlement engine on its own store (its own
PostgreSQL database), driven from one seed; a visit across regions is settled by the insured person's region;
then each region clears what it settled across regions, the statements are netted nationally, and every
region reconciles the terminal journal lines it answered.

    country = Country({"110000": engine_bj, "990100": engine_ex}, DayClock(day))
    pop = population(seed, regions=...)
    install(country, pop)                                    # institutions everywhere, the insured at home
    day = region_day(country, pop, seed=7, visits=600)       # 10% of visits across regions
    outcome = close_day(country, pop, day)                   # clearing + national netting + reconciliation
    assert outcome.clean

Terminals belong to their hospital's region and send a local visit (register, settle; a refund later) to their
own centre and a visit of a person insured elsewhere to the insured region's centre (as the national platform
routes 异地就医 to the 参保地). Each centre therefore knows every designated institution but only its own
insured. Faults heal as the one-centre generator's do (testing/load.py): a lost answer makes the terminal void,
a refusal is journalled as failed. Everything runs on one DayClock shared by the centres, so the same seed and
day give the same requests, postings and journals.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from dataclasses import dataclass, field

from settlement.errors import SettlementError
from settlement.ledger import CST
from settlement.reconcile.clearing import Clearing, ClearingResult
from settlement.reconcile.reconciler import Reconciler
from settlement.reconcile.report import Report
from settlement.schemes.engine import Engine
from settlement.wire import JournalLine
from testing.load import DayClock, DayOutcome, Population, _bill, _Terminal

CROSS_REGION = 0.10


@dataclass
class Country:
    """The regional centres, by region code, and the clock they share."""

    centres: dict[str, Engine]
    clock: DayClock

    def centre(self, region: str) -> Engine:
        return self.centres[region]


def install(country: Country, pop: Population) -> None:
    """Every institution in every centre (a settlement of another region's hospital names it); each insured
    person, their deposit, pension and certification in their own region's centre only."""
    for engine in country.centres.values():
        for inst in pop.institutions:
            engine.registry.add_institution(inst.code, inst.name, inst.region, inst.level)
    month = country.clock().astimezone(CST).strftime("%Y-%m")
    for h in pop.persons:
        engine = country.centre(h.region)
        engine.registry.add_person(h.person_id, h.name, h.region, h.category, card_no=h.card_no,
                                   assistance_class=h.assistance_class)
        if h.deposit:
            engine.registry.deposit(f"seed:{h.person_id}", h.person_id, h.deposit)
        if h.pension:
            engine.pensions.enrol(h.person_id, h.pension, month)
            engine.identity.certify(f"seed:cert:{h.person_id}", h.person_id, "card_pin", actor="seed",
                                    card_no=h.card_no, pin_verified=True)


@dataclass
class RegionDay:
    """What the terminals did: their journal lines by the centre that answered them, and counts."""

    day: str
    lines: dict[str, list[JournalLine]] = field(default_factory=dict)
    stats: Counter[str] = field(default_factory=Counter)


def region_day(country: Country, pop: Population, *, seed: int, visits: int = 300,
               cross_region_rate: float = CROSS_REGION, refund_rate: float = 0.06,
               fault_rate: float = 0.03) -> RegionDay:
    """Drive a day of hospital visits at every region's terminals, each request to the centre of the patient's
    insured region, at its simulated time on the shared clock; return the journals by centre."""
    clock = country.clock
    d = clock().astimezone(CST).date()
    rng = random.Random(f"regions:{seed}:{d.isoformat()}")
    out = RegionDay(d.isoformat())
    sink = DayOutcome(out.day)
    terms = {tid: _Terminal(tid, inst, out.day, sink) for tid, inst in pop.hospital_terminals()}
    tids = sorted(terms)
    by_region: dict[str, list[str]] = {}
    for tid, t in terms.items():
        by_region.setdefault(t.inst.region, []).append(tid)
    insured: dict[str, list[str]] = {}
    for h in pop.persons:
        insured.setdefault(h.region, []).append(h.person_id)
    holders = {h.person_id: h for h in pop.persons}
    regions = sorted(by_region)
    start = dt.datetime.combine(d, dt.time(8, 0), CST)
    step = dt.timedelta(seconds=max(1, 10 * 3600 // max(visits, 1)))
    later: list[tuple[dt.datetime, str, _Terminal, str, int, str]] = []  # refunds in the afternoon

    def journal(region: str, line: JournalLine) -> None:
        out.lines.setdefault(region, []).append(line)

    for i in range(visits):
        tid = rng.choice(tids)
        t = terms[tid]
        here = t.inst.region
        cross = rng.random() < cross_region_rate and len(regions) > 1
        home = rng.choice([r for r in regions if r != here]) if cross else here
        h = holders[rng.choice(insured[home])]
        centre = country.centre(home)  # the insured region settles
        at = start + i * step
        clock.set(at)
        care = rng.choices(("outpatient", "inpatient"), (8, 2))[0]
        lines = _bill(rng, care)
        fate = rng.random()
        reg_key, key = t.key(), t.key()
        req = {"register_key": reg_key, "person_id": h.person_id, "institution": t.inst.code, "care": care,
               "begntime": d.isoformat(), "card_no": h.card_no,
               "lines": [{"cls": ln.cls, "amount": ln.amount, "over_limit": ln.over_limit} for ln in lines],
               "use_account": True}
        out.stats["visits"] += 1
        out.stats["cross_region"] += cross
        try:
            visit = centre.medical.register(reg_key, h.person_id, t.inst.code, care, begntime=d, card_no=h.card_no)
            req["mdtrt_id"] = visit.mdtrt_id
            s = centre.medical.settle(key, visit.mdtrt_id, lines)
        except SettlementError:
            out.stats["refused"] += 1
            journal(home, t.line(at, key, "settle", "failed", sum(ln.amount for ln in lines), h.region, request=req))
            continue
        parts = s.breakdown.model_dump()
        if fate < fault_rate:  # the answer was lost: the terminal voids (store-and-forward) and journals both
            vkey = t.key()
            clock.set(at + dt.timedelta(seconds=20))
            v = centre.medical.void(vkey, key)
            rev = v.reversed.model_dump() if v.reversed else {}
            journal(home, t.line(at, key, "settle", "reversed", s.breakdown.medfee_sumamt, h.region, request=req))
            journal(home, t.line(at + dt.timedelta(seconds=20), vkey, "void", "confirmed",
                                 rev.get("medfee_sumamt", 0), h.region, original_key=key, parts=rev))
            out.stats["voided"] += 1
            continue
        journal(home, t.line(at, key, "settle", "confirmed", s.breakdown.medfee_sumamt, h.region, parts=parts,
                             request=req))
        out.stats["settled"] += 1
        if fate < fault_rate + refund_rate:
            later.append((at + dt.timedelta(hours=2), home, t, key, s.breakdown.medfee_sumamt, h.region))
    for when, home, t, key, bill, region in later:
        clock.set(when)
        rkey = t.key()
        amount = max(1, bill // 3)
        r = country.centre(home).medical.refund(rkey, key, amount)
        journal(home, t.line(when, rkey, "refund", "confirmed", r.refund.medfee_sumamt, region, original_key=key,
                             parts=r.refund.model_dump(), request={"setl_id": key, "amount": amount}))
        out.stats["refunded"] += 1
    return out


@dataclass
class DayClose:
    """Each centre's clearing of the day and reconciliation report, and the national netting of the clearings."""

    clearings: dict[str, ClearingResult]
    reports: dict[str, Report]
    national: dict[str, int]  # region -> net position over every centre's clearing (fen; sums to 0)

    @property
    def clean(self) -> bool:
        return (all(r.clean for r in self.reports.values()) and sum(self.national.values()) == 0
                and all(c.net_sum() == 0 for c in self.clearings.values()))


def close_day(country: Country, pop: Population, day: RegionDay, *, actor: str = "load-region") -> DayClose:
    """Clear the day in each centre, net the statements nationally, and reconcile each centre's journals."""
    clearings, reports = {}, {}
    national: Counter[str] = Counter()
    for region, engine in sorted(country.centres.items()):
        result = Clearing(engine).clear(day.day, actor=actor)
        clearings[region] = result
        for s in result.statements:
            national[s.region] += s.net_position
        recon = Reconciler(engine)
        try:
            recon.register_terminals(pop.terminals)
            recon.import_lines(day.lines.get(region, []), actor=actor)
            reports[region] = recon.reconcile(day.day, actor=actor)
        finally:
            recon.close()
    return DayClose(clearings, reports, dict(national))
