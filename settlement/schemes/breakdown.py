"""The split of one bill by a regional policy: pure arithmetic, no store, no clock.

Order (DOMAIN.md "Settlement rules"): catalogue classes -> deductible -> pooled fund / large-amount aid
by cumulative segment -> critical illness -> medical assistance -> personal account -> cash. A cross-region
visit is split by the insured region's policy with the treatment region's catalogue classes.

Rounding, the one rule: every share that a fund (or the covered part of a class-B item) takes is
`money.apply_ratio(amount, ratio)`, ROUND HALF UP to the fen, computed per class total and per segment
piece; the patient's part is always the remainder. So the identities hold exactly in fen:
    medfee_sumamt = fulamt_ownpay_amt + overlmt_selfpay + preselfpay_amt + inscp_scp_amt
    medfee_sumamt = fund_pay_sumamt + psn_part_amt;  psn_part_amt = acct_pay + psn_cash_pay
    fund_pay_sumamt = hifp_pay + hifob_pay + hifmi_pay + maf_pay

Bases: segments are positions on the year's cumulative in-policy amount for this kind of care (the
deductible takes the bottom of the visit's range, so a bill straddling a bound is split there). The
critical-illness layer works on the year's cumulative in-policy amount left after hifp and hifob
(deductible included; class-B self-paid-first parts excluded). Medical assistance pays its ratio of the
in-policy amount still left after hifmi. The personal account may pay, per scheme, nothing, the patient's
part except fully self-paid and over-limit amounts ("in_policy"), or all of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction

from settlement.errors import BillTooLarge, InvalidAmount, InvalidRequest
from settlement.ledger import Fen, apply_ratio, fen
from settlement.schemes.policy import CARES, CATEGORIES, LEVELS, Policy
from settlement.wire import Accumulators, Breakdown, FeeLine, Piece, yuan

# National chrgitm_lv codes for catalogue classes: 01 甲类, 02 乙类, 03 丙类.
NATIONAL_CLASS_CODES = {"01": "A", "02": "B", "03": "C"}


def _line(i: int, line: FeeLine, catalogue: Policy) -> tuple[str, Fen, Fen]:
    """A fee line's catalogue class (in the policy's letters), amount and over-limit part, checked."""
    amount = fen(line.amount, field=f"fee line {i + 1} amount")
    over = fen(line.over_limit, field=f"fee line {i + 1} over-limit amount")
    if over > amount:
        raise InvalidAmount(f"fee line {i + 1}: the part over the price limit exceeds the line amount",
                            field=f"fee line {i + 1} over-limit amount")
    cls = NATIONAL_CLASS_CODES.get(line.cls, line.cls)
    catalogue.catalogue_class(cls)
    return cls, amount, over


@dataclass(frozen=True)
class Split:
    """A breakdown plus the accumulator deltas a settlement of it adds."""

    breakdown: Breakdown
    deltas: dict[str, int]


def _fraction_text(r: Fraction) -> str:
    pct = r * 100
    return f"{pct.numerator}%" if pct.denominator == 1 else f"{float(pct):g}%"


def _pieces(start: Fen, end: Fen, bounds: Iterable[tuple[Fen, Fen | None, Fraction, str]]) -> list[Piece]:
    out = []
    for lower, upper, r, fund in bounds:
        a, b = max(lower, start), end if upper is None else min(upper, end)
        if b > a:
            out.append(Piece(fund=fund, lower=a, upper=b, ratio=_fraction_text(r), pay=apply_ratio(b - a, r)))
    return out


def catalogue_stage(lines: Iterable[FeeLine], catalogue: Policy, *, bounds: Policy | None = None
                    ) -> tuple[Fen, Fen, Fen, Fen, Fen]:
    """The catalogue stage of a bill: (medfee_sumamt, fulamt_ownpay_amt, overlmt_selfpay, preselfpay_amt,
    inscp_scp_amt), each class's covered share rounded once on the class total. `bounds`: the policy whose
    [limits] the bill must keep (BILL_TOO_LARGE naming the rule: max_fee_lines, max_bill)."""
    by_class: dict[str, list[int]] = {}
    count = bill = 0
    most = bounds.limits.max_fee_lines if bounds is not None else None
    for i, line in enumerate(lines):
        count += 1
        if most is not None and count > most:
            assert bounds is not None
            raise BillTooLarge(f"a bill may have at most {most} fee lines in region {bounds.region}",
                               rule="max_fee_lines", limit=most, region=bounds.region)
        cls, amount, over = _line(i, line, catalogue)
        bill += amount
        sums = by_class.setdefault(cls, [0, 0])
        sums[0] += amount
        sums[1] += over
    if count == 0:
        raise InvalidRequest("a bill needs at least one fee line")
    if bounds is not None and bill > bounds.limits.max_bill:
        ceiling = bounds.limits.max_bill
        raise BillTooLarge(f"the bill of {yuan(bill)} yuan exceeds the ceiling of {yuan(ceiling)} yuan per bill in "
                           f"region {bounds.region}", rule="max_bill", limit=yuan(ceiling), region=bounds.region,
                           bill=bill)
    total = fulamt = overlmt = preself = inscp = 0
    for cls, (amount, over) in sorted(by_class.items()):
        cc = catalogue.catalogue[cls]
        total += amount
        if not cc.covered:
            fulamt += amount
            continue
        overlmt += over
        covered = apply_ratio(amount - over, 1 - cc.self_pay_first)
        preself += amount - over - covered
        inscp += covered
    return total, fulamt, overlmt, preself, inscp


def split_bill(
    policy: Policy,
    *,
    category: str,
    care: str,
    level: str,
    lines: Iterable[FeeLine],
    acc: Accumulators,
    assistance_class: str | None = None,
    account_balance: Fen = 0,
    use_account: bool = True,
    catalogue: Policy | None = None,
) -> Split:
    """Split one visit's bill by `policy` for a person with year-to-date totals `acc`.

    `catalogue`: the policy whose catalogue classes apply (the treatment region's, for a cross-region
    visit); default `policy`'s own."""
    if category not in CATEGORIES:
        raise InvalidRequest(f"unknown insured category {category!r}", category=category)
    if care not in CARES:
        raise InvalidRequest(f"unknown kind of care {care!r}; use outpatient or inpatient", care=care)
    if level not in LEVELS:
        raise InvalidRequest(f"unknown institution level {level!r}; use {', '.join(LEVELS)}", level=level)
    scheme = policy.scheme(category, care)
    fen(account_balance, field="account_balance")

    total, fulamt, overlmt, preself, inscp = catalogue_stage(lines, catalogue or policy, bounds=policy)
    if total == 0:
        raise InvalidAmount("the bill total must be more than zero", field="lines")

    notes: list[str] = []
    ytd = acc.care(care)
    admissions_before = acc.admissions if care == "inpatient" else 0
    deductible = scheme.deductible.amount(level, admissions_before)
    if scheme.deductible.per == "year":
        deductible = max(0, deductible - ytd.deductible_used)
    dedc = min(inscp, deductible)

    start, end = ytd.inscp_cum + dedc, ytd.inscp_cum + inscp
    pieces = _pieces(start, end, ((lo, hi, seg.ratio[level], seg.fund) for lo, hi, seg in scheme.bounds()))
    pays = {"hifp": 0, "hifob": 0}
    for p in pieces:
        pays[p.fund] += p.pay
    for fund, already in (("hifp", ytd.hifp_paid), ("hifob", ytd.hifob_paid)):
        cap = scheme.caps.get(fund)
        if cap is not None and pays[fund] > max(0, cap - already):
            allowed = max(0, cap - already)
            notes.append(f"{fund} yearly cap {yuan(cap)} reached: {yuan(pays[fund] - allowed)} not paid")
            pays[fund] = allowed
    hifp, hifob = pays["hifp"], pays["hifob"]

    base = inscp - hifp - hifob
    hifmi = 0
    ci = policy.critical_illness
    if ci is not None and category in ci.categories:
        b0 = acc.hifmi_base_cum
        ci_pieces = _pieces(b0, b0 + base, ((lo, hi, r, "hifmi") for lo, hi, r in ci.bounds()))
        pieces += ci_pieces
        hifmi = sum(p.pay for p in ci_pieces)
        if ci.cap is not None and hifmi > max(0, ci.cap - acc.hifmi_paid):
            allowed = max(0, ci.cap - acc.hifmi_paid)
            notes.append(f"hifmi yearly cap {yuan(ci.cap)} reached: {yuan(hifmi - allowed)} not paid")
            hifmi = allowed

    maf = 0
    ma = policy.medical_assistance
    if assistance_class is not None:
        klass = ma.classes.get(assistance_class) if ma is not None else None
        if klass is None:
            notes.append(f"no medical assistance for class {assistance_class!r} in region {policy.region}")
        else:
            left = inscp - hifp - hifob - hifmi
            maf = min(apply_ratio(left, klass.ratio), max(0, klass.yearly_cap - acc.maf_paid))
            if left:
                pieces.append(Piece(fund="maf", lower=0, upper=left, ratio=_fraction_text(klass.ratio),
                                    pay=maf))

    fund_sum = hifp + hifob + hifmi + maf
    psn_part = total - fund_sum
    eligible = {"none": 0, "in_policy": psn_part - fulamt - overlmt, "all": psn_part}[scheme.personal_account]
    acct = min(eligible, account_balance) if use_account else 0
    breakdown = Breakdown(
        medfee_sumamt=total, fulamt_ownpay_amt=fulamt, overlmt_selfpay=overlmt, preselfpay_amt=preself,
        inscp_scp_amt=inscp, act_pay_dedc=dedc, hifp_pay=hifp, hifob_pay=hifob, hifmi_pay=hifmi, maf_pay=maf,
        fund_pay_sumamt=fund_sum, psn_part_amt=psn_part, acct_pay=acct, psn_cash_pay=psn_part - acct,
        balc=account_balance - acct, pieces=tuple(pieces), notes=tuple(notes),
    )
    breakdown.check()
    deltas = {
        f"{care}.deductible_used": dedc,
        f"{care}.inscp_cum": inscp,
        f"{care}.hifp_paid": hifp,
        f"{care}.hifob_paid": hifob,
        "admissions": 1 if care == "inpatient" else 0,
        "hifmi_base_cum": base,
        "hifmi_paid": hifmi,
        "maf_paid": maf,
    }
    return Split(breakdown=breakdown, deltas=deltas)


