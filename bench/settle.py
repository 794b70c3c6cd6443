"""Durable settlements per second and latency of the ledger, on SQLite and PostgreSQL.

A settlement is one `Ledger.post` of a realistic medical settlement (pooled fund, critical-illness
fund, personal account, patient cash -> hospital payable; the personal account is checked against
overdraft) under a fresh idempotency key, durably committed (SQLite: WAL + synchronous=FULL, fsync per
commit; PostgreSQL: synchronous_commit=on, fsync=on). Each configuration runs with 1 and 16
submitter threads; "naive" is the same SQL with every settlement committed on its own (no group
commit) as the baseline. Targets (2-core machine): SQLite with 16 submitters >= 5,000 settlements/s,
>= 5x the naive baseline, p99 < 20 ms.

    .venv/bin/python bench/settle.py [--seconds 3] [--no-postgres]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from settlement.ledger import (  # noqa: E402
    AccountKind,
    Ledger,
    Store,  # noqa: E402
    Transfer,
)
from settlement.ledger.store.sqlite import SqliteStore  # noqa: E402

PERSONS = 2_000
TARGET_TPS = 5_000
TARGET_SPEEDUP = 5.0
TARGET_P99_MS = 20.0


def setup(ledger: Ledger) -> None:
    """Funds, one hospital, and PERSONS funded personal accounts."""
    ledger.open_account("POOL:110000", AccountKind.POOLED_FUND, region="110000")
    ledger.open_account("CI:110000", AccountKind.CRITICAL_ILLNESS_FUND, region="110000")
    ledger.open_account("HOSP:H001", AccountKind.HOSPITAL_PAYABLE, owner="H001")
    ledger.open_account("CASH", AccountKind.PATIENT_CASH)
    ledger.open_account("EXT", AccountKind.EXTERNAL)

    def seed(tx: object) -> None:
        for i in range(PERSONS):
            ledger.open_account(f"PA:{i:06d}", AccountKind.PERSONAL_ACCOUNT, region="110000", owner=f"P{i}")
            ledger.post(f"seed:{i}", "allocation", [Transfer("EXT", f"PA:{i:06d}", 10**10)])

    with ledger.transaction() as tx:
        seed(tx)


def settlement(i: int) -> list[Transfer]:
    bill = 10_000 + (i * 7919) % 90_000
    pool = bill * 7 // 10
    ci = bill // 20
    acct = (bill - pool - ci) // 2
    cash = bill - pool - ci - acct
    return [
        Transfer("POOL:110000", "HOSP:H001", pool, "hifp_pay"),
        Transfer("CI:110000", "HOSP:H001", ci, "hifmi_pay"),
        Transfer(f"PA:{i % PERSONS:06d}", "HOSP:H001", acct, "acct_pay"),
        Transfer("CASH", "HOSP:H001", cash, "psn_cash_pay"),
    ]


def run(ledgers: list[Ledger], seconds: float, tag: str) -> dict[str, float]:
    """Post settlements from one thread per ledger for `seconds`; return tps and latency percentiles."""
    submitters = len(ledgers)
    latencies: list[list[float]] = [[] for _ in range(submitters)]
    stop = threading.Event()
    start_gate = threading.Barrier(submitters + 1)

    def worker(w: int) -> None:
        ledger = ledgers[w]
        lat = latencies[w]
        n = 0
        start_gate.wait()
        while not stop.is_set():
            i = w * 10_000_000 + n
            ts = settlement(i)
            t0 = time.perf_counter()
            ledger.post(f"{tag}-T{w:03d}:{n:08d}", "medical", ts, payload={"medfee_sumamt": sum(t.amount for t in ts)})
            lat.append(time.perf_counter() - t0)
            n += 1

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(submitters)]
    for t in threads:
        t.start()
    start_gate.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    all_lat = sorted(x for lat in latencies for x in lat)
    n = len(all_lat)
    return {
        "n": n,
        "tps": n / elapsed,
        "p50_ms": all_lat[n // 2] * 1e3,
        "p99_ms": all_lat[min(n - 1, int(n * 0.99))] * 1e3,
    }


def bench_store(
    name: str,
    make: Callable[[], Store],
    seconds: float,
    results: dict[tuple[str, int], dict[str, float]],
    *,
    store_per_submitter: Callable[[Store], Store] | None = None,
) -> None:
    """Bench one configuration with 1 and 16 submitters; `store_per_submitter(first)` gives each
    submitter its own store (own connection) on the same database instead of sharing `first`."""
    for submitters in (1, 16):
        store = make()
        extra: list[Store] = []
        try:
            ledger = Ledger(store)
            setup(ledger)
            ledgers = [ledger] * submitters
            if store_per_submitter is not None:
                extra = [store_per_submitter(store) for _ in range(submitters)]
                ledgers = [Ledger(s) for s in extra]
            r = run(ledgers, seconds, f"{name}{submitters}")
            ledger.check_invariants()
        finally:
            for s in extra:
                s.close()
            store.close()
        results[(name, submitters)] = r
        print(
            f"  {name:<16} {submitters:>2} submitters: {r['tps']:>8.0f} settlements/s"
            f"  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  (n={r['n']})",
            flush=True,
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="measured seconds per configuration")
    ap.add_argument("--no-postgres", action="store_true", help="skip PostgreSQL")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args()

    print(
        f"bench/settle.py  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  cpus={os.cpu_count()}  "
        f"loadavg={' '.join(f'{x:.2f}' for x in os.getloadavg())}  python {sys.version.split()[0]}  "
        f"{args.seconds:g} s per configuration"
    )
    results: dict[tuple[str, int], dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="sscard-bench-") as tmp:
        counter = iter(range(1_000_000))
        print("SQLite (WAL, synchronous=FULL); engine = group commit through one writer thread:")
        bench_store("sqlite", lambda: SqliteStore(Path(tmp) / f"g{next(counter)}.db"), args.seconds, results)
        print("Baselines, same SQL, one COMMIT (one fsync) per settlement:")
        bench_store(
            "sqlite-naive",
            lambda: SqliteStore(Path(tmp) / f"n{next(counter)}.db", group_commit=False),
            args.seconds,
            results,
            store_per_submitter=lambda first: SqliteStore(first.path, group_commit=False),  # type: ignore[attr-defined]
        )
        bench_store(
            "sqlite-serial",
            lambda: SqliteStore(Path(tmp) / f"s{next(counter)}.db", group_commit=False),
            args.seconds,
            results,
        )

    if not args.no_postgres:
        from settlement.ledger.store.postgres import PostgresStore
        from testing.pgtemp import PostgresUnavailable, TempCluster

        try:
            cluster = TempCluster(durable=True, max_connections=60, tcp=True).start()
        except PostgresUnavailable as e:
            print(f"PostgreSQL: skipped ({e})")
        else:
            try:
                print("PostgreSQL (synchronous_commit=on, fsync=on); engine = group commit on one connection:")
                bench_store("postgres", lambda: PostgresStore(cluster.new_schema()), args.seconds, results)
                print("Baseline: one transaction per settlement on a pool of 16 connections (row locks):")
                bench_store(
                    "postgres-naive",
                    lambda: PostgresStore(cluster.new_schema(), group_commit=False, max_size=16),
                    args.seconds,
                    results,
                )
            finally:
                cluster.stop()

    g, n, sr = results[("sqlite", 16)], results[("sqlite-naive", 16)], results[("sqlite-serial", 16)]
    speedup = g["tps"] / n["tps"]
    print(
        "  naive = a connection per submitter (SQLite's file lock and busy handler arbitrate);"
        " serial = one shared connection behind a mutex"
    )
    print(f"  engine vs serial baseline, 16 submitters: {g['tps'] / sr['tps']:.1f}x (for information)")
    checks = [
        (f"SQLite, 16 submitters: >= {TARGET_TPS} durable settlements/s", g["tps"] >= TARGET_TPS, f"{g['tps']:.0f}/s"),
        (f"SQLite, 16 submitters: >= {TARGET_SPEEDUP:g}x naive baseline", speedup >= TARGET_SPEEDUP, f"{speedup:.1f}x"),
        (f"SQLite, 16 submitters: p99 < {TARGET_P99_MS:g} ms", g["p99_ms"] < TARGET_P99_MS, f"{g['p99_ms']:.2f} ms"),
    ]
    print("Targets:")
    for what, ok, got in checks:
        print(f"  [{'PASS' if ok else 'FAIL'}] {what}: {got}")
    if ("postgres", 16) in results and ("postgres-naive", 16) in results:
        pg, pgn = results[("postgres", 16)], results[("postgres-naive", 16)]
        print(f"  (PostgreSQL, 16 submitters: group commit {pg['tps'] / pgn['tps']:.1f}x the per-transaction baseline)")
    return 1 if args.strict and not all(ok for _, ok, _ in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
