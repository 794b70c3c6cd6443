"""Benchmark the mock HSM: MAC verifications per second in-process and over TCP (1 and 8 clients), and the
cost of client authentication beside the same traffic without it.

Targets: in-process >= 20,000/s; over TCP on loopback with 8 concurrent clients >= 5,000/s, per suite
(3DES retail MAC, SM4 CBC-MAC) over a 32-byte message with a 4-byte MAC; and, issue 12, authentication
(a session per connection, a tag on every frame) costs at most 10%: 8 clients against a server that
authenticates them, alternating short rounds with the same traffic against a server that does not
(`access=None`, which only a benchmark's baseline runs), in the same run; the ratio is the median of
per-round ratios, so bursts of other work on a shared machine hit both alike. `--baseline-tree DIR` adds a
third server in the rotation: the build before authentication (a checkout of 202af37, e.g.
`git worktree add --detach /tmp/hsm-before 202af37`), run from DIR with the same clients, so the baseline
is also the code that had no authentication at all.

The servers run in their own processes (`multiprocessing`, ephemeral LMK, keys generated over the wire by
the console client), the clients are 1 or 8 threads in this process, each with its own `HsmClient`,
credential (terminals T0001..T0008) and connection; every verification is one request/response round trip
(no batching, no pipelining). On a 2-core machine that leaves one core to the servers and one to all
clients; `--client-processes` runs the 1- and 8-client rows as processes instead.

Run: .venv/bin/python bench/hsm.py [--seconds 2] [--rounds 40] [--client-processes] [--baseline-tree DIR]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from hsm_client.auth import Channel, Credential
from hsm_client.client import HsmClient
from hsm_client.wire import BY_METHOD, encode_fields, encode_reply
from hsm_mock.access import AccessPolicy
from hsm_mock.commands import LocalHsm
from hsm_mock.keystore import KeyStore, Lmk
from hsm_mock.server import serve

TARGET_LOCAL = 20_000
TARGET_TCP_8 = 5_000
TARGET_AUTH_RATIO = 0.90
MESSAGE = bytes.fromhex("04DC010C1B") + bytes(range(27))  # CLA INS P1 P2 Lc + 27 data bytes
SUITES = ("3DES", "SM4")
TERMINALS = [f"T{i:04d}" for i in range(1, 9)]
ROLES = {"console": "console", **{t: "terminal" for t in TERMINALS}}


def _server_main(authenticate: bool, ready: Connection) -> None:
    lmk = Lmk.ephemeral()
    access = AccessPolicy.of(lmk, ROLES) if authenticate else None
    creds = {c: access.credential(c) for c in ROLES} if access else {}
    serve(LocalHsm(KeyStore(lmk)), "127.0.0.1", 0, on_ready=lambda host, port: ready.send((port, creds)),
          access=access)


# The server of another source tree, without authentication (before it, `serve` had no `access`).
_TREE_SERVER = """
import inspect
from hsm_mock.commands import LocalHsm
from hsm_mock.keystore import KeyStore, Lmk
from hsm_mock.server import serve
kw = {"access": None} if "access" in inspect.signature(serve).parameters else {}
serve(LocalHsm(KeyStore(Lmk.ephemeral())), "127.0.0.1", 0, on_ready=lambda host, port: print(port, flush=True), **kw)
"""


class Server:
    """A server process (this tree's, with or without authentication, or another tree's without);
    `credential(id)` is None when it does not authenticate."""

    def __init__(self, authenticate: bool, tree: Path | None = None) -> None:
        self.creds: dict[str, Credential] = {}
        if tree is not None:
            env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
            self.proc: mp.process.BaseProcess | subprocess.Popen[str] = subprocess.Popen(
                [sys.executable, "-c", _TREE_SERVER], cwd=tree, env=env, stdout=subprocess.PIPE, text=True)
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            if not line.strip().isdigit():
                raise SystemExit(f"the server of {tree} did not start")
            self.port = int(line)
            return
        ctx = mp.get_context("spawn")
        recv, send = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=_server_main, args=(authenticate, send), daemon=True)
        self.proc.start()
        if not recv.poll(30):
            raise SystemExit("server did not start")
        self.port, self.creds = recv.recv()

    def credential(self, client: str) -> Credential | None:
        return self.creds.get(client)

    def client(self, who: str, **kw: object) -> HsmClient:
        return HsmClient("127.0.0.1", self.port, credential=self.credential(who), **kw)  # type: ignore[arg-type]

    def cpu(self) -> float:
        """CPU seconds the server process has used (Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()  # SIGTERM: the server's own handler stops it
        if isinstance(self.proc, subprocess.Popen):
            self.proc.wait(10)
        else:
            self.proc.join(10)


def _loop(client: HsmClient, label: str, mac: bytes, seconds: float, step: int = 50) -> int:
    n, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(step):
            client.verify_mac(label, MESSAGE, mac)
        n += step
    return n


def _client_process(port: int, cred: Credential | None, label: str, mac: bytes, seconds: float, start: float,
                    out: Connection) -> None:
    with HsmClient("127.0.0.1", port, credential=cred, pool_size=1) as client:
        client.ping()
        time.sleep(max(0.0, start - time.time()))
        out.send(_loop(client, label, mac, seconds))


def bench_local(suite: str, seconds: float) -> float:
    hsm = LocalHsm(KeyStore(Lmk.ephemeral()))
    hsm.generate_key("bench.mak", "MAK", suite)
    mac = hsm.generate_mac("bench.mak", MESSAGE)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(200):
            hsm.verify_mac("bench.mak", MESSAGE, mac)
        n += 200
    return n / (time.perf_counter() - t0)


def connected(server: Server, clients: int) -> list[HsmClient]:
    pool = [server.client(TERMINALS[i], pool_size=1) for i in range(clients)]
    for c in pool:
        c.ping()  # connect (and open the session) before timing
    return pool


def run_threads(pool: list[HsmClient], label: str, mac: bytes, seconds: float, step: int = 50,
                count: bool = False):  # noqa: ANN201 - a rate, or (rate, requests) with count
    counts = [0] * len(pool)
    barrier = threading.Barrier(len(pool) + 1)

    def run(i: int) -> None:
        barrier.wait()
        counts[i] = _loop(pool[i], label, mac, seconds, step)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(pool))]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    rate = sum(counts) / (time.perf_counter() - t0)
    return (rate, sum(counts)) if count else rate


