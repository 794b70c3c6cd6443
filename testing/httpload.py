"""A lean HTTP/1.1 load client for the settlement service, as terminals use it: one keep-alive connection per
terminal, each terminal an asyncio task (uvloop) that sends its next request when the last one is answered.

Requests are built from a seed inside the client process (the bodies `SettlementClient` sends: 1-8 fee lines),
answers are parsed just enough (status line, Content-Length, JSON only for a registration's `mdtrt_id`), and
the whole client runs in its own process (`run_in_process`), so its CPU is not counted as the service's.
httpx is far too heavy to generate load at a region's peak from one core.

    plan = [Terminal("T0001", key, "H0001", persons=[...], visits=[...]), ...]
    result = run_in_process(("127.0.0.1", port), plan, mode="settle", seconds=5, warmup=1, seed=7)
    result.rate("settle"), result.percentile("settle", 99), result.statuses

Modes: "settle" settles visits registered beforehand (`Terminal.visits`, mdtrt ids); "visit" registers a visit
for one of `Terminal.persons` and settles it (a counter's whole visit: two calls).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from settlement.api.auth import hash_key
from settlement.schemes.engine import Engine
from settlement.schemes.medical import mdtrt_id_for

Address = tuple[str, int]
REGION = "110000"  # Beijing: its policy, hospitals and insured


@dataclass(frozen=True)
class Terminal:
    """One terminal of the plan: its id and key, its institution, and whom or what it settles."""

    terminal_id: str
    key: str
    institution: str
    persons: tuple[str, ...] = ()
    visits: tuple[str, ...] = ()  # mdtrt ids registered beforehand ("settle" mode)


@dataclass
class Result:
    """What the client saw in the measured window (after the warm-up)."""

    seconds: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    cpu_seconds: float = 0.0
    ran_out: int = 0  # terminals that ran out of visits before the end
    retries: int = 0  # requests sent again (retry=True) after a lost connection or a 503
    answered: list[tuple[float, str, int]] = field(default_factory=list)  # settlements: (seconds in, key, status)

    def count(self, kind: str) -> int:
        return len(self.latencies.get(kind, []))

    def rate(self, kind: str) -> float:
        return self.count(kind) / self.seconds if self.seconds else 0.0

    def percentile(self, kind: str, p: float) -> float:
        """Latency percentile in ms (nan when there is none)."""
        xs = sorted(self.latencies.get(kind, []))
        if not xs:
            return float("nan")
        return xs[min(len(xs) - 1, int(len(xs) * p / 100))] * 1e3


def beijing(engine: Engine, *, hospitals: int = 64, persons: int = 20_000, deposit: int = 5_000_00) -> list[Terminal]:
    """A region's counters for load: `hospitals` hospitals (levels 1-3) with one terminal each (its own key), and
    `persons` insured (employees and retirees, each with a card, `card_of`, and a personal account holding
    `deposit` fen), all in one unit.
    Returns the terminals, each with every person as a possible patient."""
    reg = engine.registry
    with engine.store.transaction():
        for h in range(hospitals):
            reg.add_institution(f"H{h:04d}", f"Beijing hospital {h}", REGION, "123"[h % 3])
        for i in range(persons):
            pid = f"P{i:08d}"
            reg.add_person(pid, "张三", REGION, ("employee", "retiree")[i % 2], card_no=card_of(pid))
            reg.deposit(f"seed:{pid}", pid, deposit)
    everyone = tuple(f"P{i:08d}" for i in range(persons))
    return [Terminal(f"T{h:04d}", f"key-{h:04d}", f"H{h:04d}", persons=everyone) for h in range(hospitals)]


def card_of(person_id: str) -> str:
    """The card number of a `beijing` person (what a counter reads from the card and shows the centre)."""
    return "C" + person_id[1:]


def keys_toml(terminals: list[Terminal]) -> str:
    """The service's keys file for these terminals (`sscard settlement serve --keys`)."""
    return "".join(f'[terminal.{t.terminal_id}]\nkey_sha256 = "{hash_key(t.key)}"\ninstitution = "{t.institution}"\n'
                   for t in terminals)


def register_visits(engine: Engine, terminals: list[Terminal], per_terminal: int, *, seed: int, run_id: str
                    ) -> list[Terminal]:
    """Register `per_terminal` outpatient visits at each terminal's institution in-process (batched), for
    "settle" runs; the terminals come back with their visits."""
    rng = random.Random(f"visits:{seed}:{run_id}")
    out = []
    for t in terminals:
        jobs = [engine.medical.register_job(f"{t.terminal_id}:{run_id}v{n}", rng.choice(t.persons), t.institution,
                                            "outpatient") for n in range(per_terminal)]
        with engine.store.transaction() as tx:
            visits = jobs[0][0](tx, [item for _, item in jobs])
        out.append(Terminal(t.terminal_id, t.key, t.institution, t.persons,
                            tuple(v.mdtrt_id for v in visits)))  # type: ignore[union-attr]
    return out