@dataclass(frozen=True)
class LineShare:
    """One fee line's part of the catalogue stage (fen): what the platform reports per uploaded line."""

    cls: str
    selfpay_prop: Fraction
    fulamt_ownpay_amt: Fen
    overlmt_amt: Fen
    preselfpay_amt: Fen
    inscp_scp_amt: Fen


def line_shares(lines: Iterable[FeeLine], catalogue: Policy) -> list[LineShare]:
    """Each line's share of the catalogue stage of `split_bill`, in the given order.

    A class not covered is fully self-paid (`selfpay_prop` 1). For a covered class, a line's in-policy part
    is its step of the class's running total: covered_k = apply_ratio(S_k, 1 - r) - apply_ratio(S_(k-1), 1 - r)
    with S the running sum of (amount - over-limit) over the class's lines and r its self-pay-first ratio;
    the rest is paid first by the patient. So the lines of a bill sum exactly to the bill's
    fulamt_ownpay_amt, overlmt_selfpay, preselfpay_amt and inscp_scp_amt (each step lies in
    [0, amount - over-limit], as the rounding is monotone and r <= 1)."""
    running: dict[str, tuple[Fen, Fen]] = {}
    out = []
    for i, line in enumerate(lines):
        cls, amount, over = _line(i, line, catalogue)
        cc = catalogue.catalogue[cls]
        if not cc.covered:
            out.append(LineShare(cls, Fraction(1), amount, 0, 0, 0))
            continue
        base, given = running.get(cls, (0, 0))
        base += amount - over
        upto = apply_ratio(base, 1 - cc.self_pay_first)
        running[cls] = (base, upto)
        covered = upto - given
        out.append(LineShare(cls, cc.self_pay_first, 0, over, amount - over - covered, covered))
    return out


def allocate(amount: Fen, parts: Mapping[str, Fen]) -> dict[str, Fen]:
    """Share `amount` out over `parts` in proportion, exactly: each share is in [0, part] and the shares
    sum to `amount` (<= sum of parts). Prefix rounding: share_k = round(S_k * q) - round(S_(k-1) * q) with
    S the running sum of parts in the given order and q = amount / total, rounded half up."""
    total = sum(parts.values())
    if not 0 <= amount <= total:
        raise InvalidAmount(f"cannot share {amount} fen over {total} fen", amount=amount, total=total)
    if total == 0:
        return {k: 0 for k in parts}
    q = Fraction(amount, total)
    out, running, given = {}, 0, 0
    for name, part in parts.items():
        running += part
        upto = apply_ratio(running, q)
        out[name] = upto - given
        given = upto
    return out
