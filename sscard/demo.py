"""`make demo`: the main job on the embedded default.

Starts the mock HSM, the settlement service on SQLite and the terminal daemon; puts simulated cards behind
our own pcscd when it is installed (a user card on slot 0, the PSAM on slot 1), in-process readers
otherwise; then, through the daemon's HTTP API as a page and a hospital HIS would: one card read through the
national reader interface, one identity check, one hospital visit with a refund, and one pension
collection. Prints the receipts and leaves the daemon running with its docs URL until Ctrl-C (`--no-wait`
stops at once, for tests).
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.panel import Panel

from cardlib.readers.pcsc import wait_present
from sim import pcsc_stack
from sim.personalize import issue_sample
from sim.psam import SimPsam
from sscard.stack import INSTITUTION, TERMINAL_ID, Counter, start_centre, start_counter
from sscard.world import INSTITUTIONS
from terminal.config import hash_token

console = Console()
HIS_TERMINAL = "HIS01"  # the key a HIS uses on the national platform interface
LINES = [
    {"feedetl_sn": "1", "med_list_codg": "XA01", "chrgitm_lv": "A", "det_item_fee_sumamt": 186_00},
    {"feedetl_sn": "2", "med_list_codg": "XB17", "chrgitm_lv": "B", "det_item_fee_sumamt": 64_50},
    {"feedetl_sn": "3", "med_list_codg": "ZC03", "chrgitm_lv": "C", "det_item_fee_sumamt": 25_00},
]


class Cards:
    """Puts a sample card in the counter's user-card reader (pcscd slot 0, or the in-process reader)."""

    def __init__(self, pcscd: pcsc_stack.Pcscd | None, counter: Counter | None = None) -> None:
        self.pcscd = pcscd
        self.counter = counter
        self.link = None

    def insert(self, stem: str) -> None:
        card = issue_sample(stem)
        if self.pcscd is None:
            assert self.counter is not None
            session = next(iter(self.counter.terminal.sessions.values()))
            session.reader.insert(card)  # type: ignore[attr-defined]
            return
        from sim.vicc import VirtualCardLink

        if self.link is not None:
            self.link.remove()
            wait_present([self.pcscd.readers[0]], present=False)
        self.link = VirtualCardLink(card, self.pcscd.port)
        self.link.insert()
        wait_present([self.pcscd.readers[0]])


def show(api: httpx.Client, title: str, key: str) -> None:
    text = api.get(f"/v1/receipts/{key}", params={"format": "text"}).text
    console.print(Panel(text.rstrip(), title=title, expand=False))


def check(r: httpx.Response) -> dict:
    if r.status_code != 200:
        raise SystemExit(f"demo step failed: HTTP {r.status_code}: {r.text}")
    return r.json()


