"""Benchmark the mock HSM: MAC verifications per second in-process and over TCP (1 and 8 clients).

Targets: in-process >= 20,000/s; over TCP on loopback with 8 concurrent clients >= 5,000/s, per suite
(3DES retail MAC, SM4 CBC-MAC) over a 32-byte message with a 4-byte MAC. The server runs in its own
process (`multiprocessing`, ephemeral LMK, keys generated over the wire). Every TCP verification is
one real request/response round trip: no batching, no pipelining.

The clients: one client process; in it, 1 or 8 threads, each with its own `HsmClient` and
connection. On a 2-core machine that leaves one core to the server and one to all clients; eight
client processes would only add context switches on the same core (`--client-processes` measures that).

Run: .venv/bin/python bench/hsm.py [--seconds 2] [--client-processes]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import threading
import time
from multiprocessing.connection import Connection

from hsm_client.client import HsmClient
from hsm_mock.commands import LocalHsm
from hsm_mock.keystore import KeyStore, Lmk
from hsm_mock.server import serve

TARGET_LOCAL = 20_000
TARGET_TCP_8 = 5_000
MESSAGE = bytes.fromhex("04DC010C1B") + bytes(range(27))  # CLA INS P1 P2 Lc + 27 data bytes
SUITES = ("3DES", "SM4")


def _server_main(ready: Connection) -> None:
    hsm = LocalHsm(KeyStore(Lmk.ephemeral()))
    serve(hsm, "127.0.0.1", 0, on_ready=lambda host, port: ready.send(port))


def _loop(client: HsmClient, label: str, mac: bytes, seconds: float) -> int:
    n, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(50):
            client.verify_mac(label, MESSAGE, mac)
        n += 50
    return n


def _client_process(port: int, label: str, mac: bytes, seconds: float, start: float, out: Connection) -> None:
    with HsmClient("127.0.0.1", port, pool_size=1) as client:
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


def bench_tcp_threads(port: int, label: str, mac: bytes, clients: int, seconds: float) -> float:
    counts = [0] * clients
    pool = [HsmClient("127.0.0.1", port, pool_size=1) for _ in range(clients)]
    for c in pool:
        c.ping()  # connect before timing
    barrier = threading.Barrier(clients + 1)

    def run(i: int) -> None:
        barrier.wait()
        counts[i] = _loop(pool[i], label, mac, seconds)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    for c in pool:
        c.close()
    return sum(counts) / elapsed


def bench_tcp_processes(port: int, label: str, mac: bytes, clients: int, seconds: float) -> float:
    ctx = mp.get_context("spawn")
    start = time.time() + 1.5  # let every process import and connect first
    pipes, procs = [], []
    for _ in range(clients):
        recv, send = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_client_process, args=(port, label, mac, seconds, start, send))
        p.start()
        pipes.append(recv)
        procs.append(p)
    total = sum(r.recv() for r in pipes)
    for p in procs:
        p.join()
    return total / seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="measuring time per figure")
    ap.add_argument("--client-processes", action="store_true", help="TCP clients as processes, not threads")
    a = ap.parse_args()
    print(f"mock HSM, MAC verification, {len(MESSAGE)}-byte message, 4-byte MAC; cpus={os.cpu_count()}; "
          f"TCP clients as {'processes' if a.client_processes else 'threads in one process'}")
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

    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    server = ctx.Process(target=_server_main, args=(send,), daemon=True)
    server.start()
    try:
        if not recv.poll(30):
            print("server did not start")
            return 1
        port = recv.recv()
        with HsmClient("127.0.0.1", port) as admin:
            for suite in SUITES:
                label = f"bench.{suite.lower()}"
                admin.generate_key(label, "MAK", suite)
                mac = admin.generate_mac(label, MESSAGE)
                for clients in (1, 8):
                    if a.client_processes:
                        rate = bench_tcp_processes(port, label, mac, clients, a.seconds)
                    else:
                        rate = bench_tcp_threads(port, label, mac, clients, a.seconds)
                    row(suite, "tcp", clients, rate, TARGET_TCP_8 if clients == 8 else None)
    finally:
        server.terminate()  # SIGTERM: the server's own handler stops it
        server.join(10)
    print("overall:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
