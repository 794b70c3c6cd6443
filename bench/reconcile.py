"""Day-end reconciliation throughput: journal rows reconciled per second on SQLite, and how it scales.

For each size N (default 100,000 and 1,000,000) the bench builds one business day: N settlements across
400 terminals of 100 institutions in 4 regions (10% cross-region, 2% voided at both sides, 1% partly
refunded), and the terminals' journals for it, with 1% of the settlements carrying a seeded discrepancy,
spread evenly over the five classes (missing at the centre, missing at the terminal, amount mismatch,
status mismatch, duplicate).

The ledger side is BULK-LOADED straight into the ledger's real tables (accounts, postings with the
payloads medical.settle writes, transfers with its memos, account totals that satisfy the ledger's
invariants): posting a million settlements through the engine would take far longer than the
reconciliation being measured. The journal is written as a CSV file in the documented layout. What is
timed is exactly what `sscard reconcile` does: importing the CSV through the validating reader, copying
the ledger into the reconciliation tables, and the SQL comparison (totals and details) plus recording the
run. On SQLite the import copies the ledger alongside (settlement/reconcile/scratch.py), so the "import" figure
includes the copy and the separate `sync()` the CLI calls next finds nothing left; the total is what counts.
Before the clock starts, the build's objects are dropped and its writes flushed (`os.sync`): neither is
part of a reconciliation. The bench then checks that every seeded discrepancy was found and nothing else
was flagged.

    .venv/bin/python bench/reconcile.py [--sizes 100000 1000000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from settlement.ledger.store.sqlite import SqliteStore  # noqa: E402
from settlement.reconcile.reconciler import Reconciler  # noqa: E402
from settlement.schemes.engine import Engine  # noqa: E402
from settlement.wire import FIELDS, PARTS, Trailer  # noqa: E402
from testing.load import policy_book  # noqa: E402

DAY = "2026-03-02"
REGIONS = ("110000", "990100", "990200", "990300")
CLASSES = ("missing_at_centre", "missing_at_terminal", "amount_mismatch", "status_mismatch", "duplicate")
FUNDS = {"hifp_pay": "hifp", "hifob_pay": "hifob", "hifmi_pay": "hifmi", "maf_pay": "maf"}
TARGET_SECONDS_1M = 20.0


def stamp(i: int, n: int) -> str:
    """Commit time of the i-th of n postings: spread over 08:00-20:00 China time on DAY (UTC text)."""
    us = 12 * 3600 * 10**6 * i // n
    s, us = divmod(us, 10**6)
    h, rem = divmod(s, 3600)
    return f"{DAY}T{h:02d}:{rem // 60:02d}:{rem % 60:02d}.{us:06d}+00:00"


class Day:
    """Builds the ledger rows and journal lines of one day."""

    def __init__(self, n: int, seed: int = 1) -> None:
        self.n, self.rng = n, random.Random(seed)
        self.insts = [(f"H{r}{i:03d}", r) for r in REGIONS for i in range(25)]
        self.terms = [(f"T{code}-{j}", code, r) for code, r in self.insts for j in range(4)]
        self.persons = [(f"P{r}{i:06d}", r) for r in REGIONS for i in range(5_000)]
        self.postings: list[tuple] = []
        self.transfers: list[tuple] = []
        self.journal: list[list[str]] = []
        self.deltas: dict[str, list[int]] = {}
        self.accounts: dict[str, tuple[str, str | None, str | None, int]] = {}
        self.seeded: set[tuple[str, str]] = set()
        self.serial: dict[str, int] = {}

    def account(self, code: str, kind: str, region: str | None, owner: str | None = None, mgn: int = 1) -> str:
        if code not in self.accounts:
            self.accounts[code] = (kind, region, owner, mgn)
        return code

    def move(self, seq: int, idx: int, debit: str, credit: str, amount: int, memo: str) -> None:
        self.transfers.append((seq, idx, debit, credit, amount, memo))
        self.deltas.setdefault(debit, [0, 0])[0] += amount
        self.deltas.setdefault(credit, [0, 0])[1] += amount

    def key(self, tid: str) -> str:
        self.serial[tid] = self.serial.get(tid, 0) + 1
        return f"{tid}:{self.serial[tid]:07d}"

    def line(self, tid: str, inst: str, y: str, x: str, key: str, kind: str, status: str, amount: int,
             parts: dict[str, int] | None, orig: str = "", request: str = "") -> None:
        p = parts or {}
        self.journal.append([tid, DAY, key, kind, orig, status, str(amount), *(str(p.get(f, 0)) for f in PARTS),
                             inst, y, x, f"{DAY}T10:00:00+08:00", request])

    def build(self) -> None:
        rng, n = self.rng, self.n
        seq = 0
        for code, r in self.insts:
            self.account(f"inst/{code}/payable", "hospital_payable", r, code)
            self.account(f"inst/{code}/cash", "cash", r, code)
        for pid, r in self.persons:  # personal accounts, funded before the day
            seq += 1
            acct = self.account(f"person/{pid}/account", "personal_account", r, pid, 0)
            self.postings.append((seq, f"seed:{pid}", "account.deposit", None, json.dumps({"person_id": pid}),
                                  f"{DAY}T00:00:00.000000+00:00", "posted"))
            self.move(seq, 0, f"{r}/external", acct, 10**9, "deposit")
        faults = {i: CLASSES[k % len(CLASSES)] for k, i in enumerate(rng.sample(range(n), n // 100))}
        for i in range(n):
            tid, inst, x = self.terms[i % len(self.terms)]
            pid, y = self.persons[rng.randrange(len(self.persons))]
            if rng.random() >= 0.1:
                pid, y = self.persons[rng.randrange(5_000) + REGIONS.index(x) * 5_000]
            bill = rng.randrange(1_000, 2_000_000)
            hifp = bill * rng.randrange(50, 85) // 100
            hifob = bill // 20 if rng.random() < 0.05 else 0
            hifmi = bill // 25 if rng.random() < 0.05 else 0
            maf = bill // 30 if rng.random() < 0.03 else 0
            acct = (bill - hifp - hifob - hifmi - maf) * rng.randrange(0, 100) // 100
            parts = dict(zip(PARTS, (hifp, hifob, hifmi, maf, acct, bill - hifp - hifob - hifmi - maf - acct),
                             strict=True))
            key = self.key(tid)
            fault = faults.get(i)
            if fault == "missing_at_centre":
                self.line(tid, inst, y, x, key, "settle", "confirmed", bill, parts, request=self.request(pid, inst))
                self.seeded.add((fault, key))
                continue
            seq += 1
            ts = self.settle(seq, key, pid, y, inst, x, parts, stamp(i, n))
            r = rng.random()
            if fault is None and r < 0.02:  # voided at both sides (a lost response)
                vkey = self.key(tid)
                seq += 1
                self.reverse(seq, vkey, key, ts, stamp(i, n))
                self.line(tid, inst, y, x, key, "settle", "reversed", bill, None)
                self.line(tid, inst, y, x, vkey, "void", "confirmed", bill, parts, orig=key)
                continue
            if fault == "missing_at_terminal":
                self.seeded.add((fault, key))
                continue
            if fault == "status_mismatch":
                self.line(tid, inst, y, x, key, "settle", "reversed", bill, parts)
                self.line(tid, inst, y, x, self.key(tid), "void", "pending", 0, None, orig=key)
                self.seeded.add((fault, key))
                continue
            if fault == "amount_mismatch":
                self.line(tid, inst, y, x, key, "settle", "confirmed", bill + 100,
                          {**parts, "psn_cash_pay": parts["psn_cash_pay"] + 100})
                self.seeded.add((fault, key))
                continue
            self.line(tid, inst, y, x, key, "settle", "confirmed", bill, parts, request=self.request(pid, inst))
            if fault == "duplicate":
                self.journal.append(self.journal[-1])
                self.seeded.add((fault, key))
            elif r < 0.03 and parts["psn_cash_pay"] > 1:  # a partial refund of the cash part
                rkey = self.key(tid)
                amount = parts["psn_cash_pay"] // 2
                seq += 1
                self.postings.append((seq, rkey, "medical.refund", key, json.dumps({"result": {
                    "refund_key": rkey, "setl_id": key, "refundable_after": bill - amount, "replayed": False,
                    "refund": {"medfee_sumamt": amount, "psn_cash_pay": amount}}}, sort_keys=True),
                    stamp(i, n), "posted"))
                self.move(seq, 0, f"inst/{inst}/cash", f"{x}/patient-cash", amount, "psn_cash_pay")
                self.line(tid, inst, y, x, rkey, "refund", "confirmed", amount, {"psn_cash_pay": amount}, orig=key)

    @staticmethod
    def request(pid: str, inst: str) -> str:
        return json.dumps({"person_id": pid, "institution": inst, "mdtrt_id": "MD" + pid, "care": "outpatient",
                           "lines": [{"cls": "A", "amount": 1000, "over_limit": 0}], "use_account": True},
                          separators=(",", ":"))

    def settle(self, seq: int, key: str, pid: str, y: str, inst: str, x: str, parts: dict[str, int],
               at: str) -> list[tuple[str, str, int, str]]:
        """Transfers and payload as medical.settle posts them (settlement/schemes/medical.py `_transfers`)."""
        owed = f"inst/{inst}/payable"
        via = owed
        if x != y:
            via = self.account(f"{y}/payable/{x}", "interregional_payable", y)
            self.account(f"{x}/receivable/{y}", "interregional_receivable", x)
        ts = [(f"{y}/fund/{f}", via, parts[p], p) for p, f in FUNDS.items()]
        ts.append((f"person/{pid}/account", via, parts["acct_pay"], "acct_pay"))
        if x != y:
            ts.append((f"{x}/receivable/{y}", owed, sum(parts[p] for p in PARTS[:5]), f"interregional {y}->{x}"))
        ts.append((f"{x}/patient-cash", f"inst/{inst}/cash", parts["psn_cash_pay"], "psn_cash_pay"))
        ts = [t for t in ts if t[2] > 0]
        b = {**parts, "medfee_sumamt": sum(parts.values()), "fulamt_ownpay_amt": 0, "overlmt_selfpay": 0,
             "preselfpay_amt": 0, "inscp_scp_amt": sum(parts.values()), "act_pay_dedc": 0,
             "fund_pay_sumamt": sum(parts[p] for p in PARTS[:4]), "psn_part_amt": parts["acct_pay"]
             + parts["psn_cash_pay"], "balc": 0, "notes": [],
             "pieces": [{"fund": "hifp", "lower": 0, "upper": parts["hifp_pay"], "ratio": "80%",
                         "pay": parts["hifp_pay"]}]}
        payload = {"result": {"setl_id": key, "mdtrt_id": "MD" + hashlib.blake2b(key.encode(), digest_size=10)
                              .hexdigest().upper(), "person_id": pid, "institution": inst, "insured_region": y,
                              "treatment_region": x, "cross_region": x != y, "setl_time": at, "year": 2026,
                              "breakdown": b, "replayed": False}}
        self.postings.append((seq, key, "medical.settle", None, json.dumps(payload, sort_keys=True), at, "posted"))
        for idx, (d, c, a, m) in enumerate(ts):
            self.move(seq, idx, d, c, a, m)
        return ts

    def reverse(self, seq: int, vkey: str, key: str, ts: list[tuple[str, str, int, str]], at: str) -> None:
        prev = self.postings[-1]
        self.postings[-1] = (*prev[:6], "reversed")
        payload = {"result": {"void_key": vkey, "setl_id": key, "status": "voided", "replayed": False}}
        self.postings.append((seq, vkey, "reversal", key, json.dumps(payload, sort_keys=True), at, "posted"))
        for idx, (d, c, a, m) in enumerate(ts):
            self.move(seq, idx, c, d, a, m)


def bulk_load(db: Path, day: Day) -> None:
    """Write the day's postings, transfers and account totals into the ledger's tables."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN")
    now = f"{DAY}T00:00:00.000000+00:00"
    conn.executemany("INSERT INTO ledger_accounts (code, kind, region, owner, may_go_negative, created_at)"
                     " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (code) DO NOTHING",
                     [(c, k, r, o, m, now) for c, (k, r, o, m) in day.accounts.items()])
    conn.executemany("INSERT INTO ledger_postings (seq, key, kind, links_to, payload, request_hash, created_at,"
                     " status) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     ((s, k, kd, lk, p, hashlib.blake2b(k.encode(), digest_size=16).hexdigest(), at, st)
                      for s, k, kd, lk, p, at, st in day.postings))
    cols = [r[1] for r in conn.execute("PRAGMA table_info(ledger_transfers)")]
    if "posting_seq" in cols:
        conn.executemany("INSERT INTO ledger_transfers (posting_seq, idx, debit, credit, amount, memo)"
                         " VALUES (?, ?, ?, ?, ?, ?)", day.transfers)
    else:
        keys = {p[0]: p[1] for p in day.postings}
        conn.executemany("INSERT INTO ledger_transfers (posting_key, idx, debit, credit, amount, memo)"
                         " VALUES (?, ?, ?, ?, ?, ?)", ((keys[s], *rest) for s, *rest in day.transfers))
    conn.executemany("UPDATE ledger_accounts SET debits_posted = debits_posted + ?, credits_posted = credits_posted + ?"
                     " WHERE code = ?", [(d, c, code) for code, (d, c) in day.deltas.items()])
    conn.execute("COMMIT")
    conn.close()


