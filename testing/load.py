"""Workload generators: a realistic hospital day and pension day, driven through the settlement engine,
with the terminal journals they leave behind, and known discrepancies seeded on request.

    book = policy_book()                                   # shipped policies + two illustrative clones
    engine = Engine(store, policies=book, clock=DayClock(day))  # a clock the generator moves
    pop = population(seed=7)                               # regions, institutions, terminals, persons
    install(engine, pop, recon)                            # registry, deposits, pensions, terminals
    day = hospital_day(engine, pop, seed=7, visits=300, discrepancies={"missing_at_centre": 2})
    write_journal_csv(day.journal, "journal.csv")          # what the terminals export at day end
    day.seeded                                             # {"missing_at_centre": [keys], ...}

A day is reproducible: the same population, seed, day and starting state give the same requests, keys,
amounts, postings, journal lines and statements, byte for byte, on any calendar day. The engine runs on a
`DayClock` that the generator moves to the simulated time of each request, so the centre stamps postings
with the same times as the terminals' journal lines, and nothing reads the wall clock.

Faults that heal themselves (a lost response or request, a terminal crash: the terminal voids through
store-and-forward; a request refused with a typed error) leave a clean day;
seeded discrepancies are the ones reconciliation must find, one per requested count and class:

  missing_at_centre    the terminal confirmed it, the centre never posted it (replayable)
  missing_at_terminal  the centre posted it, the journal lost the line
  amount_mismatch      the journal's line carries 1.00 yuan more cash than the centre posted
  status_mismatch      the terminal voided it, but its void never reached the centre
  duplicate            the journal holds the line twice

This is the card/terminal side of the wire: it uses only the settlement engine's public API and data
types (settlement.wire's JournalLine), as a terminal and its HIS would. A test and bench harness: the
daemon and the service never import it.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from settlement.errors import SettlementError
from settlement.ledger import CST, fen
from settlement.reconcile.reconciler import Reconciler
from settlement.reconcile.statement import StatementLine
from settlement.schemes.engine import Engine
from settlement.schemes.policy import POLICY_DIR, PolicyBook, load_policy
from settlement.wire import PARTS, FeeLine, JournalLine

CLONES = {"990200": "示例二市 Example City 2 (illustrative clone of 990100)",
          "990300": "示例三市 Example City 3 (illustrative clone of 990100)"}
REGIONS = ("110000", "990100", *CLONES)
DISCREPANCIES = ("missing_at_centre", "missing_at_terminal", "amount_mismatch", "status_mismatch", "duplicate")
STATEMENT_DISCREPANCIES = ("statement_only", "ledger_only", "statement_amount_mismatch", "statement_duplicate")
Progress = Callable[[int], None]


def policy_book() -> PolicyBook:
    """The shipped policies plus the illustrative clones of Example City (regions 990200, 990300)."""
    shipped = [load_policy(p) for p in sorted(POLICY_DIR.glob("*.toml"))]
    base = next(p for p in shipped if p.region == "990100")
    return PolicyBook([*shipped, *(base.model_copy(update={"region": r, "name": n}) for r, n in CLONES.items())])


def write_policies(directory: str | Path) -> list[Path]:
    """Write the clones as policy files (for `sscard reconcile --policies DIR`)."""
    text = (POLICY_DIR / "example_city.toml").read_text(encoding="utf-8")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for region, name in CLONES.items():
        p = out / f"sim_{region}.toml"
        lines = [f'region = "{region}"' if ln.startswith("region = ") else
                 f'name = "{name}"' if ln.startswith("name = ") else ln for ln in text.splitlines()]
        p.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(p)
    return paths


class DayClock:
    """The engine's clock for generated days (`Engine(store, clock=DayClock(day))`): it stands at `at` on
    `day` (China time) until the generator moves it to the time of each request."""

    def __init__(self, day: dt.date, at: dt.time = dt.time(7, 0)) -> None:
        self.t = dt.datetime.combine(day, at, CST)

    def __call__(self) -> dt.datetime:
        return self.t

    def set(self, t: dt.datetime) -> None:
        if t.tzinfo is None:
            raise ValueError("a DayClock needs aware datetimes")
        self.t = t


def day_clock(engine: Engine) -> DayClock:
    """The DayClock the engine runs on (ValueError if it runs on another clock)."""
    clock = engine.clock.source
    if not isinstance(clock, DayClock):
        raise ValueError("the load generator drives an engine on a DayClock: Engine(store, clock=DayClock(day)), "
                         "so that every posting carries the simulated time of its request")
    return clock


# -- population -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Institution:
    code: str
    name: str
    region: str
    level: str


@dataclass(frozen=True)
class Holder:
    person_id: str
    name: str
    region: str
    category: str
    card_no: str
    assistance_class: str | None = None
    deposit: int = 0
    pension: int = 0  # monthly amount in fen for pensioners


@dataclass(frozen=True)
class Population:
    institutions: tuple[Institution, ...]
    terminals: tuple[tuple[str, str], ...]  # (terminal_id, institution code)
    persons: tuple[Holder, ...]

    def institution(self, code: str) -> Institution:
        return next(i for i in self.institutions if i.code == code)

    def hospital_terminals(self) -> list[tuple[str, Institution]]:
        return [(t, self.institution(c)) for t, c in self.terminals if self.institution(c).level != "community"]

    def hall_terminals(self) -> list[tuple[str, Institution]]:
        return [(t, self.institution(c)) for t, c in self.terminals if self.institution(c).level == "community"]


_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"


def population(seed: int = 1, *, regions: Sequence[str] = REGIONS, hospitals_per_region: int = 3,
               terminals_per_institution: int = 2, persons_per_region: int = 150) -> Population:
    """Institutions (hospitals of levels 1-3 and a service hall per region), their terminals, and persons."""
    rng = random.Random(f"population:{seed}")
    insts: list[Institution] = []
    terms: list[tuple[str, str]] = []
    persons: list[Holder] = []
    for region in regions:
        for i in range(hospitals_per_region):
            level = ("1", "2", "3")[i % 3]
            insts.append(Institution(f"H{region}{i + 1:02d}", f"{region} level-{level} hospital {i + 1}", region,
                                     level))
        insts.append(Institution(f"S{region}01", f"{region} social security service hall", region, "community"))
        for n in range(persons_per_region):
            cat = rng.choices(("employee", "retiree", "resident"), (5, 3, 4))[0]
            assist = "dibao" if cat == "resident" and region != "110000" and rng.random() < 0.1 else None
            deposit = rng.randrange(500, 8_000) * 100 if cat != "resident" else 0
            pension = rng.randrange(2_500, 7_000) * 100 if cat == "retiree" else 0
            name = rng.choice(_SURNAMES) + rng.choice(_GIVEN) + rng.choice(("", *_GIVEN))
            persons.append(Holder(f"P{region}{n:05d}", name, region, cat, f"C{region}{n:05d}", assist, deposit,
                                  pension))
    for inst in insts:
        for j in range(terminals_per_institution):
            terms.append((f"T{inst.code}-{j + 1}", inst.code))
    return Population(tuple(insts), tuple(terms), tuple(persons))


def install(engine: Engine, pop: Population, recon: Reconciler | None = None, *,
            progress: Progress | None = None) -> None:
    """Put the population into the engine (idempotent): institutions, persons, account deposits, pensioners
    certified and paid this month; and register the terminals for reconciliation."""
    reg = engine.registry
    for inst in pop.institutions:
        reg.add_institution(inst.code, inst.name, inst.region, inst.level)
    month = engine.today().strftime("%Y-%m")
    for h in pop.persons:
        reg.add_person(h.person_id, h.name, h.region, h.category, card_no=h.card_no,
                       assistance_class=h.assistance_class)
        if h.deposit:
            reg.deposit(f"seed:{h.person_id}", h.person_id, h.deposit)
        if h.pension:
            engine.pensions.enrol(h.person_id, h.pension, month)
            engine.identity.certify(f"seed:cert:{h.person_id}", h.person_id, "card_pin", actor="seed",
                                    card_no=h.card_no, pin_verified=True)
        if progress:
            progress(1)
    for region in sorted({h.region for h in pop.persons if h.pension}):
        engine.pensions.issue_month(region, month, actor="seed")
    if recon is not None:
        recon.register_terminals(pop.terminals)


# -- a day --------------------------------------------------------------------------------------------------------
@dataclass
class DayOutcome:
    """What a generated day left: the journal lines (in export order), the seeded discrepancies by class,
    and counts of what happened."""

    day: str
    journal: list[JournalLine] = field(default_factory=list)
    seeded: dict[str, list[str]] = field(default_factory=dict)
    stats: Counter[str] = field(default_factory=Counter)

    def extend(self, other: DayOutcome) -> DayOutcome:
        self.journal.extend(other.journal)
        for k, v in other.seeded.items():
            self.seeded.setdefault(k, []).extend(v)
        self.stats.update(other.stats)
        return self


class _Terminal:
    """A terminal's serial counter and journal."""

    def __init__(self, terminal_id: str, inst: Institution, day: str, out: DayOutcome) -> None:
        self.id, self.inst, self.day, self.out, self.n = terminal_id, inst, day, out, 0

    def key(self) -> str:
        self.n += 1
        return f"{self.id}:{self.n:06d}"

    def line(self, at: dt.datetime, key: str, kind: str, status: str, amount: int, insured: str, *,
             original_key: str = "", parts: Mapping[str, int] | None = None,
             request: dict[str, object] | None = None) -> JournalLine:
        p = dict(parts or {})
        return JournalLine(
            terminal_id=self.id, business_day=self.day, key=key, kind=kind, status=status, amount=amount,
            institution_id=self.inst.code, insured_region=insured, treatment_region=self.inst.region,
            at=at.isoformat(timespec="seconds"), original_key=original_key, request=request,
            **{k: p.get(k, 0) for k in PARTS})




