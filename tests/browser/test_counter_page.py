"""A counter's day in a real browser: headless Chromium on the page the daemon serves at `/`, the daemon
reading simulated cards behind the real pcscd (user card on vpcd slot 0, PSAM on slot 1), the centre on
loopback. Card in, identity, a visit with fee lines from the HIS, pre-settlement, settlement, receipt print
preview on 58 mm, 80 mm and A5, refund with reason, pension certification and collection, the card
pulled mid-flow, the centre down, the day's transactions. Each screen is saved (see conftest) and the
clerk never sees JSON or a traceback.

Printed, not asserted: the time from a card's insertion to the holder on the page, and the page's first
load in bytes (targets: 300 ms from the card read, 300 KB).
"""

from __future__ import annotations

import re
import statistics
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx

from cardlib.readers.pcsc import wait_present
from sim.faults import Fault
from sim.personalize import issue_sample
from sim.vicc import VirtualCardLink
from sscard.stack import UvicornThread, start_centre, start_counter

CLERK = "收费员 王芳"


class Desk:
    """The page as the clerk sees it, with screenshots and the rule that no raw JSON or traceback shows."""

    def __init__(self, page, shots: Path) -> None:
        self.page, self.shots, self.n = page, shots, 0

    def clean(self) -> None:
        text = self.page.inner_text("body")
        for bad in ('{"', "Traceback", "undefined", "[object", "NaN"):
            assert bad not in text, (bad, text)

    def shot(self, name: str) -> None:
        self.clean()
        self.n += 1
        self.page.screenshot(path=str(self.shots / f"{self.n:02d}-{name}.png"))

    def error(self) -> tuple[str, str]:
        self.page.wait_for_selector("#error:not([hidden])")
        return self.page.inner_text("#error .msg"), self.page.inner_text("#error .code")

    def no_error(self) -> None:
        assert self.page.is_hidden("#error"), self.page.inner_text("#error")

    def tab(self, name: str) -> None:
        self.page.click(f'.tabs button[data-tab="{name}"]')

    def close_receipt(self) -> None:
        self.page.click("#receipt-close")


def swap_card(desk: Desk, slot, card) -> tuple[float, dict]:
    """Pull the card in the slot, wait until the page says so, insert `card`; (seconds from the insertion to
    the holder on the page, the page's own timings of that read)."""
    slot.link.remove()
    wait_present([slot.reader], present=False)
    desk.page.wait_for_selector('body[data-card="absent"]')
    before = desk.page.evaluate("window.counterPerf.length")
    slot.card = card
    slot.link = VirtualCardLink(card, slot.link.port)
    t0 = time.perf_counter()
    slot.link.insert()
    desk.page.wait_for_function(f"window.counterPerf.length > {before}")
    took = time.perf_counter() - t0
    perf = desk.page.evaluate("window.counterPerf[window.counterPerf.length - 1]")
    return took, perf


