"""Settlements per second as terminals make them: over HTTP, beside the same flow in-process and `Ledger.post`.

The headline bench of the settlement service (issue 14). A region's counters: 64 hospitals of Beijing, one terminal
each with its own key, `--persons` insured with funded personal accounts. Each terminal `POST`s
/v1/medical/settle with the body `SettlementClient.settle` sends (1-8 fee lines) for visits registered
beforehand, the next request as soon as the last is answered, through a lean asyncio client in its own process
(testing/httpload.py). Measured per configuration, side by side in one run:

  * HTTP: settlements/s, p50/p99, CPU per settlement of the service's processes (and of PostgreSQL's backends),
    with 1, 16 and 64 terminals; on SQLite and on PostgreSQL, with 1 service process and with `--workers`;
  * a visit (register + settle) with 64 terminals;
  * the same settlement flow in-process: 16 submitters as asyncio tasks on the store's writer (the service's
    path without HTTP) and as 16 threads (`Medical.settle`);
  * `Ledger.post` alone with 16 submitter threads (bench/settle.py's posting), on the same kind of store.

CPU per settlement is CPU time (user + system) of the processes named, over the measured window (warm-up
excluded), divided by the settlements answered in it: it is what the 1,500 settlements/s projection uses.
The machine's load average is printed with every table: on a shared machine the rates move, CPU times less.

    .venv/bin/python bench/service.py                  # SQLite and PostgreSQL, about 4 minutes
    .venv/bin/python bench/service.py --quick          # fewer configurations, 3 s each
    .venv/bin/python bench/service.py --stores sqlite --clients 64 --seconds 10
    .venv/bin/python bench/service.py --strict          # exit 1 when a target is missed
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from settlement.ledger import Ledger, Store  # noqa: E402
from settlement.ledger.store.sqlite import SqliteStore  # noqa: E402
from settlement.schemes.engine import Engine  # noqa: E402
from settlement.wire import FeeLine  # noqa: E402
from sscard.stack import listening_socket  # noqa: E402
from testing.httpload import Terminal, beijing, keys_toml, register_visits, run_in_process  # noqa: E402

TARGET_RATE = 1_500  # settlements/s: Beijing's peak (1,779 hospitals)
TARGETS = {  # issue 14, this 2-core machine
    "in-process batched, 16 submitters, SQLite": 5_000,
    "in-process batched, 16 submitters, PostgreSQL": 2_000,
    "HTTP, 64 terminals, SQLite": 1_500,
    "HTTP, 64 terminals, PostgreSQL, several processes": 1_000,
}
TARGET_P99_MS = 100.0
TARGET_CPU_US = 700.0  # server CPU per settlement over HTTP, SQLite


@dataclass
class Row:
    store: str
    path: str
    procs: int | str
    clients: int
    rate: float
    p50: float
    p99: float
    cpu_us: float  # the service's (or the bench process's) CPU per settlement
    db_us: float = 0.0  # PostgreSQL backends' CPU per settlement
    note: str = ""

    def line(self) -> str:
        db = f"{self.db_us:7.0f}" if self.db_us else "      -"
        return (f"{self.store:<10} {self.path:<30} {self.procs!s:>5} {self.clients:>7} {self.rate:>9.0f} "
                f"{self.p50:>7.1f} {self.p99:>7.1f} {self.cpu_us:>8.0f} {db} {self.cpu_us + self.db_us:>8.0f}  "
                f"{self.note}")


HEADER = (f"{'store':<10} {'path':<30} {'procs':>5} {'clients':>7} {'settle/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'CPU us':>8} {'DB us':>7} {'total':>8}")


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes and of their children still running."""
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    stats: dict[int, float] = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(p)] = int(rest[1])
        stats[int(p)] = (int(rest[11]) + int(rest[12])) / tick
    wanted, todo = set(), list(pids)
    while todo:
        p = todo.pop()
        if p in wanted:
            continue
        wanted.add(p)
        todo += [c for c, pp in parent.items() if pp == p]
    return sum(stats.get(p, 0.0) for p in wanted)