def _pick(rng: random.Random, candidates: list[int], counts: Mapping[str, int], classes: Sequence[str],
          terminal_of: Sequence[str]) -> dict[int, str]:
    """Assign seeded discrepancy classes to distinct candidate indices. A line lost from a journal
    (missing_at_terminal) is taken only from a terminal that keeps other lines and loses no other: a
    terminal whose journal is empty is reported as journal_missing instead, which is another finding."""
    unknown = set(counts) - set(classes)
    if unknown:
        raise ValueError(f"unknown discrepancy class(es) {sorted(unknown)}; use {', '.join(classes)}")
    need = sum(counts.values())
    if need > len(candidates):
        raise ValueError(f"{need} seeded discrepancies need at least as many plain transactions "
                         f"({len(candidates)} available): generate a bigger day")
    per_terminal = Counter(terminal_of)
    pool = rng.sample(candidates, len(candidates))
    out: dict[int, str] = {}
    losing: set[str] = set()
    for i in pool:
        if len(out) == counts.get("missing_at_terminal", 0):
            break
        if per_terminal[terminal_of[i]] > 1 and terminal_of[i] not in losing:
            out[i] = "missing_at_terminal"
            losing.add(terminal_of[i])
    if len(out) < counts.get("missing_at_terminal", 0):
        raise ValueError("not enough terminals to lose journal lines from: generate a bigger day")
    rest = iter(i for i in pool if i not in out)
    for cls in classes:
        if cls != "missing_at_terminal":
            for _ in range(counts.get(cls, 0)):
                out[next(rest)] = cls
    return out


