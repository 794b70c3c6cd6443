"""The kiosk screen of the counter page in headless Chromium, on cards behind pcscd: the holder's own view
after card + PIN; a wrong PIN shows nothing; another card in the reader clears the screen at once and shows
only its own holder's data; a card reported lost is refused as soon as it is read."""

from __future__ import annotations

import httpx

from cardlib.readers.pcsc import wait_present
from sim.personalize import issue_sample
from sim.vicc import VirtualCardLink
from tests.browser.test_counter_page import CLERK, Desk, swap_card


def test_the_kiosk_screen_shows_the_holder_in_the_reader_only(browser, shots, counter_on_pcsc):
    centre, counter, s0 = counter_on_pcsc
    with httpx.Client(base_url=counter.url, headers=counter.headers(), timeout=15) as api:
        mdtrt = api.post("/v1/visits", json={"care": "outpatient"}).json()["mdtrt_id"]
        settled = api.post(f"/v1/visits/{mdtrt}/settle", json={"lines": [
            {"chrgitm_lv": "A", "det_item_fee_sumamt": 123_45}], "pin": "123456"})
        assert settled.status_code == 200, settled.text
    page = browser.new_page()
    (shots / "kiosk").mkdir(exist_ok=True)
    desk = Desk(page, shots / "kiosk")  # its own numbering: the counter day's screens stay as they are
    page.goto(f"{counter.url}/")
    page.fill("#operator", CLERK)
    page.fill("#token", counter.token)
    page.click("#sign-in-form button")
    page.wait_for_selector('body[data-holder="B10238475"]')
    desk.tab("kiosk")
    page.fill("#kiosk-pin", "999999")
    page.click("#kiosk-form button")
    msg, code = desk.error()
    assert code == "PIN_WRONG" and page.is_hidden("#kiosk-result")
    page.fill("#kiosk-pin", "123456")
    page.click("#kiosk-form button")
    page.wait_for_selector("#kiosk-result:not([hidden])")
    text = page.inner_text("#kiosk-result")
    assert "张三" in text and "卡片状态：正常" in text and "123.45" in text and "个人账户余额" in text
    desk.shot("kiosk")

    swap_card(desk, s0, issue_sample("wang_xiuying"))  # the next holder: the screen is cleared at once
    assert page.is_hidden("#kiosk-result") and "123.45" not in page.inner_text("body")
    page.fill("#kiosk-pin", "111111")
    page.click("#kiosk-form button")
    page.wait_for_selector("#kiosk-result:not([hidden])")
    text = page.inner_text("#kiosk-result")
    assert "王秀英" in text and "张三" not in text and "123.45" not in text and "发放" in text
    desk.shot("kiosk-pensioner")

    centre.engine.cards.report_lost("B10238475", actor="hall", reason="lost")
    counter.terminal.fetcher.step(force=True)
    s0.link.remove()  # not swap_card: a refused card gives the page no holder to time
    wait_present([s0.reader], present=False)
    page.wait_for_selector('body[data-card="absent"]')
    s0.card = issue_sample("zhang_san")
    s0.link = VirtualCardLink(s0.card, s0.link.port)
    s0.link.insert()
    msg, code = desk.error()
    assert code == "CARD_REPORTED_LOST" and "挂失" in msg
    desk.shot("kiosk-card-lost")