# -- the world -----------------------------------------------------------------------------------------------
class Centre:
    """One store with the region in it, the keys file, and how to start the service on it."""

    def __init__(self, kind: str, tmp: Path, persons: int, cluster: object | None) -> None:
        self.kind, self.tmp, self.cluster = kind, tmp, cluster
        if kind == "sqlite":
            self.target = ["--db", str(tmp / "centre.db")]
            self.store: Store = SqliteStore(tmp / "centre.db")
        else:
            from settlement.ledger.store.postgres import PostgresStore

            self.dsn = cluster.new_schema("bench")  # type: ignore[union-attr]
            self.target = ["--postgres", self.dsn]
            self.store = PostgresStore(self.dsn, max_size=20)
        self.engine = Engine(self.store)
        t0 = time.perf_counter()
        self.terminals = beijing(self.engine, persons=persons)
        print(f"  {kind}: 64 hospitals, 64 terminals, {persons} insured in {time.perf_counter() - t0:.0f} s",
              flush=True)
        self.keys = tmp / f"keys-{kind}.toml"
        self.keys.write_text(keys_toml(self.terminals))
        self.runs = 0

    def visits(self, clients: int, per: int) -> list[Terminal]:
        self.runs += 1
        return register_visits(self.engine, self.terminals[:clients], per, seed=self.runs, run_id=f"b{self.runs}")

    def db_pids(self) -> list[int]:
        return [self.cluster.proc.pid] if self.kind == "postgres" else []  # type: ignore[union-attr]

    @contextmanager
    def service(self, workers: int) -> Iterator[tuple[int, int]]:
        """`sscard settlement serve` in its own process(es); (port, pid)."""
        with listening_socket() as sock:
            proc = subprocess.Popen(
                [sys.executable, "-m", "sscard", "settlement", "serve", *self.target, "--keys", str(self.keys),
                 "--workers", str(workers), "--fd", str(sock.fileno()), "--log-level", "warning"],
                pass_fds=[sock.fileno()])
            port = sock.getsockname()[1]
        try:
            for _ in range(600):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.05)
            time.sleep(0.5 if workers == 1 else 2.0)  # every worker up
            yield port, proc.pid
        finally:
            proc.terminate()
            proc.wait(30)


# -- measurements --------------------------------------------------------------------------------------------
def http_row(c: Centre, port: int, pid: int, workers: int, clients: int, seconds: float, *, visit: bool = False
             ) -> Row:
    warmup = 1.0
    plan = c.terminals[:clients] if visit else c.visits(clients, int(seconds * 3_000 / clients) + 200)
    holder: list[object] = []

    def measure() -> None:
        time.sleep(warmup)
        holder.append((cpu_seconds([pid]), cpu_seconds(c.db_pids())))
        time.sleep(seconds)
        holder.append((cpu_seconds([pid]), cpu_seconds(c.db_pids())))

    meter = threading.Thread(target=measure)
    meter.start()
    r = run_in_process(("127.0.0.1", port), plan, mode="visit" if visit else "settle", seconds=seconds,
                       warmup=warmup, seed=clients, run_id=f"{'v' if visit else 'h'}{c.runs}x{clients}")
    meter.join()
    (s0, d0), (s1, d1) = holder  # type: ignore[misc]
    n = max(1, r.count("settle"))
    bad = {k: v for k, v in r.statuses.items() if not k.endswith(" 200")}
    note = (f"visits/s {r.rate('visit'):.0f}, visit p99 {r.percentile('visit', 99):.0f} ms; " if visit else "") + (
        f"errors {bad}" if bad else "") + (f" ran out x{r.ran_out}" if r.ran_out else "")
    return Row(c.kind, "HTTP visit (register + settle)" if visit else "HTTP settle", workers, clients,
               r.rate("settle"), r.percentile("settle", 50), r.percentile("settle", 99), (s1 - s0) / n * 1e6,
               (d1 - d0) / n * 1e6 if c.kind == "postgres" else 0.0, note)


def _bill(rng: random.Random) -> list[FeeLine]:
    return [FeeLine(rng.choices("ABC", (6, 3, 1))[0], rng.randrange(5, 600) * 100) for _ in range(rng.randint(1, 8))]


