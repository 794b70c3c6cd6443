"""The national platform interface against the native API, for the same outpatient visit, both over HTTP to
one settlement service, in the same run.

National (a HIS, testing/his.py): 2201 register -> 2204 upload 20 fee lines -> 2206 pre-settle -> 2207 settle,
four messages with the platform's envelope and yuan amounts. Native (the terminal daemon's way): register ->
presettle (20 lines) -> settle (20 lines), three requests with fen. The bill is the same: the native lines
are the classes and amounts the platform answered for the national upload. The service runs as its own
process (`sscard settlement serve`, SQLite, durable), as at a centre; this process is the client, one
request at a time.

The machine is shared: visits alternate in short rounds (national then native, then native then national)
and the figure is the median of the rounds' ratios, beside each side's mean per transaction and the ratio
of each national message to its native counterpart (2204, the upload, has none: the native API takes the
lines with the pre-settlement and the settlement).
Target: the national visit costs no more than 1.3x the native one.

    .venv/bin/python bench/national.py [--rounds 15] [--visits 20]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from settlement.api.auth import hash_key  # noqa: E402
from settlement.ledger.store.sqlite import SqliteStore  # noqa: E402
from settlement.schemes.engine import Engine  # noqa: E402
from sscard.stack import listening_socket  # noqa: E402
from testing.his import His, fen  # noqa: E402

TARGET = 1.3
HOSP, REGION = "H11010500001", "110000"
HIS_KEY, NATIVE_KEY = "bench-his-key", "bench-native-key"
PERSONS = [f"1101051980{m:02d}{d:02d}{i:03d}1" for i, (m, d) in enumerate((m, d) for m in range(1, 13)
                                                                           for d in range(1, 5))]
# 20 lines: drugs of both classes, tests, a consultation over its ceiling, a material, an item not covered
ITEMS = [("DEMO-FW-0001", "30.00", "1"), ("DEMO-FW-0002", "25.00", "1"), ("DEMO-FW-0003", "356.50", "1"),
         ("DEMO-FW-0005", "35.50", "3"), ("DEMO-XY-0001", "1.01", "48"), ("DEMO-XY-0002", "12.33", "6"),
         ("DEMO-ZCY-0001", "41.17", "2"), ("DEMO-ZY-0001", "2.75", "30"), ("DEMO-CL-0001", "8.35", "3"),
         ("DEMO-ZF-0001", "100.00", "1")] * 2


def seed(db: Path, keys: Path) -> None:
    store = SqliteStore(db)
    eng = Engine(store)
    eng.registry.add_institution(HOSP, "北京示例医院", REGION, "3")
    for i, p in enumerate(PERSONS):
        eng.registry.add_person(p, f"参保人{i}", REGION, "employee", card_no=f"A{i:08d}")
        eng.registry.deposit(f"seed:{p}", p, 10**9)
    store.close()
    keys.write_text(f'[terminal.HIS01]\nkey_sha256 = "{hash_key(HIS_KEY)}"\ninstitution = "{HOSP}"\n\n'
                    f'[terminal.T0001]\nkey_sha256 = "{hash_key(NATIVE_KEY)}"\ninstitution = "{HOSP}"\n')


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_service(db: Path, keys: Path) -> tuple[subprocess.Popen[bytes], str]:
    sock = listening_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with sock:
        proc = subprocess.Popen([sys.executable, "-m", "sscard.cli", "settlement", "serve", "--db", str(db),
                                 "--keys", str(keys), "--fd", str(sock.fileno()), "--log-level", "warning"],
                                pass_fds=[sock.fileno()])
    for _ in range(300):
        try:
            if httpx.get(f"{url}/v1/health", timeout=0.5).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit("settlement service did not start")


class Visits:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)
        self.his = His(self.http, key=HIS_KEY, fixmedins_code=HOSP, fixmedins_name="北京示例医院",
                       mdtrtarea_admvs=REGION)
        self.his.sign_in()
        self.n = 0
        self.native_lines: list[dict[str, Any]] = []
        self.spent: dict[str, list[float]] = {}

    def _timed(self, name: str, fn: Any) -> Any:
        t = time.perf_counter()
        out = fn()
        self.spent.setdefault(name, []).append(time.perf_counter() - t)
        return out

    def national(self) -> float:
        self.n += 1
        person, card = PERSONS[self.n % len(PERSONS)], f"A{self.n % len(PERSONS):08d}"
        t0 = time.perf_counter()
        his = self.his
        out = self._timed("2201", lambda: his.ok("2201", {"data": {
            "psn_no": person, "insutype": "310", "begntime": f"{dt.datetime.now():%Y-%m-%d %H:%M:%S}",
            "mdtrt_cert_type": "03", "mdtrt_cert_no": card, "ipt_otp_no": f"MZ{self.n}", "atddr_no": "D1",
            "dr_name": "李医生", "dept_code": "0301", "dept_name": "内科", "caty": "A03"}}, insuplc_admdvs=REGION))
        mdtrt_id = out["data"]["mdtrt_id"]
        lines = []
        for i, (code, pric, cnt) in enumerate(ITEMS):
            lines.append({"feedetl_sn": f"{i + 1}", "mdtrt_id": mdtrt_id, "psn_no": person, "chrg_bchno": "1",
                          "fee_ocur_time": f"{dt.datetime.now():%Y-%m-%d %H:%M:%S}", "med_list_codg": code,
                          "medins_list_codg": code, "det_item_fee_sumamt": Decimal(pric) * Decimal(cnt),
                          "cnt": Decimal(cnt), "pric": Decimal(pric), "bilg_dept_codg": "0301",
                          "bilg_dept_name": "内科", "bilg_dr_codg": "D1", "bilg_dr_name": "李医生"})
        result = self._timed("2204", lambda: his.ok("2204", {"feedetail": lines}, insuplc_admdvs=REGION))["result"]
        if not self.native_lines:
            self.native_lines = [{"chrgitm_lv": r["chrgitm_lv"], "det_item_fee_sumamt": fen(r["det_item_fee_sumamt"]),
                                  "overlmt_amt": fen(r["overlmt_amt"])} for r in result]
        data = {"psn_no": person, "mdtrt_cert_type": "03", "mdtrt_cert_no": card, "med_type": "11",
                "medfee_sumamt": sum(ln["det_item_fee_sumamt"] for ln in lines), "psn_setlway": "01",
                "mdtrt_id": mdtrt_id, "chrg_bchno": "1", "acct_used_flag": "1", "insutype": "310"}
        pre = self._timed("2206", lambda: his.ok("2206", {"data": data}, insuplc_admdvs=REGION))["setlinfo"]
        data |= {f: pre[f] for f in ("fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt", "inscp_scp_amt")}
        self._timed("2207", lambda: his.ok("2207", {"data": data}, insuplc_admdvs=REGION))
        return time.perf_counter() - t0

    def native(self) -> float:
        self.n += 1
        person = PERSONS[self.n % len(PERSONS)]
        h = {"X-Terminal-Key": NATIVE_KEY}

        def post(name: str, path: str, body: dict[str, Any]) -> Any:
            def go() -> Any:
                r = self.http.post(path, json=body, headers=h)
                assert r.status_code == 200, r.text
                return r.json()
            return self._timed(name, go)

        t0 = time.perf_counter()
        visit = post("register", "/v1/medical/visits", {"terminal_serial": f"v{self.n}", "person_id": person,
                                                        "institution": HOSP, "care": "outpatient",
                                                        "card_no": f"A{self.n % len(PERSONS):08d}"})
        post("presettle", "/v1/medical/presettle", {"mdtrt_id": visit["mdtrt_id"], "lines": self.native_lines})
        post("settle", "/v1/medical/settle", {"terminal_serial": f"s{self.n}", "mdtrt_id": visit["mdtrt_id"],
                                              "lines": self.native_lines})
        return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--visits", type=int, default=20, help="visits per dialect and round")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-national-") as tmp:
        db, keys = Path(tmp) / "settlement.db", Path(tmp) / "keys.toml"
        seed(db, keys)
        proc, url = start_service(db, keys)
        try:
            v = Visits(url)
            for _ in range(5):  # warm up both paths (and learn the native lines)
                v.national()
                v.native()
            v.spent.clear()
            ratios, nat, nav = [], [], []
            cpu = {"national": 0.0, "native": 0.0}  # the service's CPU time, per dialect
            for r in range(a.rounds):
                order = (v.national, v.native) if r % 2 == 0 else (v.native, v.national)
                times: dict[Any, float] = {}
                for fn in order:
                    before = cpu_seconds(proc.pid)
                    times[fn] = sum(fn() for _ in range(a.visits)) / a.visits
                    cpu[fn.__name__] += cpu_seconds(proc.pid) - before
                nat.append(times[order[0] if r % 2 == 0 else order[1]])
                nav.append(times[order[1] if r % 2 == 0 else order[0]])
                ratios.append(nat[-1] / nav[-1])
        finally:
            proc.terminate()
            proc.wait(10)
    ms = {k: 1000 * statistics.mean(x) for k, x in v.spent.items()}
    ratio = statistics.median(ratios)
    print(f"load average at the end: {Path('/proc/loadavg').read_text().split()[:3]}  (cpus: {os.cpu_count()})")
    print(f"{a.rounds} rounds x {a.visits} visits per dialect, one client, service on SQLite in its own process")
    print(f"national visit (2201+2204x20+2206+2207): mean {1000 * statistics.mean(nat):.2f} ms  "
          f"[2201 {ms['2201']:.2f} | 2204 {ms['2204']:.2f} | 2206 {ms['2206']:.2f} | 2207 {ms['2207']:.2f}]")
    print(f"native visit (register+presettle+settle): mean {1000 * statistics.mean(nav):.2f} ms  "
          f"[register {ms['register']:.2f} | presettle {ms['presettle']:.2f} | settle {ms['settle']:.2f}]")
    print("message by message: " + ", ".join(f"{n}/{o} {ms[n] / ms[o]:.2f}" for n, o in (
        ("2201", "register"), ("2206", "presettle"), ("2207", "settle"))) + f"; 2204 has no native counterpart "
          f"({ms['2204'] / (1000 * statistics.mean(nav)):.0%} of a native visit)")
    per_visit = {k: 1000 * x / (a.rounds * a.visits) for k, x in cpu.items()}
    print(f"service CPU per visit (user + system, all threads): national {per_visit['national']:.2f} ms, native "
          f"{per_visit['native']:.2f} ms, ratio {per_visit['national'] / per_visit['native']:.2f} (less sensitive "
          f"to other work on the machine than the times)")
    print(f"ratio national/native: median of rounds {ratio:.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}); "
          f"target <= {TARGET}: {'PASS' if ratio <= TARGET else 'FAIL'}")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