def test_a_counter_day_in_the_browser(browser, shots, counter_on_pcsc):
    centre, counter, s0 = counter_on_pcsc
    page = browser.new_page()
    foreign: list[str] = []
    sizes: dict[str, int] = {}

    def on_request(request):
        if urlparse(request.url).hostname not in ("127.0.0.1", None):
            foreign.append(request.url)

    def on_response(response):
        if response.url.startswith(counter.url) and "/v1/" not in response.url:
            sizes[response.url] = len(response.body())

    page.on("request", on_request)
    page.on("response", on_response)
    desk = Desk(page, shots)

    # ---- sign in: the page and its assets come from the daemon, nothing from elsewhere
    page.goto(f"{counter.url}/")
    page.wait_for_selector("#sign-in:not([hidden])")
    first_load = sum(sizes.values())
    desk.shot("sign-in")
    page.fill("#operator", CLERK)
    page.fill("#token", "wrong-token")
    page.click("#sign-in-form button")
    msg, code = desk.error()
    assert code == "UNAUTHORIZED" and "令牌" in msg
    page.fill("#operator", CLERK)
    page.fill("#token", counter.token)
    page.click("#sign-in-form button")
    page.wait_for_selector('body[data-holder="B10238475"]')
    assert page.inner_text("#h-name") == "张三" and page.inner_text("#institution") == "北京示例第三医院"
    page.wait_for_selector('body[data-events="open"]')
    desk.shot("holder")

    # ---- card out and in, timed (pcscd sees a card within its 400 ms poll)
    timings = [swap_card(desk, s0, s0.card) for _ in range(3)]
    desk.shot("card-in-again")

    # ---- identity: a wrong PIN is a sentence with its code, the right one passes
    desk.tab("identity")
    page.fill("#identity-pin", "999999")
    page.click("#identity-form button")
    msg, code = desk.error()
    assert code == "PIN_WRONG" and msg == "密码错误，还可以再试 2 次。"
    desk.shot("identity-wrong-pin")
    page.fill("#identity-pin", "123456")
    page.click("#identity-form button")
    page.wait_for_selector("#identity-result:not([hidden])")
    assert "核验通过：张三" in page.inner_text("#identity-result")
    desk.shot("identity")

    # ---- a visit: registered at the counter, fee lines from the HIS, pre-settled, settled, printed, refunded
    desk.tab("visit")
    page.click("#register-form button")
    page.wait_for_selector("#visit-info:not([hidden])")
    mdtrt = re.search(r"就诊号 (\S+)。", page.inner_text("#visit-info")).group(1)
    his = {"lines": [{"med_list_codg": "XA01AAA", "chrgitm_lv": "01", "det_item_fee_sumamt": 120_00},
                     {"med_list_codg": "XB02BBB", "chrgitm_lv": "02", "det_item_fee_sumamt": 80_50},
                     {"med_list_codg": "XC03CCC", "chrgitm_lv": "03", "det_item_fee_sumamt": 15_00}], "source": "HIS"}
    assert httpx.post(f"{counter.url}/v1/visits/{mdtrt}/fees", json=his, headers=counter.headers()).status_code == 200
    page.click("#load-fees")
    page.wait_for_selector("#notice:not([hidden])")
    assert page.locator("#lines tr").count() == 3 and page.input_value("#lines tr:nth-child(2) .amount") == "80.50"
    page.click("#presettle")
    page.wait_for_selector("#presettle-result:not([hidden])")
    explained = page.inner_text("#explanation")
    assert "本次医疗费总额 215.50 元。" in explained and "全自费项目 15.00 元" in explained
    desk.shot("presettle")
    page.fill("#settle-pin", "123456")
    page.click("#settle-form button")
    page.wait_for_selector("#receipt-dialog[open]")
    receipt = page.inner_text("#receipt")
    for needed in ("北京示例第三医院", "医疗费用结算单", "张三", "医疗费总额", "215.50 元", "已写入卡片"):
        assert needed in receipt, needed
    assert not re.search(r"[a-z]+_[a-z_]+", receipt)  # no field codes
    assert re.search(r"时间\s*\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", receipt)
    desk.shot("receipt")
    for paper in ("p58", "p80", "a5"):
        page.select_option("#paper", paper)
        page.click("#print")
        page.emulate_media(media="print")
        assert page.is_visible("#print-area .receipt") and page.is_hidden("header")
        width = page.evaluate("document.querySelector('#print-area .receipt').getBoundingClientRect().width")
        assert {"p58": 180 < width < 230, "p80": 260 < width < 310, "a5": 450 < width < 520}[paper], (paper, width)
        desk.shot(f"print-{paper}")
        page.emulate_media(media="screen")
    page.click("#refund-open")
    page.fill("#refund-amount", "15")
    page.fill("#refund-reason", "丙类药品未取，退回")
    assert page.inner_text("#refund-operator") == CLERK
    page.click("#refund-form button")
    page.wait_for_function("document.querySelector('#receipt').innerText.includes('医疗费用退费凭证')")
    refund = page.inner_text("#receipt")
    assert CLERK in refund and "丙类药品未取，退回" in refund and "15.00 元" in refund
    desk.shot("refund")
    desk.close_receipt()

    # ---- pensions: 王秀英's card, status, certification, collection
    took, _ = swap_card(desk, s0, issue_sample("wang_xiuying"))
    assert page.inner_text("#h-name") == "王秀英"
    desk.tab("pension")
    page.click("#pension-status")
    page.wait_for_selector("#pension-info:not([hidden])")
    assert "待遇状态：正常" in page.inner_text("#pension-info")
    page.fill("#certify-pin", "111111")
    page.click("#certify-form button")
    page.wait_for_selector("#certify-result:not([hidden])")
    assert page.inner_text("#certify-result").startswith("认证通过，有效期至")
    page.fill("#collect-amount", "1000")
    page.fill("#collect-pin", "111111")
    page.click("#collect-form button")
    page.wait_for_selector("#receipt-dialog[open]")
    assert "养老金领取凭证" in page.inner_text("#receipt") and "1000.00 元" in page.inner_text("#receipt")
    desk.shot("pension")
    desk.close_receipt()

    # ---- the card pulled in the middle of a settlement (while the PIN is checked): nothing posted, said so
    swap_card(desk, s0, issue_sample("zhang_san"))
    desk.tab("visit")
    page.click("#register-form button")
    page.wait_for_function("document.querySelector('#visit-info').innerText.includes('张三')")
    page.click("#presettle")
    page.wait_for_selector("#presettle-result:not([hidden])")
    s0.card.faults.arm(Fault("pull", ins=0x20))
    page.fill("#settle-pin", "123456")
    page.click("#settle-form button")
    msg, code = desk.error()
    assert code == "CARD_REMOVED" and "卡片已被拔出" in msg
    page.wait_for_selector('body[data-card="absent"]')
    desk.shot("card-pulled")
    s0.card.faults.clear()
    s0.ensure_inserted()
    page.wait_for_selector('body[data-holder="B10238475"]')

    # ---- the centre down: a settlement is refused and reversed; the clerk is told nothing is owed
    page.click("#presettle")
    page.wait_for_selector("#presettle-result:not([hidden])")
    centre.service.stop()
    page.fill("#settle-pin", "123456")
    page.click("#settle-form button")
    msg, code = desk.error()
    assert code == "SETTLEMENT_UNAVAILABLE" and "冲正" in msg and "不收取任何费用" in msg
    desk.shot("centre-down")
    health = httpx.get(f"{counter.url}/health").json()
    assert health["status"] == "degraded" and health["components"]["centre"]["status"] == "down"

    # ---- the day's transactions, with their outcomes and reasons
    desk.tab("day")
    page.wait_for_selector("#day tr")
    day_text = page.inner_text("#day")
    for needed in ("医疗费用结算", "退费", "养老金领取", "冲正", "成功", "丙类药品未取，退回", "王秀英"):
        assert needed in day_text, needed
    assert "处理中" in day_text or "已冲正" in day_text  # the settlement the centre never answered
    assert "医保结算中心无响应，予以冲正" in day_text
    desk.shot("day")

    assert not foreign, foreign
    read_to_shown = [p["shown"] - p["read"] for _, p in timings]
    event_to_shown = [p["shown"] - p["event"] for _, p in timings]
    insert_to_shown = [t * 1000 for t, _ in timings]
    print(f"\ncounter page first load: {first_load} bytes ({first_load / 1024:.1f} KB) in {len(sizes)} files "
          "(target < 300 KB)")
    print(f"card read -> holder shown: median {statistics.median(read_to_shown):.1f} ms "
          f"(max {max(read_to_shown):.1f}; target < 300 ms)")
    print(f"card event -> holder shown (GET /v1/card through pcscd + render): median "
          f"{statistics.median(event_to_shown):.1f} ms (max {max(event_to_shown):.1f})")
    print(f"card inserted -> holder shown (pcscd polls every 400 ms): median "
          f"{statistics.median(insert_to_shown):.0f} ms (max {max(insert_to_shown):.0f})")
    print(f"screenshots: {shots}")