def _bill(rng: random.Random) -> list[dict[str, object]]:
    lines = []
    for _ in range(rng.randint(1, 8)):
        amount = rng.randrange(5, 600) * 100 + rng.randrange(100)
        lines.append({"chrgitm_lv": rng.choices("ABC", (6, 3, 1))[0], "det_item_fee_sumamt": amount, "overlmt_amt": 0})
    return lines


def _request(path: str, key: str, body: dict[str, object]) -> bytes:
    data = json.dumps(body, separators=(",", ":")).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: centre\r\nX-Terminal-Key: {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode() + data


class _Conn:
    """A keep-alive connection; with `retry`, a request that fails (connection lost, 503) is sent again, the same
    bytes (the same terminal serial) on a new connection, as a terminal does, until it has an answer."""

    def __init__(self, address: Address, retry: bool, out: Result) -> None:
        self.address, self.retry, self.out = address, retry, out
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def call(self, request: bytes) -> int:
        while True:
            try:
                if self.writer is None:
                    self.reader, self.writer = await asyncio.open_connection(*self.address)
                assert self.reader is not None
                self.writer.write(request)
                head = await self.reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                i = head.lower().find(b"content-length:")
                length = int(head[i + 15:head.index(b"\r\n", i)]) if i >= 0 else 0
                if length:
                    await self.reader.readexactly(length)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                self.close()
                if not self.retry:
                    raise
                self.out.retries += 1
                await asyncio.sleep(0.05)
                continue
            if status == 503 and self.retry:
                self.out.retries += 1
                await asyncio.sleep(0.05)
                continue
            return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _terminal(address: Address, t: Terminal, mode: str, seed: int, run: str, start: float, stop: float,
                    retry: bool, out: Result) -> None:
    rng = random.Random(f"{seed}:{t.terminal_id}")
    conn = _Conn(address, retry, out)
    n = 0
    visits = iter(t.visits)
    try:
        while True:
            now = time.perf_counter()
            if now >= stop:
                break
            n += 1
            if mode == "visit":
                reg_serial = f"{run}r{n}"
                person = rng.choice(t.persons)
                t0 = time.perf_counter()
                status = await conn.call(_request("/v1/medical/visits", t.key, {
                    "terminal_serial": reg_serial, "person_id": person, "institution": t.institution,
                    "care": "outpatient", "card_no": card_of(person)}))
                t1 = time.perf_counter()
                if t0 >= start:
                    out.latencies.setdefault("register", []).append(t1 - t0)
                    out.statuses[f"register {status}"] += 1
                if status != 200:
                    continue
                mdtrt_id = mdtrt_id_for(f"{t.terminal_id}:{reg_serial}")
            else:
                mdtrt_id = next(visits, "")
                if not mdtrt_id:
                    out.ran_out += 1
                    break
            body = {"terminal_serial": f"{run}s{n}", "mdtrt_id": mdtrt_id, "lines": _bill(rng), "use_account": True}
            t1 = time.perf_counter()
            status = await conn.call(_request("/v1/medical/settle", t.key, body))
            t2 = time.perf_counter()
            if t1 >= start and t2 <= stop:
                out.latencies.setdefault("settle", []).append(t2 - t1)
                out.statuses[f"settle {status}"] += 1
                out.answered.append((t2 - start, f"{t.terminal_id}:{body['terminal_serial']}", status))
                if mode == "visit":
                    out.latencies.setdefault("visit", []).append(t2 - t0)
    finally:
        conn.close()


async def _run(address: Address, plan: list[Terminal], mode: str, seconds: float, warmup: float, seed: int,
               run: str, retry: bool) -> Result:
    out = Result()
    start = time.perf_counter() + warmup
    stop = start + seconds
    await asyncio.gather(*(_terminal(address, t, mode, seed, run, start, stop, retry, out) for t in plan))
    out.seconds = seconds
    return out


def run(address: Address, plan: list[Terminal], *, mode: str = "settle", seconds: float = 5.0, warmup: float = 1.0,
        seed: int = 1, run_id: str = "L", retry: bool = False) -> Result:
    """Drive the service from this process (uvloop when installed); `run_id` prefixes the serial numbers; with
    `retry`, a request that got no answer or a 503 is sent again (the same serial) until it has one."""
    if mode not in ("settle", "visit"):
        raise ValueError(f"mode is settle or visit, not {mode!r}")
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        runner = asyncio.run
    c0 = time.process_time()
    result = runner(_run(address, plan, mode, seconds, warmup, seed, run_id, retry))
    result.cpu_seconds = time.process_time() - c0
    return result


def _child(conn: multiprocessing.connection.Connection, args: tuple[object, ...], kw: dict[str, object]) -> None:
    conn.send(run(*args, **kw))  # type: ignore[arg-type]
    conn.close()


def run_in_process(address: Address, plan: list[Terminal], **kw: object) -> Result:
    """`run` in a child process (spawned: nothing of the caller's threads or stores comes along)."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, (address, plan), kw), daemon=True)
    proc.start()
    child.close()
    try:
        result: Result = parent.recv()
    finally:
        proc.join(30)
    return result