def bench_tcp_processes(server: Server, label: str, mac: bytes, clients: int, seconds: float) -> float:
    ctx = mp.get_context("spawn")
    start = time.time() + 1.5  # let every process import and connect first
    pipes, procs = [], []
    for i in range(clients):
        recv, send = ctx.Pipe(duplex=False)
        args = (server.port, server.credential(TERMINALS[i]), label, mac, seconds, start, send)
        p = ctx.Process(target=_client_process, args=args)
        p.start()
        pipes.append(recv)
        procs.append(p)
    total = sum(r.recv() for r in pipes)
    for p in procs:
        p.join()
    return total / seconds


@dataclass
class Side:
    rates: list[float] = field(default_factory=list)  # verifications/s per round
    requests: int = 0
    server_cpu: float = 0.0  # seconds
    client_cpu: float = 0.0

    def cpu_us(self) -> float:
        """CPU microseconds per verification, server and clients together."""
        return (self.server_cpu + self.client_cpu) / self.requests * 1e6


def side_by_side(servers: dict[str, Server], label: str, macs: dict[str, bytes], rounds: int,
                 seconds: float = 0.25) -> dict[str, Side]:
    """Rounds of 8 clients on each server in turn (the order rotating every round): each side's rates and
    CPU per verification."""
    pools = {name: connected(server, 8) for name, server in servers.items()}
    sides = {name: Side() for name in servers}
    names = list(servers)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            side, server = sides[name], servers[name]
            s0, c0 = server.cpu(), time.process_time()
            rate, n = run_threads(pools[name], label, macs[name], seconds, step=10, count=True)
            side.server_cpu += server.cpu() - s0
            side.client_cpu += time.process_time() - c0
            side.rates.append(rate)
            side.requests += n
    for pool in pools.values():
        for c in pool:
            c.close()
    return sides


def ratios(on: Side, base: Side) -> tuple[float, float]:
    """(median of per-round rate ratios, ratio of CPU per verification) of `on` against `base`."""
    return (statistics.median(a / b for a, b in zip(on.rates, base.rates, strict=True)),
            base.cpu_us() / on.cpu_us())


def opening_cost(plain: Server, auth: Server, n: int = 200) -> tuple[float, float]:
    """Median time to connect and answer a ping on a fresh connection, without and with a session (ms)."""
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(n):
        for on, server in ((False, plain), (True, auth)):
            t0 = time.perf_counter()
            with server.client(TERMINALS[0], pool_size=1) as c:
                c.ping()
            times[on].append(time.perf_counter() - t0)
    return statistics.median(times[False]) * 1e3, statistics.median(times[True]) * 1e3


