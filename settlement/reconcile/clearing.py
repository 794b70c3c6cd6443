"""Cross-region clearing: what each insured region owes each treatment region, netted multilaterally and
settled in the ledger, per clearing period.

A cross-region settlement (medical.py) or pension collection (pension.py) posts the insured region y's
money to `{y}/payable/{x}` and pays the institution in region x out of `{x}/receivable/{y}`: y owes x.
Clearing a period:
  1. consumes every posting not consumed before that moved money on an inter-regional account and was
     committed on or before the period's last day (China time); a posting that arrives after its period
     was cleared (a late or replayed settlement) is consumed by the next period;
  2. sums, per ordered pair, what y owes x (by fund: hifp, hifob, hifmi, maf, acct, pension), refunds and
     voids included;
  3. nets multilaterally: a region's net position is what it is owed minus what it owes (the positions sum
     to zero);
  4. posts one balanced posting per region under `clearing:{period}:{region}`: it moves the consumed
     movement of each of the region's payable and receivable accounts into `{region}/clearing`, and
     settles that account's net with `national/clearing-house` (the region pays its net debt in, or
     receives its net claim out). Once every region's posting is in, the consumed parts of the
     inter-regional accounts, the regions' clearing accounts and the clearing house are all back to zero.
All of this is one unit of the store: a crash leaves the period uncleared; clearing a period again returns
its first statement and changes nothing.

Periods: "YYYY-MM" (a month), "YYYY-MM-DD" (a day) or "YYYY-MM-DD..YYYY-MM-DD" (a range). Periods are
cleared in order and never overlap (PERIOD_OVERLAP).
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from settlement.errors import InvalidRequest, InvalidState, PeriodOverlap
from settlement.ledger import AccountKind, Transfer, Tx
from settlement.reconcile import sql as recon_sql
from settlement.wire import yuan

if TYPE_CHECKING:
    from settlement.schemes.engine import Engine

HOUSE = "national/clearing-house"
KIND = "clearing"
FUND_OF_MEMO = {"hifp_pay": "hifp", "hifob_pay": "hifob", "hifmi_pay": "hifmi", "maf_pay": "maf",
                "acct_pay": "acct", "pension collection": "pension"}
_PAYABLE, _RECEIVABLE = AccountKind.INTERREGIONAL_PAYABLE.value, AccountKind.INTERREGIONAL_RECEIVABLE.value
_MONTH = re.compile(r"(\d{4})-(\d{2})")


def clearing_account(region: str) -> str:
    """The region's account for settling with the clearing house."""
    return f"{region}/clearing"


def posting_key(period_id: str, region: str) -> str:
    return f"{KIND}:{period_id}:{region}"