def run_job(api: httpx.Client, cards: Cards) -> None:
    console.rule("a page's card read through the national reader interface (iReadCardBas)")
    out = check(api.post("/v1/bridge", json={"function": "iReadCardBas", "iType": 3}))
    console.print(f"result {out['result']}: {out['pOutInfo']}")

    console.rule("identity check (card + PIN, card authenticated by the PSAM)")
    ident = check(api.post("/v1/identity/check", json={"pin": "123456", "biometric_score": 0.91}))
    console.print(f"{ident['name']} {ident['person_id']}: verified={ident['verified']}")

    console.rule("hospital visit: register, pre-settle, settle, partial refund")
    visit = check(api.post("/v1/visits", json={"care": "outpatient"}))
    pre = check(api.post(f"/v1/visits/{visit['mdtrt_id']}/presettle", json={"lines": LINES}))
    b = pre["breakdown"]
    console.print(f"pre-settle: total {b['medfee_sumamt'] / 100:.2f}, fund {b['fund_pay_sumamt'] / 100:.2f}, "
                  f"account {b['acct_pay'] / 100:.2f}, cash {b['psn_cash_pay'] / 100:.2f} yuan (nothing posted)")
    settled = check(api.post(f"/v1/visits/{visit['mdtrt_id']}/settle", json={"lines": LINES, "pin": "123456"}))
    show(api, "settlement", settled["key"])
    refund = check(api.post(f"/v1/settlements/{settled['key']}/refund",
                            json={"amount": 25_00, "reason": "退一项检查", "operator": "demo"}))
    show(api, "refund", refund["key"])

    console.rule("pension: certification and collection (王秀英's card)")
    cards.insert("wang_xiuying")
    cert = check(api.post("/v1/pension/certify", json={"pin": "111111"}))
    console.print(f"certified until {cert['valid_until']} ({cert['reason']})")
    collected = check(api.post("/v1/pension/collect", json={"pin": "111111", "amount": 1500_00}))
    show(api, "pension collection", collected["key"])
    cards.insert("zhang_san")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="sscard demo: HSM + settlement service + terminal daemon")
    ap.add_argument("--no-wait", action="store_true", help="stop after the job instead of serving until Ctrl-C")
    ap.add_argument("--workdir", type=Path, default=None, help="where the databases go (default: a temp dir)")
    a = ap.parse_args(argv)
    workdir = a.workdir or Path(tempfile.mkdtemp(prefix="sscard-demo-"))
    centre = start_centre(workdir, terminals=(TERMINAL_ID, HIS_TERMINAL))
    console.print(f"mock HSM on {centre.hsm_address[0]}:{centre.hsm_address[1]} (clients: "
                  f"{', '.join(f'{c.id} ({c.roles[0]})' for c in centre.hsm_access.clients.values())}; "
                  f"credentials in {workdir / 'hsm-credentials'}), "
                  f"settlement service on {centre.service.url} (SQLite in {workdir})")
    pcscd = None
    psam_link = None
    page_token = secrets.token_urlsafe(16)  # for pages calling the reader bridge (it opens nothing else)
    bridge = {"tokens_sha256": [hash_token(page_token)]}
    if pcsc_stack.available() and pcsc_stack.running_pid() is None:
        from sim.vicc import VirtualCardLink

        pcscd = pcsc_stack.Pcscd(workdir=workdir / "pcscd").start()
        psam_link = VirtualCardLink(SimPsam(terminal_number="110100000001"), pcscd.port + 1)
        psam_link.insert()
        cards = Cards(pcscd)
        cards.insert("zhang_san")
        wait_present(list(pcscd.readers))
        counter = start_counter(centre, pcscd.readers[0], pcscd.readers[1], reader_bridge=bridge)
        console.print(f"pcscd started (pid {pcscd.proc.pid}): user card on '{pcscd.readers[0]}', "
                      f"PSAM on '{pcscd.readers[1]}'")
    else:
        why = "pcscd/vpcd not installed" if not pcsc_stack.available() else "another pcscd is running"
        console.print(f"[yellow]{why}: in-process readers[/yellow]")
        counter = start_counter(centre, "memory:zhang_san", "memory:psam", reader_bridge=bridge)
        cards = Cards(None, counter)
    try:
        with httpx.Client(base_url=counter.url, headers=counter.headers(), timeout=30) as api:
            run_job(api, cards)
        console.rule("the terminal daemon is running")
        console.print(f"counter page: {counter.url}/ (sign in with any name and the bearer token below)")
        console.print(f"API docs: {counter.url}/docs   health: {counter.url}/health   metrics: {counter.url}/metrics")
        console.print(f"bearer token for this run: {counter.token}")
        his_key = centre.terminal_keys[HIS_TERMINAL]
        console.print(f"national platform interface for a HIS: POST {centre.service.url}"
                      f"/fsi/api/rsfComIfsService/callService with X-Terminal-Key: {his_key} "
                      f"(fixmedins_code {INSTITUTION}, mdtrtarea_admvs {INSTITUTIONS[INSTITUTION][1]})")
        console.print(f"reader bridge for pages (iReadCardBas...): ws://127.0.0.1:{counter.http.port}/v1/bridge/ws"
                      f"?access_token={page_token}  (HTTP: POST {counter.url}/v1/bridge)")
        if not a.no_wait:
            console.print("Ctrl-C to stop")
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                pass
        return 0
    finally:
        counter.stop()
        if cards.link is not None:
            cards.link.remove()
        if psam_link is not None:
            psam_link.remove()
        if pcscd is not None:
            time.sleep(0.1)
            pcscd.stop()
        centre.stop()


if __name__ == "__main__":
    sys.exit(main())