def tag_cost(n: int = 20_000) -> float:
    """CPU microseconds of the four tags of one verification (the client seals the request, the HSM opens
    it, seals the reply, the client opens it), in-process: the part of the path authentication adds."""
    request = bytes(4) + BY_METHOD["verify_mac"].code.encode() + encode_fields(["bench.sm4", MESSAGE, bytes(4), b""])
    reply = encode_reply(bytes(4), BY_METHOD["verify_mac"].reply_code, "00", [])
    c2s, s2c = os.urandom(32), os.urandom(32)
    client, hsm = Channel(c2s, s2c), Channel(s2c, c2s)
    runs = []
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(n):
            hsm.open(client.seal(request))
            client.open(hsm.seal(reply))
        runs.append((time.process_time() - t0) / n * 1e6)
    return statistics.median(runs)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="measuring time per figure")
    ap.add_argument("--rounds", type=int, default=40, help="0.25 s rounds per suite on each server in turn")
    ap.add_argument("--client-processes", action="store_true", help="TCP clients as processes, not threads")
    ap.add_argument("--baseline-tree", type=Path, metavar="DIR",
                    help="also compare with the server of this source tree (the build before authentication)")
    a = ap.parse_args()
    print(f"mock HSM, MAC verification, {len(MESSAGE)}-byte message, 4-byte MAC; cpus={os.cpu_count()}; "
          f"TCP clients as {'processes' if a.client_processes else 'threads in one process'}, authenticated; "
          f"load average {loadavg()}")
    print(f"{'suite':6} {'where':11} {'clients':>7} {'verif/s':>9} {'target':>8}  result")
    ok = True

    def row(suite: str, where: str, clients: int, rate: float, target: int | None) -> None:
        nonlocal ok
        verdict = "-" if target is None else "PASS" if rate >= target else "FAIL"
        ok &= verdict != "FAIL"
        tgt = f"{target:,}" if target else "-"
        print(f"{suite:6} {where:11} {clients:>7} {rate:>9,.0f} {tgt:>8}  {verdict}", flush=True)

    for suite in SUITES:
        row(suite, "in-process", 1, bench_local(suite, a.seconds), TARGET_LOCAL)

    servers: dict[str, Server] = {}
    try:
        plain = servers["off"] = Server(False)
        auth = servers["on"] = Server(True)
        if a.baseline_tree is not None:
            servers["before"] = Server(False, a.baseline_tree)
        macs: dict[str, dict[str, bytes]] = {}
        for suite in SUITES:
            label = f"bench.{suite.lower()}"
            macs[label] = {}
            for name, server in servers.items():
                with server.client("console") as console, server.client(TERMINALS[0]) as terminal:
                    console.generate_key(label, "MAK", suite)
                    macs[label][name] = terminal.generate_mac(label, MESSAGE)
            for clients in (1, 8):
                if a.client_processes:
                    rate = bench_tcp_processes(auth, label, macs[label]["on"], clients, a.seconds)
                else:
                    pool = connected(auth, clients)
                    rate = run_threads(pool, label, macs[label]["on"], a.seconds)
                    for c in pool:
                        c.close()
                row(suite, "tcp", clients, rate, TARGET_TCP_8 if clients == 8 else None)
        print(f"\nauthentication on vs off, 8 clients, {a.rounds} rounds of 0.25 s on each server in turn; target: "
              f"on/off >= {TARGET_AUTH_RATIO} in verifications/s (median of per-round ratios), and in verifications "
              "per CPU second (server + clients, summed over the rounds: steadier on a shared machine)"
              + ("; 'before': the server of --baseline-tree" if "before" in servers else ""))
        tags = tag_cost()
        for suite in SUITES:
            label = f"bench.{suite.lower()}"
            sides = side_by_side(servers, label, macs[label], a.rounds)
            on = sides["on"]
            print(f"{suite:6} " + "  ".join(f"{name} {statistics.median(s.rates):>6,.0f}/s {s.cpu_us():5.1f} us CPU"
                                            for name, s in sides.items()))
            print(f"{'':6} the tags alone: {tags:.1f} us CPU a verification, {tags / on.cpu_us():.1%} of the "
                  "authenticated path's")
            for base in (b for b in sides if b != "on"):
                ratio, cpu_ratio = ratios(on, sides[base])
                verdict = "PASS" if min(ratio, cpu_ratio) >= TARGET_AUTH_RATIO else "FAIL"
                ok &= verdict == "PASS"
                print(f"{'':6} on/{base} {ratio:.3f}, by CPU {cpu_ratio:.3f}  {verdict}", flush=True)
        t_off, t_on = opening_cost(plain, auth)
        print(f"a fresh connection and one ping: {t_off:.3f} ms without a session, {t_on:.3f} ms with one "
              "(paid once per pooled connection)")
    finally:
        for server in servers.values():
            server.stop()
    print(f"load average {loadavg()}")
    print("overall:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