def schema(dialect: str) -> list[str]:
    return [
        """CREATE TABLE IF NOT EXISTS clearing_periods (
            period_id TEXT PRIMARY KEY,
            start_day TEXT NOT NULL,
            end_day TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('running', 'cleared')),
            cleared_at TEXT NOT NULL,
            actor TEXT NOT NULL,
            result TEXT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS clearing_consumed (
            seq BIGINT PRIMARY KEY,
            period_id TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS clearing_consumed_period ON clearing_consumed (period_id)",
    ]


@dataclass(frozen=True)
class Period:
    """A clearing period: inclusive China-time calendar days."""

    id: str
    start: dt.date
    end: dt.date

    @classmethod
    def parse(cls, text: str) -> Period:
        """"2024-03", "2024-03-05" or "2024-03-01..2024-03-15"."""
        try:
            if ".." in text:
                a, b = (dt.date.fromisoformat(x) for x in text.split("..", 1))
                if b < a:
                    raise ValueError("the end is before the start")
                return cls(f"{a.isoformat()}..{b.isoformat()}", a, b)
            m = _MONTH.fullmatch(text)
            if m:
                y, mo = int(m.group(1)), int(m.group(2))
                return cls(text, dt.date(y, mo, 1), dt.date(y, mo, calendar.monthrange(y, mo)[1]))
            d = dt.date.fromisoformat(text)
            return cls(d.isoformat(), d, d)
        except (ValueError, TypeError) as e:
            raise InvalidRequest(f"clearing period must be YYYY-MM, YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD, "
                                 f"got {text!r} ({e})", field="period") from None

    def cutoff(self) -> str:
        """The ledger timestamp (UTC text) at which the period's last China-time day ends."""
        end = dt.datetime.combine(self.end + dt.timedelta(days=1), dt.time(0), dt.timezone(dt.timedelta(hours=8)))
        return end.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


@dataclass(frozen=True)
class RegionStatement:
    """One region's clearing statement (fen). `net_position` > 0: the region receives that much from the
    clearing house; < 0: it pays that much in."""

    region: str
    owes: dict[str, int]  # counterpart -> what this region owes it
    owed_by: dict[str, int]  # counterpart -> what it owes this region
    owes_by_fund: dict[str, dict[str, int]]
    owed_by_fund: dict[str, dict[str, int]]
    net_position: int
    posting_key: str | None

    @property
    def total_owed(self) -> int:
        return sum(self.owed_by.values())

    @property
    def total_owes(self) -> int:
        return sum(self.owes.values())

    def bilateral(self) -> dict[str, int]:
        """Per counterpart: what it owes this region minus what this region owes it."""
        return {r: self.owed_by.get(r, 0) - self.owes.get(r, 0) for r in sorted(set(self.owes) | set(self.owed_by))}


@dataclass
class ClearingResult:
    period: str
    start: str
    end: str
    cleared_at: str
    actor: str
    statements: list[RegionStatement]
    postings_consumed: int
    late_postings: int
    posting_keys: list[str] = field(default_factory=list)
    replayed: bool = False

    def net_sum(self) -> int:
        """Sum of the regions' net positions: always 0."""
        return sum(s.net_position for s in self.statements)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["net_sum"] = self.net_sum()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClearingResult:
        d = {k: v for k, v in d.items() if k != "net_sum"}
        d["statements"] = [RegionStatement(**s) for s in d["statements"]]
        return cls(**d)

    def write(self, directory: str | Path) -> list[Path]:
        """clearing-PERIOD.json and clearing-PERIOD.csv (one row per region and counterpart)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        stem = "clearing-" + self.period.replace("..", "_")
        jp, cp = out / f"{stem}.json", out / f"{stem}.csv"
        jp.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        funds = sorted(set(FUND_OF_MEMO.values()))
        with cp.open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["period", "region", "counterpart", "owes", "owed_by", "bilateral_net",
                        *(f"owes_{x}" for x in funds), *(f"owed_by_{x}" for x in funds), "net_position",
                        "net_position_yuan", "posting_key"])
            for s in self.statements:
                for other, net in s.bilateral().items():
                    w.writerow([self.period, s.region, other, s.owes.get(other, 0), s.owed_by.get(other, 0), net,
                                *(s.owes_by_fund.get(other, {}).get(x, 0) for x in funds),
                                *(s.owed_by_fund.get(other, {}).get(x, 0) for x in funds),
                                s.net_position, yuan(s.net_position), s.posting_key or ""])
        return [jp, cp]


class Clearing:
    """Clearing over one engine's ledger."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.store = engine.store
        self.store.ensure_schema(schema(self.store.dialect))
        self._link: str | None = None

    def _join(self) -> str:
        if self._link is None:
            cols = self.store.read(lambda tx: tx.fetch("SELECT * FROM ledger_transfers WHERE 1 = 0")[0])
            self._link = {"seq": "t.posting_seq = p.seq", "key": "t.posting_key = p.key"}[recon_sql.transfer_link(cols)]
        return self._link

    def result(self, period: str) -> ClearingResult | None:
        """The stored result of a cleared period, or None."""
        p = Period.parse(period)
        text = self.store.read(lambda tx: tx.value(
            "SELECT result FROM clearing_periods WHERE period_id = ? AND status = 'cleared'", (p.id,)))
        return None if text is None else ClearingResult.from_dict(json.loads(text))

    def periods(self) -> list[tuple[str, str, str]]:
        """(period, start, end) of every cleared period, in order."""
        return [tuple(r) for r in self.store.read(lambda tx: tx.rows(  # type: ignore[misc]
            "SELECT period_id, start_day, end_day FROM clearing_periods ORDER BY end_day"))]

    def clear(self, period: str, *, actor: str) -> ClearingResult:
        """Clear `period` (idempotent: a cleared period returns its first result, replayed=True)."""
        if not actor:
            raise InvalidRequest("clearing needs an actor")
        p = Period.parse(period)
        eng = self.engine
        link = self._join()
        at = eng.stamp()

        def unit(tx: Tx) -> ClearingResult:
            if tx.dialect == "postgres":
                tx.execute("LOCK TABLE clearing_periods IN EXCLUSIVE MODE")
            row = tx.one("SELECT start_day, end_day, status, result FROM clearing_periods WHERE period_id = ?",
                         (p.id,))
            if row is not None:
                done = ClearingResult.from_dict(json.loads(row["result"]))
                done.replayed = True
                return done
            clash = tx.one("SELECT period_id FROM clearing_periods WHERE start_day <= ? AND end_day >= ?",
                           (p.end.isoformat(), p.start.isoformat()))
            if clash is not None:
                raise PeriodOverlap(f"period {p.id} overlaps period {clash['period_id']}, already cleared",
                                    period=p.id, cleared=clash["period_id"])
            last = tx.value("SELECT MAX(end_day) FROM clearing_periods")
            if last is not None and p.start.isoformat() <= last:
                raise InvalidState(f"periods are cleared in order: {p.id} starts before the last cleared day {last}",
                                   period=p.id)
            tx.execute("INSERT INTO clearing_periods (period_id, start_day, end_day, status, cleared_at, actor, result)"
                       " VALUES (?, ?, ?, 'running', ?, ?, '{}')",
                       (p.id, p.start.isoformat(), p.end.isoformat(), at, actor))
            tx.execute(
                "INSERT INTO clearing_consumed (seq, period_id)"
                " SELECT DISTINCT p.seq, ? FROM ledger_postings p"
                f" JOIN ledger_transfers t ON {link}"
                " JOIN ledger_accounts a ON (a.code = t.debit OR a.code = t.credit)"
                " WHERE a.kind IN (?, ?) AND p.created_at < ? AND p.kind NOT IN (?, '(pending)')"
                " AND NOT EXISTS (SELECT 1 FROM clearing_consumed k WHERE k.seq = p.seq)"
                " ON CONFLICT (seq) DO NOTHING",
                (p.id, _PAYABLE, _RECEIVABLE, p.cutoff(), KIND))
            consumed = int(tx.value("SELECT COUNT(*) FROM clearing_consumed WHERE period_id = ?", (p.id,)))
            start_utc = Period(p.id, p.start - dt.timedelta(days=1), p.start - dt.timedelta(days=1)).cutoff()
            late = int(tx.value(
                "SELECT COUNT(*) FROM clearing_consumed k JOIN ledger_postings p ON p.seq = k.seq"
                " WHERE k.period_id = ? AND p.created_at < ?", (p.id, start_utc)))
            moves = tx.rows(
                "SELECT a.code, a.kind, a.region, t.memo,"
                " SUM(CASE WHEN t.credit = a.code THEN t.amount ELSE -t.amount END)"
                " FROM clearing_consumed k JOIN ledger_postings p ON p.seq = k.seq"
                f" JOIN ledger_transfers t ON {link}"
                " JOIN ledger_accounts a ON (a.code = t.debit OR a.code = t.credit)"
                " WHERE k.period_id = ? AND a.kind IN (?, ?)"
                " GROUP BY a.code, a.kind, a.region, t.memo ORDER BY a.code, t.memo",
                (p.id, _PAYABLE, _RECEIVABLE))
            result = self._settle(tx, p, moves, at, actor)
            result.postings_consumed, result.late_postings = consumed, late
            tx.execute("UPDATE clearing_periods SET status = 'cleared', result = ? WHERE period_id = ?",
                       (json.dumps(result.to_dict(), ensure_ascii=False), p.id))
            return result

        return self.store.run(unit)

    def _settle(self, tx: Tx, p: Period, moves: list[tuple[Any, ...]], at: str, actor: str) -> ClearingResult:
        ledger = self.engine.ledger
        per_account: dict[str, int] = {}
        owes: dict[str, dict[str, int]] = {}
        owes_fund: dict[str, dict[str, dict[str, int]]] = {}
        receivable: dict[tuple[str, str], int] = {}
        region_of: dict[str, str] = {}
        for code, kind, region, memo, amount in moves:
            amount = int(amount)
            per_account[code] = per_account.get(code, 0) + amount
            region_of[code] = region
            other = code.rsplit("/", 1)[1]
            if kind == _PAYABLE:  # `region` owes `other`
                owes.setdefault(region, {})[other] = owes.get(region, {}).get(other, 0) + amount
                fund = FUND_OF_MEMO.get(memo, memo)
                f = owes_fund.setdefault(region, {}).setdefault(other, {})
                f[fund] = f.get(fund, 0) + amount
            else:  # `other` owes `region`: the receivable moves down as the region pays institutions
                receivable[(other, region)] = receivable.get((other, region), 0) - amount
        pairs = set(receivable) | {(d, c) for d, cs in owes.items() for c in cs}
        for debtor, creditor in sorted(pairs):
            paid, held = receivable.get((debtor, creditor), 0), owes.get(debtor, {}).get(creditor, 0)
            if paid != held:
                raise InvalidState(f"inter-regional accounts disagree in period {p.id}: {debtor} holds {held} fen "
                                   f"for {creditor}, {creditor} paid out {paid} fen on its behalf", period=p.id)
        regions = sorted(set(region_of.values()) | {o for d in owes.values() for o in d})
        statements = []
        keys = []
        ledger.open_account(HOUSE, AccountKind.EXTERNAL)
        for r in regions:
            owes_r = {o: a for o, a in sorted(owes.get(r, {}).items()) if a}
            owed_r = {d: owes[d][r] for d in sorted(owes) if owes[d].get(r)}
            net = sum(owed_r.values()) - sum(owes_r.values())
            clr = clearing_account(r)
            ts: list[Transfer] = []
            for code in sorted(c for c, reg in region_of.items() if reg == r):
                m = per_account[code]
                if m > 0:
                    ts.append(Transfer(code, clr, m, f"clearing {p.id}"))
                elif m < 0:
                    ts.append(Transfer(clr, code, -m, f"clearing {p.id}"))
            if net < 0:
                ts.append(Transfer(clr, HOUSE, -net, f"clearing {p.id}: net payment"))
            elif net > 0:
                ts.append(Transfer(HOUSE, clr, net, f"clearing {p.id}: net receipt"))
            key = None
            if ts:
                ledger.open_account(clr, AccountKind.EXTERNAL, region=r)
                key = posting_key(p.id, r)
                ledger.post(key, KIND, ts, payload={"period": p.id, "region": r, "net_position": net,
                                                    "owes": owes_r, "owed_by": owed_r})
                keys.append(key)
            statements.append(RegionStatement(
                r, owes_r, owed_r,
                {o: dict(sorted(f.items())) for o, f in sorted(owes_fund.get(r, {}).items()) if owes_r.get(o)},
                {d: dict(sorted(owes_fund[d][r].items())) for d in sorted(owes_fund) if owed_r.get(d)},
                net, key))
        return ClearingResult(p.id, p.start.isoformat(), p.end.isoformat(), at, actor, statements, 0, 0, keys)
