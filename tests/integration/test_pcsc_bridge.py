"""Conformance of the reader bridge with what pages written for vendor bridges do, against simulated cards behind
the real pcscd (user card in vpcd slot 0, PSAM in slot 1).

The page below is written from the public descriptions, not from our models (sources in
terminal/reader_bridge.py): it sends `{"function": "iReadCardBas", "iType": 3}` over a WebSocket or HTTP, takes
`success == 1` (or `result == 0`) as success and `pOutInfo` as the `|`-separated basic data; on -2201, -2202,
-2203, -27272 or -24 it switches to the HSM two-step: `iReadCardBas_HSM_Step1`, then the step 1 string (region,
ATR historical bytes, algorithm flag, card identification code, randoms) to the centre's HSM, whose answer
("internal|external|") goes to `iReadCardBas_HSM_Step2` as pKey.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from sim.images import issue_image, load_image
from sscard.stack import start_counter
from terminal.config import hash_token
from tests.terminal.test_reader_bridge import hsm_answer

V3_IMAGE = Path(__file__).resolve().parents[1] / "cards" / "v3_auth_before_ef06.toml"
TOKEN = "page-token-0123456789"
HSM_CUES = (-2201, -2202, -2203, -27272, -24)  # the codes a page answers with the HSM two-step


class Page:
    """A page's reader library: one WebSocket (or HTTP posts), calls answered in order."""

    def __init__(self, port: int, hsm, transport: str) -> None:
        self.base, self.hsm, self.transport = f"127.0.0.1:{port}", hsm, transport
        self.ws = None

    def __enter__(self) -> Page:
        if self.transport == "ws":
            self.ws = connect(f"ws://{self.base}/v1/bridge/ws?access_token={TOKEN}").__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.ws is not None:
            self.ws.close()

    def send(self, message: dict) -> dict:
        if self.ws is not None:
            self.ws.send(json.dumps(message))
            return json.loads(self.ws.recv(timeout=20))
        r = httpx.post(f"http://{self.base}/v1/bridge?access_token={TOKEN}", json=message, timeout=20)
        return r.json()

    def read_card(self) -> tuple[dict, list[str]]:
        """iReadCardBas, through the centre's HSM when the reader cannot read the card alone; (answer, calls)."""
        calls = ["iReadCardBas"]
        answer = self.send({"function": "iReadCardBas", "iType": 3})
        if answer["success"] in HSM_CUES:
            calls.append("iReadCardBas_HSM_Step1")
            step1 = self.send({"function": "iReadCardBas_HSM_Step1", "iType": 3})
            if step1["success"] != 1:
                return step1, calls
            calls.append("iReadCardBas_HSM_Step2")
            answer = self.send({"function": "iReadCardBas_HSM_Step2", "pKey": hsm_answer(self.hsm, step1["pOutInfo"])})
        return answer, calls


@pytest.fixture
def bridge_on_pcsc(counter_on_pcsc):
    """A counter on the pcscd slots (PSAM in slot 1) that lets pages in with TOKEN."""
    centre, counter, s0 = counter_on_pcsc
    counter.stop()
    k = start_counter(centre, s0.reader, counter.terminal.config.readers.psam,
                      reader_bridge={"tokens_sha256": [hash_token(TOKEN)]})
    yield centre, k, s0
    k.stop()


@pytest.mark.parametrize("transport", ["ws", "http"])
def test_a_page_reads_a_second_generation_card_and_checks_its_pin(bridge_on_pcsc, transport):
    centre, counter, s0 = bridge_on_pcsc
    with Page(counter.http.port, centre.hsm, transport) as page:
        answer, calls = page.read_card()
        assert calls == ["iReadCardBas"] and answer["success"] == 1, answer
        f = answer["pOutInfo"].split("|")
        assert f[:5] == ["110100", "110105198001010016", "B10238475", f[3], "张三"] and f[3].startswith("110100")
        assert f[6] == "2.00" and f[9] == "110100000042" and f[11] == ""  # the PSAM's terminal number over pcscd
        wrong = page.send({"function": "iVerifyPIN", "iType": 3, "pPIN": "000000"})
        assert (wrong["success"], wrong["tries_left"]) == (-51, 2)
        assert page.send({"function": "iVerifyPIN", "iType": 3, "pPIN": "123456"})["success"] == 1
        assert s0.card.pin.tries_left == s0.card.pin.max_tries


@pytest.mark.parametrize("transport", ["ws", "http"])
def test_a_third_generation_card_with_the_counters_psam(bridge_on_pcsc, transport):
    centre, counter, s0 = bridge_on_pcsc
    s0.replace(issue_image(load_image(V3_IMAGE)))
    with Page(counter.http.port, centre.hsm, transport) as page:
        answer, calls = page.read_card()
        assert calls == ["iReadCardBas"] and answer["success"] == 1, answer
        assert answer["pOutInfo"].split("|")[1:5:3] == ["440304197511200019", "林志明"]


@pytest.mark.parametrize("transport", ["ws", "http"])
def test_a_third_generation_card_through_the_centres_hsm(counter_on_pcsc, transport):
    """A counter with neither PSAM nor HSM of its own: the page reads the card in two steps with the centre's HSM."""
    centre, counter, s0 = counter_on_pcsc
    counter.stop()
    s0.replace(issue_image(load_image(V3_IMAGE)))
    k = start_counter(centre, s0.reader, "", hsm={"host": ""}, reader_bridge={"tokens_sha256": [hash_token(TOKEN)]})
    try:
        with Page(k.http.port, centre.hsm, transport) as page:
            answer, calls = page.read_card()
            assert calls == ["iReadCardBas", "iReadCardBas_HSM_Step1", "iReadCardBas_HSM_Step2"]
            assert answer["success"] == 1, answer
            assert answer["pOutInfo"].split("|")[:5] == ["440300", "440304197511200019", "E44021893",
                                                         "440300D1560000053A5B6C7D8E9F0011", "林志明"]
            assert answer["pOutInfo"].split("|")[9] == ""  # no PSAM: no terminal number
            # the card pulled between the steps: step 2 finds no card, and the reader is free afterwards
            step1 = page.send({"function": "iReadCardBas_HSM_Step1", "iType": 3})
            s0.link.remove()
            gone = page.send({"function": "iReadCardBas_HSM_Step2", "pKey": hsm_answer(centre.hsm, step1["pOutInfo"])})
            assert gone["success"] == -2, gone
            assert page.send({"function": "iReadCardBas", "iType": 3})["success"] == -2
            s0.ensure_inserted()
            assert page.read_card()[0]["success"] == 1
    finally:
        k.stop()