def run(n: int, workdir: Path, build_only: bool = False) -> dict[str, float]:
    db = workdir / f"recon-{n}.db"
    for suffix in ("", "-wal", "-shm", "-recon", "-recon-wal", "-recon-shm", "-recon-centre", "-recon-centre-wal",
                   "-recon-centre-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    t = time.perf_counter()
    day = Day(n)
    day.build()
    with SqliteStore(db) as store:
        Engine(store, policies=policy_book())
    bulk_load(db, day)
    csv_path = workdir / f"journal-{n}.csv"
    import csv

    with csv_path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(FIELDS)
        w.writerows(day.journal)
    digest = hashlib.sha256(csv_path.read_bytes()).hexdigest()  # the trailer an export ends with (wire.py)
    with csv_path.open("a", encoding="utf-8", newline="") as f:
        f.write(Trailer(len(day.journal), day.journal[-1][2], digest).csv_line())
    rows = len(day.journal)
    print(f"  built {n:,} settlements, {len(day.postings):,} postings, {rows:,} journal rows "
          f"in {time.perf_counter() - t:.1f} s (not timed)", flush=True)
    (workdir / f"seeded-{n}.json").write_text(json.dumps(sorted(day.seeded)))
    (workdir / f"terminals-{n}.json").write_text(json.dumps([(tid, code) for tid, code, _ in day.terms]))
    if build_only:
        return {}
    terminals = [(tid, code) for tid, code, _ in day.terms]
    seeded = day.seeded
    del day  # the build's objects (millions) would otherwise be walked by every full GC in the timed region
    gc.collect()
    os.sync()  # the build's writes (a 1.3 GB database at 1M) reach the disk before the clock starts, not during
    with SqliteStore(db) as store:
        engine = Engine(store, policies=policy_book())
        recon = Reconciler(engine)
        recon.register_terminals(terminals)
        t0 = time.perf_counter()
        recon.import_journal([csv_path], actor="bench")
        t1 = time.perf_counter()
        copied = recon.sync()
        t2 = time.perf_counter()
        report = recon.reconcile(DAY, actor="bench")
        t3 = time.perf_counter()
        recon.close()
    found = {(d.cls, d.key) for d in report.differences}
    missed, extra = seeded - found, found - seeded
    total = t3 - t0
    print(f"  import (the ledger copied alongside) {t1 - t0:.2f} s, then ledger copy {t2 - t1:.2f} s"
          f" ({copied:,} postings left), compare {t3 - t2:.2f} s;"
          f" total {total:.2f} s = {rows / total:,.0f} journal rows/s", flush=True)
    print(f"  compare steps: {report.timings}", flush=True)
    print(f"  seeded {len(seeded):,}, found {len(found):,}, missed {len(missed)}, false positives {len(extra)}"
          f" {report.counts()}", flush=True)
    if missed or extra:
        print(f"  MISSED {sorted(missed)[:5]} EXTRA {sorted(extra)[:5]}")
    return {"rows": rows, "total": total, "import": t1 - t0, "copy": t2 - t1, "compare": t3 - t2,
            "ok": float(not missed and not extra)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--keep", type=Path, help="keep the databases and journals in this directory")
    ap.add_argument("--build-only", action="store_true", help="with --keep: build the day and stop")
    args = ap.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="sscard-recon-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = {}
    try:
        for n in args.sizes:
            print(f"== {n:,} settlements", flush=True)
            results[n] = run(n, workdir, args.build_only)
        if args.build_only:
            return
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    sizes = sorted(results)
    print("\nsize        journal rows   seconds   rows/s     all found, none extra")
    for n in sizes:
        r = results[n]
        print(f"{n:>10,}  {r['rows']:>12,.0f}  {r['total']:>8.2f}  {r['rows'] / r['total']:>9,.0f}  "
              f"{'yes' if r['ok'] else 'NO'}")
    if len(sizes) >= 2:
        a, b = results[sizes[0]], results[sizes[-1]]
        growth = (b["total"] / a["total"]) / (b["rows"] / a["rows"])
        print(f"time grows {b['total'] / a['total']:.2f}x for {b['rows'] / a['rows']:.2f}x the rows: "
              f"{growth:.2f} of linear ({'no worse than linear' if growth <= 1.1 else 'WORSE than linear'})")
    big = [n for n in sizes if n >= 1_000_000]
    if big:
        t = results[big[-1]]["total"]
        print(f"1,000,000 settlements reconciled in {t:.1f} s (target < {TARGET_SECONDS_1M:.0f} s): "
              f"{'PASS' if t < TARGET_SECONDS_1M and results[big[-1]]['ok'] else 'FAIL'}")


if __name__ == "__main__":
    main()