def _bill(rng: random.Random, care: str) -> list[FeeLine]:
    lines = []
    for _ in range(rng.randint(1, 4 if care == "outpatient" else 8)):
        cls = rng.choices("ABC", (6, 3, 1))[0]
        top = 600 if care == "outpatient" else 12_000
        amount = rng.randrange(5, top) * 100 + rng.randrange(100)
        over = rng.randrange(amount // 10) if cls == "B" and rng.random() < 0.1 and amount > 10 else 0
        lines.append(FeeLine(cls, amount, over))
    return lines


def hospital_day(engine: Engine, pop: Population, *, seed: int, visits: int = 200, day: dt.date | None = None,
                 refund_rate: float = 0.06, fault_rate: float = 0.05, cross_region_rate: float = 0.2,
                 discrepancies: Mapping[str, int] | None = None, progress: Progress | None = None) -> DayOutcome:
    """Drive a hospital day (default: the engine clock's day): registrations, settlements, refunds, faults,
    each at its simulated time on the engine's DayClock; return the terminals' journals."""
    clock = day_clock(engine)
    d = day or engine.today()
    rng = random.Random(f"hospital:{seed}:{d.isoformat()}")
    out = DayOutcome(d.isoformat())
    terms = {tid: _Terminal(tid, inst, out.day, out) for tid, inst in pop.hospital_terminals()}
    by_region: dict[str, list[str]] = {}
    for tid, t in terms.items():
        by_region.setdefault(t.inst.region, []).append(tid)
    people = list(pop.persons)
    rng.shuffle(people)
    start = dt.datetime.combine(d, dt.time(8, 0), CST)
    step = dt.timedelta(seconds=max(1, 10 * 3600 // max(visits, 1)))
    plans = []
    for i in range(visits):
        h = people[i % len(people)]
        local = rng.random() >= cross_region_rate
        regions = [r for r in by_region if (r == h.region) == local] or list(by_region)
        tid = rng.choice(by_region[rng.choice(regions)])
        care = rng.choices(("outpatient", "inpatient"), (8, 2))[0]
        r = rng.random()
        fate = ("lost_response" if r < fault_rate / 3 else "lost_request" if r < 2 * fault_rate / 3
                else "crash" if r < fault_rate else "rejected" if r < fault_rate + 0.01
                else "refund" if r < fault_rate + 0.01 + refund_rate else "ok")
        plans.append((h, tid, care, _bill(rng, care), fate, rng.random(), start + i * step))
    single = Counter(p[0].person_id for p in plans)
    plain = [i for i, p in enumerate(plans) if p[4] == "ok" and single[p[0].person_id] == 1]
    seeded = _pick(rng, plain, discrepancies or {}, DISCREPANCIES, [p[1] for p in plans])
    later: list[Callable[[], None]] = []
    for i, (h, tid, care, lines, fate, x, at) in enumerate(plans):
        if progress:
            progress(1)
        t = terms[tid]
        reg_key = t.key()
        clock.set(at)
        visit = engine.medical.register(reg_key, h.person_id, t.inst.code, care, begntime=d, card_no=h.card_no)
        if fate == "rejected":
            lines = [*lines, FeeLine("Z", 1_000)]  # a class no catalogue has: refused with a typed error
        key = t.key()
        req = {"register_key": reg_key, "person_id": h.person_id, "institution": t.inst.code, "care": care,
               "begntime": d.isoformat(), "card_no": h.card_no, "mdtrt_id": visit.mdtrt_id,
               "lines": [{"cls": ln.cls, "amount": ln.amount, "over_limit": ln.over_limit} for ln in lines],
               "use_account": True}
        bill = sum(ln.amount for ln in lines)
        cls = seeded.get(i)
        out.stats["visits"] += 1
        if cls == "missing_at_centre":
            b = engine.medical.presettle(visit.mdtrt_id, lines).breakdown
            out.journal.append(t.line(at, key, "settle", "confirmed", b.medfee_sumamt, h.region,
                                      parts=b.model_dump(), request=req))
            out.seeded.setdefault(cls, []).append(key)
            continue
        if fate == "lost_request":
            out.stats["lost_request"] += 1
            later.append(_void_later(engine, clock, t, at, key, bill, h.region, req, sent=False))
            continue
        try:
            s = engine.medical.settle(key, visit.mdtrt_id, lines)
        except SettlementError:
            out.stats["rejected"] += 1
            out.journal.append(t.line(at, key, "settle", "failed", bill, h.region, request=req))
            continue
        b = s.breakdown
        parts = b.model_dump()
        out.stats["settled"] += 1
        out.stats["cross_region"] += s.cross_region
        if fate in ("lost_response", "crash"):
            out.stats[fate] += 1
            void = _void_later(engine, clock, t, at, key, bill, h.region, req, sent=True)
            if fate == "lost_response":
                void()
            else:
                later.append(void)
            continue
        if cls == "missing_at_terminal":
            out.seeded.setdefault(cls, []).append(key)
            continue
        if cls == "status_mismatch":
            out.journal.append(t.line(at, key, "settle", "reversed", bill, h.region, parts=parts, request=req))
            out.journal.append(t.line(at + dt.timedelta(seconds=30), t.key(), "void", "pending", 0, h.region,
                                      original_key=key))
            out.seeded.setdefault(cls, []).append(key)
            continue
        if cls == "amount_mismatch":
            parts = {**parts, "psn_cash_pay": parts["psn_cash_pay"] + 100}
            out.journal.append(t.line(at, key, "settle", "confirmed", bill + 100, h.region, parts=parts,
                                      request=req))
            out.seeded.setdefault(cls, []).append(key)
            continue
        line = t.line(at, key, "settle", "confirmed", b.medfee_sumamt, h.region, parts=parts, request=req)
        out.journal.append(line)
        if cls == "duplicate":
            out.journal.append(line)
            out.seeded.setdefault(cls, []).append(key)
        if fate == "refund":
            later.append(_refund_later(engine, clock, t, at, key, b.medfee_sumamt, h.region, x))
    for act in later:  # afternoon: refunds; restarted terminals forward their voids
        act()
    out.stats["journal_lines"] = len(out.journal)
    return out


def _void_later(engine: Engine, clock: DayClock, t: _Terminal, at: dt.datetime, key: str, bill: int,
                insured: str, req: dict[str, object], *, sent: bool) -> Callable[[], None]:
    """The terminal had no answer for `key`: it voids it (store-and-forward) and journals both."""
    def act() -> None:
        vkey = t.key()
        clock.set(at + dt.timedelta(seconds=20))
        v = engine.medical.void(vkey, key)
        t.out.journal.append(t.line(at, key, "settle", "reversed", bill, insured, request=req))
        rev = v.reversed.model_dump() if v.reversed else {}
        t.out.journal.append(t.line(at + dt.timedelta(seconds=20), vkey, "void", "confirmed",
                                    rev.get("medfee_sumamt", 0), insured, original_key=key, parts=rev))
        t.out.stats["voided" if sent else "voided_before_arrival"] += 1
    return act


def _refund_later(engine: Engine, clock: DayClock, t: _Terminal, at: dt.datetime, key: str, bill: int,
                  insured: str, x: float) -> Callable[[], None]:
    def act() -> None:
        when = at + dt.timedelta(hours=2)
        clock.set(when)
        rkey = t.key()
        amount = bill if x < 0.3 else max(1, int(bill * x) // 2)
        if x > 0.9:  # the HIS asks for more than is left: refused, journalled as failed
            amount = bill + 100
        req = {"setl_id": key, "amount": amount}
        try:
            r = engine.medical.refund(rkey, key, amount)
        except SettlementError:
            t.out.journal.append(t.line(when, rkey, "refund", "failed", amount, insured, original_key=key,
                                        request=req))
            t.out.stats["refund_rejected"] += 1
            return
        parts = r.refund.model_dump()
        t.out.journal.append(t.line(when, rkey, "refund", "confirmed", r.refund.medfee_sumamt, insured,
                                    original_key=key, parts=parts, request=req))
        t.out.stats["refunded"] += 1
    return act


def pension_day(engine: Engine, pop: Population, *, seed: int, collections: int = 80, day: dt.date | None = None,
                fault_rate: float = 0.05, cross_region_rate: float = 0.25,
                discrepancies: Mapping[str, int] | None = None, progress: Progress | None = None) -> DayOutcome:
    """Drive a pension day at the service halls: collections (some in another region), lost responses
    (retried under the same key), refusals, each at its simulated time on the engine's DayClock; return the
    halls' journals."""
    clock = day_clock(engine)
    d = day or engine.today()
    rng = random.Random(f"pension:{seed}:{d.isoformat()}")
    out = DayOutcome(d.isoformat())
    halls = {tid: _Terminal(tid, inst, out.day, out) for tid, inst in pop.hall_terminals()}
    by_region: dict[str, list[str]] = {}
    for tid, t in halls.items():
        by_region.setdefault(t.inst.region, []).append(tid)
    pensioners = [h for h in pop.persons if h.pension]
    rng.shuffle(pensioners)
    start = dt.datetime.combine(d, dt.time(9, 0), CST)
    plans = []
    for i in range(min(collections, len(pensioners))):
        h = pensioners[i]
        local = rng.random() >= cross_region_rate
        regions = [r for r in by_region if (r == h.region) == local] or list(by_region)
        tid = rng.choice(by_region[rng.choice(regions)])
        r = rng.random()
        fate = "lost_response" if r < fault_rate / 2 else "refused" if r < fault_rate else "ok"
        amount = h.pension + 100 if fate == "refused" else rng.randrange(100, max(101, h.pension // 200)) * 100
        plans.append((h, tid, amount, fate, start + i * dt.timedelta(minutes=3)))
    plain = [i for i, p in enumerate(plans) if p[3] == "ok"]
    seeded = _pick(rng, plain, discrepancies or {}, DISCREPANCIES, [p[1] for p in plans])
    for i, (h, tid, amount, fate, at) in enumerate(plans):
        if progress:
            progress(1)
        t = halls[tid]
        key = t.key()
        clock.set(at)
        req = {"person_id": h.person_id, "amount": amount, "institution": t.inst.code}
        cls = seeded.get(i)
        out.stats["collections"] += 1
        if cls == "missing_at_centre":
            out.journal.append(t.line(at, key, "pension_collect", "confirmed", amount, h.region, request=req))
            out.seeded.setdefault(cls, []).append(key)
            continue
        try:
            c = engine.pensions.collect(key, h.person_id, amount, t.inst.code, actor=tid)
            if fate == "lost_response":  # no answer: the terminal asks again under the same key
                c = engine.pensions.collect(key, h.person_id, amount, t.inst.code, actor=tid)
                out.stats["retried"] += c.replayed
        except SettlementError:
            out.journal.append(t.line(at, key, "pension_collect", "failed", amount, h.region, request=req))
            out.stats["refused"] += 1
            continue
        out.stats["collected"] += 1
        out.stats["cross_region"] += c.cross_region
        if cls == "missing_at_terminal":
            out.seeded.setdefault(cls, []).append(key)
            continue
        status = "failed" if cls == "status_mismatch" else "confirmed"
        line = t.line(at, key, "pension_collect", status, amount + (100 if cls == "amount_mismatch" else 0),
                      h.region, request=req)
        out.journal.append(line)
        if cls == "duplicate":
            out.journal.append(line)
        if cls:
            out.seeded.setdefault(cls, []).append(key)
    out.stats["journal_lines"] = len(out.journal)
    return out


# -- statements -------------------------------------------------------------------------------------------------
def fund_statement(engine: Engine, day: str, accounts: Iterable[str], *, seed: int,
                   discrepancies: Mapping[str, int] | None = None, batch: bool = False
                   ) -> tuple[list[StatementLine], dict[str, list[str]]]:
    """The bank statement the funds' bank would send for `day`: one line per posting that moved money on
    each account (or, with `batch`, one per terminal), plus seeded statement discrepancies."""
    wanted = set(accounts)
    nets: dict[tuple[str, str], int] = {}
    after = 0
    while True:
        page = engine.ledger.postings(after_seq=after, limit=1000)
        if not page:
            break
        for seq, p in page:
            after = seq
            at = dt.datetime.fromisoformat(p.created_at).astimezone(CST).date().isoformat()
            if at != day:
                continue
            for t in p.transfers:
                ref = p.key.split(":", 1)[0] if batch else p.key
                if t.credit in wanted:
                    nets[(t.credit, ref)] = nets.get((t.credit, ref), 0) + t.amount
                if t.debit in wanted:
                    nets[(t.debit, ref)] = nets.get((t.debit, ref), 0) - t.amount
    lines = [StatementLine(day, a, ref, -n if n < 0 else 0, n if n > 0 else 0, "settlement")
             for (a, ref), n in sorted(nets.items()) if n]
    rng = random.Random(f"statement:{seed}:{day}")
    counts = dict(discrepancies or {})
    unknown = set(counts) - set(STATEMENT_DISCREPANCIES)
    if unknown:
        raise ValueError(f"unknown statement discrepancy class(es) {sorted(unknown)}")
    seeded: dict[str, list[str]] = {}
    touched = rng.sample(range(len(lines)), min(len(lines), sum(counts.get(c, 0) for c in STATEMENT_DISCREPANCIES
                                                                  if c != "statement_only")))
    k = 0
    drop: set[int] = set()
    extra: list[StatementLine] = []
    for cls in ("ledger_only", "statement_amount_mismatch", "statement_duplicate"):
        for _ in range(counts.get(cls, 0)):
            if k >= len(touched):
                raise ValueError("not enough statement lines to seed that many discrepancies")
            i = touched[k]
            k += 1
            ln = lines[i]
            seeded.setdefault(cls, []).append(ln.reference)
            if cls == "ledger_only":
                drop.add(i)
            elif cls == "statement_amount_mismatch":
                lines[i] = StatementLine(ln.value_date, ln.account, ln.reference, ln.debit + (100 if ln.debit else 0),
                                         ln.credit + (100 if ln.credit else 0), ln.description)
            else:
                extra.append(ln)
    for n in range(counts.get("statement_only", 0)):
        acct = sorted(wanted)[n % len(wanted)]
        ref = f"BANK:{seed}-{n}"
        extra.append(StatementLine(day, acct, ref, 0, fen(rng.randrange(1, 10_000) * 100), "unexplained credit"))
        seeded.setdefault("statement_only", []).append(ref)
    return [ln for i, ln in enumerate(lines) if i not in drop] + extra, seeded