def inproc_row(c: Centre, how: str, seconds: float, submitters: int = 16) -> Row:
    """The settlement flow without HTTP: `submitters` asyncio tasks handing jobs to the store's writer (the service's
    path), or threads calling `Medical.settle`."""
    plan = c.visits(submitters, int(seconds * 8_000 / submitters) + 200)
    rng = random.Random(7)
    bills = {v: _bill(rng) for t in plan for v in t.visits}
    lat: list[float] = []
    end = time.perf_counter() + seconds + 3_600.0

    def serial(t: Terminal, i: int) -> str:
        return f"{t.terminal_id}:i{c.runs}-{i}"

    async def task(t: Terminal) -> None:
        for i, v in enumerate(t.visits):
            if time.perf_counter() >= end:
                return
            t0 = time.perf_counter()
            await c.store.submit(*c.engine.medical.settle_job(serial(t, i), v, bills[v]))
            lat.append(time.perf_counter() - t0)

    def worker(t: Terminal) -> None:
        for i, v in enumerate(t.visits):
            if time.perf_counter() >= end:
                return
            t0 = time.perf_counter()
            c.engine.medical.settle(serial(t, i), v, bills[v])
            lat.append(time.perf_counter() - t0)

    async def tasks() -> None:
        await asyncio.gather(*(task(t) for t in plan))

    threads = [threading.Thread(target=worker, args=(t,)) for t in plan]
    cpu0, w0 = time.process_time(), time.perf_counter()
    end = w0 + seconds
    if how == "asyncio":
        asyncio.run(tasks())
    else:
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    wall, cpu = time.perf_counter() - w0, time.process_time() - cpu0
    lat.sort()
    n = max(1, len(lat))
    return Row(c.kind, f"in-process batched ({how})", "-", submitters, len(lat) / wall, lat[n // 2] * 1e3,
               lat[min(n - 1, int(n * 0.99))] * 1e3, cpu / n * 1e6)


def ledger_row(kind: str, make: Callable[[], Store], seconds: float) -> Row:
    """bench/settle.py's `Ledger.post` of a medical settlement, 16 submitter threads, on a fresh store."""
    import settle  # bench/settle.py, beside this file

    store = make()
    try:
        ledger = Ledger(store)
        settle.setup(ledger)
        cpu0 = time.process_time()
        r = settle.run([ledger] * 16, seconds, "svc")
        cpu = time.process_time() - cpu0
    finally:
        store.close()
    return Row(kind, "Ledger.post", "-", 16, r["tps"], r["p50_ms"], r["p99_ms"], cpu / max(1, r["n"]) * 1e6)


# -- the run --------------------------------------------------------------------------------------------------
def bench_store(kind: str, tmp: Path, args: argparse.Namespace, cluster: object | None) -> list[Row]:
    rows: list[Row] = []
    c = Centre(kind, tmp, args.persons, cluster)
    try:
        def show(row: Row) -> None:
            rows.append(row)
            print(row.line(), flush=True)

        print(f"{HEADER}   (load {loadavg()})")
        if kind == "sqlite":
            show(ledger_row(kind, lambda: SqliteStore(tmp / f"ledger{len(rows)}.db"), args.seconds))
        else:
            from settlement.ledger.store.postgres import PostgresStore

            show(ledger_row(kind, lambda: PostgresStore(cluster.new_schema("ledger")), args.seconds))  # type: ignore[union-attr]
        for how in ("asyncio", "threads"):
            show(inproc_row(c, how, args.seconds))
        for workers in args.workers:
            with c.service(workers) as (port, pid):
                for clients in args.clients:
                    show(http_row(c, port, pid, workers, clients, args.seconds))
                if workers == 1 and not args.quick:
                    show(http_row(c, port, pid, workers, 64, args.seconds, visit=True))
        print(f"  (load {loadavg()})")
        c.engine.ledger.check_invariants()
    finally:
        c.store.close()
    return rows


def verdicts(rows: list[Row]) -> bool:
    """Print each target's verdict and the projection; True when every target measured was met."""
    def best(store: str, path: str, clients: int, procs: Callable[[object], bool] = lambda p: True) -> Row | None:
        found = [r for r in rows if r.store == store and r.path.startswith(path) and r.clients == clients
                 and procs(r.procs)]
        return max(found, key=lambda r: r.rate) if found else None

    checks = []
    for store, name in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
        r = best(store, "in-process batched (asyncio)", 16)
        if r:
            target = TARGETS[f"in-process batched, 16 submitters, {name}"]
            checks.append((f"in-process batched, 16 submitters, {name} >= {target}/s", r.rate >= target,
                           f"{r.rate:.0f}/s"))
    r = best("sqlite", "HTTP settle", 64)
    if r:
        checks.append((f"HTTP, 64 terminals, SQLite >= {TARGETS['HTTP, 64 terminals, SQLite']}/s", r.rate >= 1_500,
                       f"{r.rate:.0f}/s ({r.procs} process)"))
        checks.append((f"HTTP, 64 terminals, SQLite: p99 < {TARGET_P99_MS:g} ms", r.p99 < TARGET_P99_MS,
                       f"{r.p99:.0f} ms"))
        checks.append((f"HTTP, SQLite: service CPU per settlement <= {TARGET_CPU_US:g} us", r.cpu_us <= TARGET_CPU_US,
                       f"{r.cpu_us:.0f} us"))
        inp = best("sqlite", "in-process batched (asyncio)", 16)
        if inp:
            checks.append(("HTTP >= 50% of the batched in-process flow, SQLite", r.rate >= inp.rate / 2,
                           f"{r.rate / inp.rate:.0%}"))
    r = best("postgres", "HTTP settle", 64, lambda p: isinstance(p, int) and p > 1)
    if r:
        checks.append((f"HTTP, 64 terminals, PostgreSQL, {r.procs} processes >= 1000/s", r.rate >= 1_000,
                       f"{r.rate:.0f}/s, p99 {r.p99:.0f} ms"))
    if checks:
        print("Targets (issue 14; this machine):")
        for what, ok, got in checks:
            print(f"  [{'PASS' if ok else 'FAIL'}] {what}: {got}")
    print(f"Projection: cores for {TARGET_RATE:,} settlements/s at the CPU per settlement measured over HTTP "
          "(64 terminals; service + database):")
    for store in ("sqlite", "postgres"):
        for r in [x for x in rows if x.store == store and x.path == "HTTP settle" and x.clients == 64]:
            total = r.cpu_us + r.db_us
            print(f"  {store:<10} {r.procs} process(es): {total:5.0f} us -> {TARGET_RATE * total / 1e6:4.2f} cores")
    return all(ok for _, ok, _ in checks)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="measured seconds per configuration")
    ap.add_argument("--persons", type=int, default=20_000, help="insured persons (the issue's figure: 100000)")
    ap.add_argument("--clients", default="1,16,64", help="terminal counts over HTTP")
    ap.add_argument("--workers", default="1,2", help="service process counts")
    ap.add_argument("--stores", default="sqlite,postgres")
    ap.add_argument("--quick", action="store_true", help="3 s per configuration, 64 terminals only, no visit figure")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.clients = 3.0, "64"
    args.clients = [int(x) for x in args.clients.split(",")]
    args.workers = [int(x) for x in args.workers.split(",")]
    print(f"bench/service.py  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  cpus={os.cpu_count()}  load {loadavg()}  "
          f"python {sys.version.split()[0]}  {args.seconds:g} s per configuration, {args.persons} insured")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="sscard-bench-") as tmp:
        if "sqlite" in args.stores:
            rows += bench_store("sqlite", Path(tmp), args, None)
        if "postgres" in args.stores:
            from testing.pgtemp import PostgresUnavailable, TempCluster

            try:
                cluster = TempCluster(durable=True, max_connections=120, tcp=True).start()
            except PostgresUnavailable as e:
                print(f"PostgreSQL: skipped ({e})")
            else:
                try:
                    rows += bench_store("postgres", Path(tmp), args, cluster)
                finally:
                    cluster.stop()
    met = verdicts(rows)
    print(f"load average at the end: {loadavg()}")
    return 1 if args.strict and not met else 0


if __name__ == "__main__":
    sys.exit(main())
