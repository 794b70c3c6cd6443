"""Resolve what the journal left in flight: at start-up after a crash, and periodically.

- a pending void is forwarded again until the centre acknowledges it (store and forward);
- a pending settlement or pension collection is looked up at the centre: applied -> confirmed (the
  receipt can be printed again from the journal); not applied -> voided (the void leaves a tombstone at
  the centre, so a request still on the wire is refused when it lands);
- a pending refund, registration, certification or identity check is sent again with the same serial: the
  centre applies a key once, so a repeat returns the first outcome.
Every step is idempotent, so recovery itself may crash and run again.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from settlement.errors import ServiceUnreachable, SettlementError, UnknownTransaction
from terminal.centre import Outcome
from terminal.flows import Terminal
from terminal.journal import PENDING, Entry
from terminal.logs import event

log = logging.getLogger(__name__)


@dataclass
class RecoveryReport:
    confirmed: list[str] = field(default_factory=list)
    reversed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    still_pending: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.still_pending


def _resend(t: Terminal, e: Entry):
    r = e.request
    serial = r["terminal_serial"]
    if e.kind == "refund":
        theirs = not r["setl_id"].startswith(f"{t.config.terminal.id}:")  # another counter's: the card read is proof
        return t.centre.refund(serial=serial, setl_id=r["setl_id"], amount=r.get("amount"), reason=e.reason,
                               operator=e.operator, card_no=e.card_no if theirs else None)
    if e.kind == "register":
        return t.centre.register_visit(serial=serial, person_id=r["person_id"], institution=r["institution"],
                                       care=r["care"], card_no=r.get("card_no"), card_id=r.get("card_id"))
    if e.kind == "certify":
        evidence = {k: v for k, v in r.items() if k not in ("person_id", "method", "terminal_serial")}
        return t.centre.certify(serial=serial, person_id=r["person_id"], method=r["method"], **evidence)
    if e.kind == "identity":
        return t.centre.identity_check(serial=serial, **{k: v for k, v in r.items() if k != "terminal_serial"})
    raise ValueError(f"no resend for {e.kind}")


def _outcome(t: Terminal, e: Entry) -> Outcome:
    """What the centre made of a settlement or collection; UnknownTransaction if it never applied it."""
    if e.kind == "settle":
        return t.centre.settlement_outcome(e.key)
    return t.centre.collection_outcome(e.key)


REVERSIBLE = ("settle", "pension_collect")


def _resolve_reversible(t: Terminal, e: Entry, rep: RecoveryReport) -> None:
    """A settlement or collection left in flight: confirmed if the centre applied it, else voided (tombstone)."""
    voids = t.journal.voids_of(e.key)
    if voids:
        v = t.forward_void(voids[0])
        (rep.reversed if v.state != PENDING else rep.still_pending).append(e.key)
        return
    try:
        outcome = _outcome(t, e)
    except UnknownTransaction:
        v = t.reverse(e, "interrupted before the centre applied it (recovered after restart)")
        (rep.reversed if v.state != PENDING else rep.still_pending).append(e.key)
        return
    if not outcome.applied:  # voided at the centre already
        t.journal.mark_reversed(e.key, outcome.why)
        rep.reversed.append(e.key)
        return
    t.journal.confirm(e.key, outcome.result)
    t.journal.set_reason(e.key, "confirmed by recovery: the centre had applied it")
    rep.confirmed.append(e.key)


def recover(t: Terminal) -> RecoveryReport:
    """One pass over every pending entry (oldest first)."""
    rep = RecoveryReport()
    for e in t.journal.in_state(PENDING):
        e = t.journal.get(e.key)  # an earlier step of this pass may have moved it
        if e.state != PENDING or e.key in t.in_flight:
            continue
        try:
            if e.kind == "void":
                v = t.forward_void(e)
                (rep.confirmed if v.state != PENDING else rep.still_pending).append(e.key)
            elif e.kind in REVERSIBLE:
                _resolve_reversible(t, e, rep)
            else:
                try:
                    result = _resend(t, e)
                except ServiceUnreachable:
                    raise
                except SettlementError as err:
                    t.journal.fail(e.key, err.to_dict())
                    rep.failed.append(e.key)
                    continue
                amount = result.refund.medfee_sumamt if e.kind == "refund" else None
                t.journal.confirm(e.key, result.model_dump(mode="json"), amount)
                rep.confirmed.append(e.key)
        except ServiceUnreachable:
            t.journal.note_attempt(e.key, {"code": "SERVICE_UNREACHABLE", "message": "recovery: centre not reachable"})
            rep.still_pending.append(e.key)
    if rep.confirmed or rep.reversed or rep.failed:
        event("recovery", confirmed=rep.confirmed, reversed=rep.reversed, failed=rep.failed,
              still_pending=rep.still_pending)
    return rep


class Forwarder:
    """Runs `recover()` every `interval` seconds in a background thread until stopped."""

    def __init__(self, t: Terminal, interval: float = 2.0) -> None:
        self.t, self.interval = t, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="journal-forwarder", daemon=True)

    def start(self) -> Forwarder:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                recover(self.t)
            except Exception:  # keep forwarding whatever one pass hit
                log.exception("journal forwarder pass failed")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
