"""Reader faults through the real pcscd + vpcd: a mute card, pcscd restarts, the typed error of each code.

What a mute card does to the stack was measured here first (design/PCSC.md has the stack): behind vpcd, a
card that never answers blocks SCardTransmit and every other call on that reader (SCardDisconnect and
SCardReconnect from the same context, SCardConnect from another context) until the card is pulled;
SCardCancel does not help (it only cancels SCardGetStatusChange). Shutting down the context's socket to
pcscd ends the blocked call at once with SCARD_F_COMM_ERROR (0x80100013); pcscd resets the card of the
vanished client when the reader gives the card up. cardlib.readers.pcsc builds its deadline on that.
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from cardlib.card import SocialSecurityCard
from cardlib.errors import CardTimeout
from cardlib.readers.pcsc import PcscReader, watch
from sim.faults import Fault
from sim.personalize import issue_sample
from sscard.stack import start_centre, start_counter


def test_a_mute_card_times_out_and_the_reader_serves_the_next_card(slots):
    s0, _ = slots
    reader = PcscReader(s0.reader, timeout=0.5)
    try:
        card = SocialSecurityCard(reader)
        assert card.read_basic().name == "张三"
        s0.card.faults.arm(Fault("mute", ins=0xB2, count=0))
        t0 = time.monotonic()
        with pytest.raises(CardTimeout, match=r"READ RECORD \(00 B2"):
            card.read_basic()
        took = time.monotonic() - t0
        assert 0.5 <= took < 1.5, took
        # the mute card is still in: pcscd still waits for it, and so does a new connect, bounded too
        t0 = time.monotonic()
        with pytest.raises(CardTimeout, match="connect"):
            reader.connect()
        assert time.monotonic() - t0 < 1.5
        # the clerk pulls the card and inserts the next one: the same reader object reads it
        s0.card.faults.clear()
        s0.replace(issue_sample("li_si"))
        reader.connect()
        assert SocialSecurityCard(reader, connected=True).read_basic().name == "李四"
    finally:
        reader.close()
        s0.replace(issue_sample("zhang_san"))


def test_a_mute_card_does_not_block_another_thread_on_the_other_slot(slots):
    """The watchdog cuts only the call that overran: the PSAM slot keeps working meanwhile."""
    s0, s1 = slots
    mute = PcscReader(s0.reader, timeout=0.6)
    other = PcscReader(s1.reader, timeout=0.6)
    errors: list[BaseException] = []
    try:
        mute.connect()
        other.connect()
        s0.card.faults.arm(Fault("mute", count=0))

        def stuck() -> None:
            try:
                mute.transmit(b"\x00\xa4\x04\x00\x00")
            except CardTimeout as e:
                errors.append(e)

        t = threading.Thread(target=stuck)
        t.start()
        for _ in range(20):  # the other slot answers while slot 0 waits
            assert other.transmit(b"\x00\xa4\x00\x00\x02\x3f\x00")[-2] in (0x90, 0x61)
        t.join(3)
        assert len(errors) == 1
    finally:
        s0.card.faults.clear()
        mute.close()
        other.close()
        s0.replace(s0.card)


def test_slow_card_within_the_timeout_is_not_cut(slots):
    s0, _ = slots
    reader = PcscReader(s0.reader, timeout=1.0)
    try:
        card = SocialSecurityCard(reader)
        s0.card.faults.arm(Fault("slow", ins=0xB2, delay=0.3, count=2))
        assert card.read_basic().name == "张三"
    finally:
        s0.card.faults.clear()
        reader.close()



# ---- pcscd restarts under a watcher and a daemon -------------------------------------------------------------
def wait_for(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def restart_pcscd(pcscd, slots) -> None:
    """Kill our pcscd by PID (the vpcd links die with it), start it again, put the cards back."""
    pcscd.kill()
    pcscd.start()
    for slot in slots:
        slot.ensure_inserted()


def test_watch_survives_a_pcscd_restart_and_the_card_is_read_again(pcscd, slots):
    s0, _ = slots
    events: list[tuple[str, str]] = []
    stop = threading.Event()

    def listen() -> None:
        for kind, name, _atr in watch([s0.reader], timeout=60, retry=0.1, stop=stop.is_set):
            events.append((kind, name))

    th = threading.Thread(target=listen)
    th.start()
    stale = PcscReader(s0.reader)
    try:
        stale.connect()  # a reader whose context dies with pcscd
        s0.link.remove()  # a first change proves the watcher is live
        wait_for(lambda: ("removed", s0.reader) in events, what="removed")
        s0.ensure_inserted()
        wait_for(lambda: ("inserted", s0.reader) in events, what="inserted")
        del events[:]
        restart_pcscd(pcscd, slots)
        wait_for(lambda: events[-1:] == [("inserted", s0.reader)], what="reader back with its card")
        assert events == [("reader_unavailable", s0.reader), ("reader_available", s0.reader), ("inserted", s0.reader)]
        assert SocialSecurityCard(stale).read_basic().name == "张三"  # reconnects on a fresh context
    finally:
        stop.set()
        th.join(5)
        stale.close()


def test_the_daemon_tells_front_ends_of_a_pcscd_outage_and_reads_again(pcscd, slots, tmp_path):
    s0, _ = slots
    centre = start_centre(tmp_path / "centre")
    counter = start_counter(centre, s0.reader, "")
    seen: list[tuple[str, str]] = []
    connected = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", f"{counter.url}/v1/readers/events", params={"timeout": 30},
                          headers=counter.headers(), timeout=40) as r:
            event = ""
            for line in r.iter_lines():
                if line.startswith(": connected"):
                    connected.set()
                elif line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    seen.append((event, json.loads(line[6:])["kind"]))
                    if seen[-1] == ("card", "inserted"):
                        return

    th = threading.Thread(target=listen)
    th.start()
    try:
        with httpx.Client(base_url=counter.url, headers=counter.headers(), timeout=20) as api:
            assert api.get("/v1/card").json()["name"] == "张三"
            assert connected.wait(10)
            restart_pcscd(pcscd, slots)
            th.join(20)
            assert seen == [("reader", "reader_unavailable"), ("reader", "reader_available"), ("card", "inserted")]
            (state,) = api.get("/v1/readers").json()
            assert state["available"] and state["card_present"] and not state["busy"]
            assert api.get("/v1/card").json()["name"] == "张三"
    finally:
        counter.stop()
        centre.stop()