def test_a_page_on_another_origin(browser, shots, tmp_path):
    """A HIS page on an allowed origin calls the daemon from the browser (preflight with the Idempotency-Key
    header); a page on any other origin is refused by the browser, and the daemon answers it 403."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    def page(request):
        return HTMLResponse("<!doctype html><title>HIS</title><p>HIS</p>")

    his = UvicornThread(Starlette(routes=[Route("/", page)])).start()
    evil = UvicornThread(Starlette(routes=[Route("/", page)])).start()
    his_origin = his.url.replace("127.0.0.1", "localhost")  # another origin than the daemon's own
    centre = start_centre(tmp_path / "centre")
    counter = start_counter(centre, cors={"allow_origins": [his_origin]})
    call = """async ([url, token]) => {
        try {
            const r = await fetch(url + "/v1/visits", {method: "POST", headers: {
                "Authorization": "Bearer " + token, "Content-Type": "application/json",
                "Idempotency-Key": "his-1", "Accept-Language": "zh-CN"}, body: JSON.stringify({care: "outpatient"})});
            return {status: r.status, body: await r.json()};
        } catch (e) { return {refused: String(e)}; }
    }"""
    try:
        tab = browser.new_page()
        tab.goto(his_origin + "/")
        ok = tab.evaluate(call, [counter.url, counter.token])
        assert ok.get("status") == 200 and ok["body"]["name"] == "张三", ok
        tab.goto(evil.url.replace("127.0.0.1", "localhost") + "/")
        refused = tab.evaluate(call, [counter.url, counter.token])
        assert "refused" in refused, refused  # the browser never hands the answer to the page
        assert [e.kind for e in counter.terminal.journal.all()] == ["register"]  # nothing done for it
        tab.close()
    finally:
        counter.stop()
        centre.stop()
        his.stop()
        evil.stop()
