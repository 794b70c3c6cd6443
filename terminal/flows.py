"""The counter's flows, step by step: identity check, hospital visit, pension collection.

Each money-moving step follows the same discipline:
1. check the card: the same card still in the reader, the right person's (a visit's patient), genuine
   (authenticated with the PSAM/HSM), and only then the PIN at the card: a wrong or counterfeit card
   never costs the holder a PIN try nor sees the PIN;
2. journal the request under the next serial (durable) *before* it leaves the terminal;
3. make sure the card is still there, then send it to the centre with its idempotency key;
4. write the answer to the journal; an error the centre gives means nothing was posted (`failed`);
5. no answer (timeout, centre down) -> reverse: a void is journaled and forwarded until acknowledged
   (settlements and pension collections: money the counter never confirmed to the holder);
6. the card removed while the request was in flight -> reverse as well (the holder left mid-flow);
7. after a confirmed settlement, the transaction record is appended to the card's DF04 file with a MAC.
   A failed card write never undoes the settlement; the receipt says so.

PINs arrive with the request (standing in for a PIN pad) and go to the card's VERIFY. For a pension
certification (card_pin), once the card has accepted it, the PIN also goes into the security module's PIN
encipher command (the PSAM's PIN ENCIPHER, or the HSM's `encrypt_pin` when the PSAM cannot serve), which
returns an ISO 9564 format-0 PIN block under the terminal PIN key; the block travels to the centre, which
checks it online against the PIN reference recorded at issuance (PAN: the social security number,
`settlement.wire.pin_pan`). Nowhere else: neither the PIN nor the block is journaled or logged (the
journal keeps the certification request without the block; a resend after a restart only replays an
attempt the centre recorded). The terminal has no change-PIN flow; a PIN changed at the card alone
(`sscard card change-pin`) leaves the centre's reference behind, so online certification fails with
`pin_wrong` until the reference is enrolled again (`registry.set_pin_reference`, at a service hall).
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cardlib import layout
from cardlib.card import BasicInfo
from cardlib.errors import CardBlocked, CardError, CardRemoved
from cardlib.security import SecurityModule
from settlement.errors import AlreadyReversed, ServiceUnreachable, SettlementError
from settlement.wire import FeeLineIn, Visit, pin_pan
from terminal import metrics
from terminal.blacklist import Blacklist, BlacklistFetcher, Listed
from terminal.centre import Centre
from terminal.clock import Clock
from terminal.config import TerminalConfig
from terminal.errors import TerminalError, from_card_error, from_settlement_error
from terminal.journal import CONFIRMED, PENDING, Entry, Journal
from terminal.session import ReaderSession, UnknownReader

TX = layout.DF04_TRANSACTIONS


@dataclass
class CrashPoints:
    """Testing aid: kill the process with SIGKILL at named points of the flows, each with a probability,
    drawn from a seeded generator, to prove that a crash at any point loses nothing and posts nothing
    twice; the same seed replays the same draws."""

    chances: dict[str, float]
    rng: random.Random

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> CrashPoints | None:
        """From SSCARD_CRASHPOINTS="settle.journaled:0.2,..." and SSCARD_CRASH_SEED (any text, default "0");
        None when no crash point is set."""
        spec = env.get("SSCARD_CRASHPOINTS")
        if not spec:
            return None
        chances = {}
        for part in spec.split(","):
            point, _, p = part.partition(":")
            chances[point] = float(p or 1)
        return cls(chances, random.Random(env.get("SSCARD_CRASH_SEED", "0")))

    def __call__(self, name: str) -> None:
        p = self.chances.get(name)
        if p is not None and self.rng.random() < p:
            os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class Terminal:
    """Everything a flow needs: configuration, journal, readers, security module, the centre."""

    config: TerminalConfig
    journal: Journal
    sessions: dict[str, ReaderSession]
    security: SecurityModule | None
    centre: Centre  # native or national-platform upstream (terminal.centre)
    terminal_number: str = ""
    crashpoints: CrashPoints | None = None  # tests only (SSCARD_CRASHPOINTS)
    in_flight: set[str] = field(default_factory=set)  # keys a live flow is working on: recovery leaves them
    blacklist: Blacklist | None = None  # the region's card blacklist (terminal/blacklist.py)
    fetcher: BlacklistFetcher | None = None  # keeps it fresh; its thread runs under the daemon

    # ---- plumbing -------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        for s in self.sessions.values():
            s.card.security = self.security  # a card that shows EF06 only to an authenticated terminal
            metrics.instrument(s.reader, "card")
        metrics.instrument(self.centre, "centre")
        metrics.instrument(self.journal, "journal")
        if self.security is not None:
            metrics.instrument(self.security, "security")

    @property
    def clock(self) -> Clock:
        """The terminal's clock (its journal's): business days, card validity, the card's records."""
        return self.journal.clock

    def crashpoint(self, name: str) -> None:
        if self.crashpoints is not None:
            self.crashpoints(name)

    def session(self, reader: str | None) -> ReaderSession:
        if reader is None:
            return next(iter(self.sessions.values()))
        if reader not in self.sessions:
            raise UnknownReader(f"no reader {reader!r}; readers: {', '.join(self.sessions)}")
        return self.sessions[reader]

    def _card(self, s: ReaderSession, pin: str | None, *, authenticate: bool = False,
              holder: str | None = None, mdtrt_id: str | None = None) -> BasicInfo:
        """The card's data (re-read only when the card changed) and validity; then, in this order, so that
        the PIN goes only to the right, genuine card: the holder (`holder`, the person the flow is for:
        anyone else's card is CARD_MISMATCH with no PIN tried), the card authenticated by the PSAM/HSM (a
        counterfeit never sees the PIN), and last the PIN at the card."""
        try:
            info = s.ensure_read()
            self.screen(s, info)
            if info.expiry_date is not None and info.expiry_date < self.clock.today():
                raise TerminalError("CARD_EXPIRED", f"The card expired on {info.expiry_date}.", 403,
                                    expiry_date=info.expiry_date.isoformat())
            if holder is not None and holder != info.social_security_number:
                raise TerminalError("CARD_MISMATCH", "The card in the reader is not the visit's patient.", 409,
                                    mdtrt_id=mdtrt_id)
            if authenticate and self.security is not None and self.config.policy.require_card_auth:
                s.card.authenticate(self.security)
            if pin is not None:
                s.card.verify_pin(pin)
            return info
        except CardError as e:  # first: some card errors are ValueErrors too (a reader's framing error)
            metrics.reader_errors.labels(s.name, type(e).__name__).inc()
            raise from_card_error(e) from e
        except ValueError as e:  # a PIN that is not 4-12 digits: refused before the card sees it
            raise TerminalError("INVALID_PIN_FORMAT", str(e), 422) from e

    # ---- the blacklist ------------------------------------------------------------------------------------
    def read_card(self, s: ReaderSession) -> BasicInfo:
        """Read the card in `s` afresh and screen it (GET /v1/card); the caller holds the reader."""
        info = s.read()
        self.screen(s, info)
        return info

    def blacklist_state(self) -> dict[str, Any]:
        """The copy's version and age, as answers quote it (empty without a blacklist)."""
        if self.blacklist is None:
            return {}
        age = self.blacklist.age()  # head() and age(): no count of the entries on a card's path
        return {"blacklist_version": self.blacklist.head()[0],
                "blacklist_age_seconds": None if age is None else int(age.total_seconds())}

    def screen(self, s: ReaderSession, info: BasicInfo) -> None:
        """Check a card just read against the blacklist, before its PIN or anything else: a listed card is
        refused at once with its status as the code (CARD_REPORTED_LOST, CARD_CANCELLED, CARD_REPLACED) and,
        where `[blacklist] block_application` says so, that application is blocked on the card first; a card
        the centre lists as active again has the application a counter blocked unblocked."""
        if self.blacklist is None:
            return
        hit = self.blacklist.lookup(info.card_id, info.card_number)
        if hit is None:
            return
        if not hit.refused:
            self._unblock_application(s, info, hit)
            return
        blocked = self._block_application(s, info, hit)
        metrics.blacklisted.labels(hit.status).inc()
        raise TerminalError(f"CARD_{hit.status.upper()}", f"card {info.card_number} is on the blacklist "
                            f"({hit.status.replace('_', ' ')})", 403, card_no=info.card_number,
                            application_blocked=blocked, **self.blacklist_state())

    def _block_application(self, s: ReaderSession, info: BasicInfo, hit: Listed) -> str | None:
        """APPLICATION BLOCK of the configured application (once per card); recorded, and told to the centre.
        The name of the application blocked on the card, or None."""
        assert self.blacklist is not None
        name = self.config.blacklist.block_application
        if not name or self.security is None:
            return hit.application or None
        if hit.application == name:
            return name
        try:
            s.card.block_application(self.security, layout.application(name))
        except CardBlocked:
            pass  # blocked already (another counter, not yet known to the centre): record it all the same
        except CardError as e:  # the refusal stands; the next read tries again
            metrics.reader_errors.labels(s.name, type(e).__name__).inc()
            return hit.application or None
        self.blacklist.record_action(info.card_number, info.card_id, "blocked", name, hit.status)
        if self.fetcher is not None:
            self.fetcher.report_actions()
        return name

    def _unblock_application(self, s: ReaderSession, info: BasicInfo, hit: Listed) -> None:
        """APPLICATION UNBLOCK of what a counter blocked, now that the centre lists the card active again."""
        assert self.blacklist is not None
        if self.security is None:
            return
        try:
            s.card.unblock_application(self.security, layout.application(hit.application))
        except CardError as e:  # blocked for good, or the card refused: the flow goes on; the next read retries
            metrics.reader_errors.labels(s.name, type(e).__name__).inc()
            return
        self.blacklist.record_action(info.card_number, info.card_id, "unblocked", hit.application, hit.status)
        if self.fetcher is not None:
            self.fetcher.report_actions()

    def _begin(self, kind: str, request: dict[str, Any], **kw: Any) -> Entry:
        entry = self.journal.begin(kind, request, **kw)
        self.in_flight.add(entry.key)
        return entry

    def _send(self, entry: Entry, s: ReaderSession | None, call, *, reverse_on_unknown: bool,
              amount_of=None) -> Any:
        """Steps 3-6 for one journaled request; returns the centre's answer (a pydantic model)."""
        if s is not None and not s.still_present():
            self.journal.fail(entry.key, {"code": "CARD_REMOVED", "message": "card removed before sending"})
            self.in_flight.discard(entry.key)
            raise TerminalError("CARD_REMOVED", "The card was removed; nothing was sent.", 409, key=entry.key)
        self.crashpoint(f"{entry.kind}.before_send")
        try:
            return self._exchange(entry, s, call, reverse_on_unknown, amount_of)
        finally:
            self.in_flight.discard(entry.key)

    def _exchange(self, entry: Entry, s: ReaderSession | None, call, reverse_on_unknown: bool, amount_of) -> Any:
        try:
            result = call(entry.request["terminal_serial"])
        except ServiceUnreachable as e:
            self.journal.note_attempt(entry.key, {"code": e.code, "message": e.message})
            if reverse_on_unknown:
                void = self.reverse(entry, "no answer from the settlement centre")
                raise TerminalError(
                    "SETTLEMENT_UNAVAILABLE",
                    "The settlement centre did not answer; the transaction is being reversed. Nothing is owed.",
                    503, key=entry.key, reversal_key=void.key, reversal_state=void.state,
                ) from e
            raise from_settlement_error(e) from e
        except SettlementError as e:
            self.journal.fail(entry.key, e.to_dict())
            metrics.transactions.labels(entry.kind, "failed").inc()
            raise from_settlement_error(e) from e
        self.crashpoint(f"{entry.kind}.answered")
        self.journal.confirm(entry.key, result.model_dump(mode="json"), amount_of(result) if amount_of else None)
        self.crashpoint(f"{entry.kind}.confirmed")
        if s is not None and reverse_on_unknown and not s.still_present():
            void = self.reverse(entry, "card removed while the request was in flight")
            raise TerminalError("CARD_REMOVED", "The card was removed mid-transaction; it was reversed.", 409,
                                key=entry.key, reversal_key=void.key, reversal_state=void.state)
        return result

    # ---- reversal (store and forward) --------------------------------------------------------------------
    def reverse(self, entry: Entry, reason: str) -> Entry:
        """Journal a void of `entry` (once) and try to forward it now; the forwarder retries until acknowledged."""
        voids = self.journal.voids_of(entry.key)
        void = voids[0] if voids else self.journal.begin(
            "void", {"setl_id": entry.key}, original_key=entry.key, person_id=entry.person_id,
            card_no=entry.card_no, amount=entry.amount, holder_name=entry.holder_name, reason=reason)
        self.journal.set_reason(entry.key, reason)
        metrics.transactions.labels(entry.kind, "reversed").inc()
        return self.forward_void(void)

    def forward_void(self, void: Entry) -> Entry:
        if void.state != PENDING:
            return void
        serial, original_key = void.request["terminal_serial"], void.original_key or ""
        original = self.journal.get(original_key)
        try:
            if original.kind == "pension_collect":
                result = self.centre.void_collection(serial=serial, collection_key=original_key)
            else:
                mdtrt_id = original.request.get("mdtrt_id")
                result = self.centre.void(serial=serial, setl_id=original_key, mdtrt_id=mdtrt_id,
                                          person_id=original.person_id, visit=self._registered(mdtrt_id))
        except ServiceUnreachable as e:
            self.journal.note_attempt(void.key, {"code": e.code, "message": e.message})
            return self.journal.get(void.key)
        except AlreadyReversed as e:  # another void got there first: the original is undone all the same
            void = self.journal.confirm(void.key, {"status": "already_reversed", "message": e.message})
        except SettlementError as e:
            self.journal.note_attempt(void.key, e.to_dict())
            return self.journal.get(void.key)
        else:
            void = self.journal.confirm(void.key, result.model_dump(mode="json"))
        original = self.journal.get(void.original_key or "")
        if original.state in (PENDING, CONFIRMED):
            self.journal.mark_reversed(original.key, original.reason or "voided")
        metrics.transactions.labels("void", "confirmed").inc()
        return void

    # ---- identity --------------------------------------------------------------------------------------
    def identity_check(self, reader: str | None, pin: str, biometric_score: float | None) -> dict[str, Any]:
        """Card + PIN at the counter (the card screened against the blacklist and authenticated first, as every
        flow does), then the centre's check, recorded there under the journal's key: "verified" or "refused"
        with the centre's reasons. With the centre out of reach the answer is "provisional" (never verified),
        with the age of the blacklist copy the card was screened against; the check stays in the journal and is
        sent when the centre is back."""
        s = self.session(reader)
        with s.claim("identity"):
            info = self._card(s, pin, authenticate=True)
        passed_bio = None if biometric_score is None else biometric_score >= self.config.policy.biometric_threshold
        authenticated = self.security is not None and self.config.policy.require_card_auth
        body = {"person_id": info.social_security_number, "card_no": info.card_number, "card_id": info.card_id,
                "pin_verified": True, "card_authenticated": authenticated, "biometric_passed": passed_bio}
        seen = {"pin_verified": True, "card_authenticated": authenticated, "biometric_passed": passed_bio,
                "person_id": info.social_security_number, "name": info.name, "card_no": info.card_number,
                "region_code": info.region_code, **self.blacklist_state()}
        entry = self._begin("identity", body, person_id=info.social_security_number, card_no=info.card_number,
                            holder_name=info.name)
        try:
            result = self._send(entry, None, lambda serial: self.centre.identity_check(serial=serial, **body),
                                reverse_on_unknown=False)
        except TerminalError as e:
            if e.code != "SETTLEMENT_UNAVAILABLE":
                raise
            return {**seen, "key": entry.key, "status": "provisional", "verified": False, "check_id": None,
                    "reasons": ["CENTRE_UNREACHABLE"]}
        return {**seen, "key": entry.key, "status": "verified" if result.verified else "refused",
                "verified": result.verified, "check_id": result.check_id, "reasons": result.reasons,
                "name": result.name or info.name, "card_status": result.card_status,
                "enrolled_regions": result.enrolled_regions, "certified": result.certified,
                "certified_until": result.certified_until, "benefit_status": result.benefit_status}

    # ---- self-service (kiosk) ------------------------------------------------------------------------------
    def kiosk(self, reader: str | None, pin: str) -> dict[str, Any]:
        """The holder's own view, for the card in the reader only: the card screened, authenticated and its
        PIN verified at the card, then the centre's self-service answer for that card's holder (the centre
        checks the card is their active card)."""
        s = self.session(reader)
        with s.claim("kiosk"):
            info = self._card(s, pin, authenticate=True)
        try:
            view = self.centre.self_service(info.social_security_number, card_no=info.card_number,
                                            card_id=info.card_id)
        except SettlementError as e:
            raise from_settlement_error(e) from e
        return {**view.model_dump(mode="json"), "expiry_date": info.expiry_date.isoformat() if info.expiry_date
                else None, **self.blacklist_state()}

    # ---- hospital visit --------------------------------------------------------------------------------
    def register_visit(self, reader: str | None, care: str) -> dict[str, Any]:
        s = self.session(reader)
        with s.claim("register"):
            info = self._card(s, None)
            request = {"person_id": info.social_security_number, "institution": self.config.terminal.institution,
                       "care": care, "card_no": info.card_number, "card_id": info.card_id}
            entry = self._begin("register", request, person_id=info.social_security_number,
                                card_no=info.card_number, holder_name=info.name)
            visit = self._send(entry, None, lambda serial: self.centre.register_visit(serial=serial, **request),
                               reverse_on_unknown=False)
        return {"key": entry.key, **visit.model_dump(mode="json"), "name": info.name, "card_no": info.card_number}

    def _registered(self, mdtrt_id: str | None) -> Visit | None:
        """The visit as the centre answered its registration at this terminal (None if registered elsewhere)."""
        answer = self.journal.visit(mdtrt_id) if mdtrt_id else None
        return Visit.model_validate(answer) if answer else None

    def presettle(self, mdtrt_id: str, lines: list[FeeLineIn], use_account: bool) -> dict[str, Any]:
        try:
            return self.centre.presettle(mdtrt_id=mdtrt_id, lines=lines, use_account=use_account,
                                         visit=self._registered(mdtrt_id)).model_dump(mode="json")
        except SettlementError as e:
            raise from_settlement_error(e) from e

    def settle(self, reader: str | None, mdtrt_id: str, lines: list[FeeLineIn], pin: str,
               use_account: bool) -> Entry:
        """Settle a registered visit; the journal entry (confirmed, with the card record's outcome)."""
        s = self.session(reader)
        with s.claim("settle"):
            try:  # registered here: no need to ask the centre
                visit = self._registered(mdtrt_id) or self.centre.visit(mdtrt_id)
            except SettlementError as e:
                raise from_settlement_error(e) from e
            info = self._card(s, pin, authenticate=True, holder=visit.person_id, mdtrt_id=mdtrt_id)
            total = sum(x.det_item_fee_sumamt for x in lines)
            entry = self._begin(
                "settle", {"mdtrt_id": mdtrt_id, "lines": [x.model_dump() for x in lines], "use_account": use_account,
                           "card_no": info.card_number, "card_id": info.card_id},
                person_id=info.social_security_number, card_no=info.card_number, amount=total, holder_name=info.name)
            self.crashpoint("settle.journaled")
            result = self._send(entry, s, lambda serial: self.centre.settle(
                serial=serial, mdtrt_id=mdtrt_id, lines=lines, use_account=use_account, card_no=info.card_number,
                card_id=info.card_id, visit=visit), reverse_on_unknown=True)
            metrics.transactions.labels("settle", "confirmed").inc()
            self.write_card_record(s, entry, "settle", result.breakdown.model_dump())
        return self.journal.get(entry.key)

    def refund(self, setl_id: str, amount: int | None, reason: str, operator: str, reader: str | None = None
               ) -> Entry:
        """Refund all (`amount` None) or part of a settlement; the reason and who did it are journaled and go to
        the centre. Another terminal's settlement (of this hospital) needs the holder's card in the reader: the
        centre asks for it as proof."""
        if setl_id.startswith(f"{self.config.terminal.id}:"):
            return self._refund(setl_id, amount, reason, operator, None)
        s = self.session(reader)
        with s.claim("refund"):
            return self._refund(setl_id, amount, reason, operator, self._card(s, None))

    def _refund(self, setl_id: str, amount: int | None, reason: str, operator: str, card: BasicInfo | None
                ) -> Entry:
        original = self.journal.find(setl_id)
        person_id, card_no, holder = ((card.social_security_number, card.card_number, card.name) if card else
                                      (original.person_id, original.card_no, original.holder_name) if original else
                                      (None, None, None))
        entry = self._begin(
            "refund", {"setl_id": setl_id, "amount": amount}, original_key=setl_id, person_id=person_id,
            card_no=card_no, holder_name=holder, amount=amount or 0, reason=reason, operator=operator)
        shown = {"card_no": card.card_number, "card_id": card.card_id} if card else {}  # the card read, if any
        self._send(entry, None, lambda serial: self.centre.refund(
            serial=serial, setl_id=setl_id, amount=amount, reason=reason, operator=operator, **shown),
            reverse_on_unknown=False, amount_of=lambda r: r.refund.medfee_sumamt)
        metrics.transactions.labels("refund", "confirmed").inc()
        return self.journal.get(entry.key)

    # ---- pensions --------------------------------------------------------------------------------------
    def certify(self, reader: str | None, pin: str | None, biometric_score: float | None,
                modality: str | None, device_id: str | None) -> dict[str, Any]:
        s = self.session(reader)
        with s.claim("certify"):
            info = self._card(s, pin, authenticate=True)
            person = info.social_security_number
            card = {"card_no": info.card_number, "card_id": info.card_id}
            if biometric_score is not None:
                body = {"person_id": person, "method": "biometric", "score": biometric_score,
                        "modality": modality or "face", "device_id": device_id or "counter-camera", **card}
            elif pin is not None:
                body = {"person_id": person, "method": "card_pin", **card, "pin_verified": True}
            else:
                raise TerminalError("INVALID_REQUEST", "Certification needs the PIN or a biometric score.", 422)
            block = self._pin_block(s, pin, person) if body["method"] == "card_pin" and pin is not None else None
            entry = self._begin("certify", body, person_id=person, card_no=info.card_number,  # never the block
                                holder_name=info.name)
            evidence = {k: v for k, v in body.items() if k not in ("person_id", "method")}
            if block is not None:
                evidence["pin_block"] = block
            result = self._send(entry, None, lambda serial: self.centre.certify(
                serial=serial, person_id=person, method=body["method"], **evidence), reverse_on_unknown=False)
        return {"key": entry.key, **result.model_dump(mode="json")}

    def _pin_block(self, s: ReaderSession, pin: str, person_id: str) -> str | None:
        """The PIN as a PIN block (hex) for the centre's online check; None without a security module (the
        centre then has only the card's word, which a centre with an online PIN check refuses)."""
        if self.security is None:
            return None
        try:
            return self.security.pin_block(pin, pin_pan(person_id)).hex().upper()
        except SettlementError as e:  # a person id that cannot be a PAN
            raise from_settlement_error(e) from e
        except CardError as e:  # before ValueError: some transport errors are ValueErrors too
            metrics.reader_errors.labels(s.name, type(e).__name__).inc()
            raise from_card_error(e) from e
        except ValueError as e:
            raise TerminalError("INVALID_PIN_FORMAT", str(e), 422) from e

    def collect_pension(self, reader: str | None, pin: str, amount: int) -> Entry:
        """Pay out pension; the journal entry (confirmed, with the card record's outcome)."""
        s = self.session(reader)
        with s.claim("pension"):
            info = self._card(s, pin, authenticate=True)
            person = info.social_security_number
            entry = self._begin("pension_collect", {"person_id": person, "amount": amount,
                                                    "institution": self.config.terminal.institution,
                                                    "card_no": info.card_number, "card_id": info.card_id},
                                person_id=person, card_no=info.card_number, amount=amount, holder_name=info.name)
            self._send(entry, s, lambda serial: self.centre.collect_pension(
                serial=serial, person_id=person, amount=amount, institution=self.config.terminal.institution,
                card_no=info.card_number, card_id=info.card_id), reverse_on_unknown=True)
            metrics.transactions.labels("pension_collect", "confirmed").inc()
            parts = {"medfee_sumamt": amount, "fund_pay_sumamt": amount, "acct_pay": 0, "psn_cash_pay": 0}
            self.write_card_record(s, entry, "pension_collect", parts)
        return self.journal.get(entry.key)

    def pension_status(self, reader: str | None) -> dict[str, Any]:
        s = self.session(reader)
        with s.claim("pension-status"):
            info = self._card(s, None)
        try:
            pensioner = self.centre.pensioner(info.social_security_number, card_no=info.card_number)
            cert = self.centre.certification_status(info.social_security_number, card_no=info.card_number)
        except SettlementError as e:
            raise from_settlement_error(e) from e
        return {"pensioner": pensioner.model_dump(mode="json"), "certification": cert.model_dump(mode="json")}

    # ---- the card's transaction record -------------------------------------------------------------------
    def write_card_record(self, s: ReaderSession, entry: Entry, kind: str, parts: dict[str, int]) -> str:
        """Append the transaction to DF04 with a MAC. Never raises: the outcome goes to the journal."""
        if self.security is None:
            outcome = "not written: no PSAM or HSM configured"
        else:
            record = layout.TransactionRecord.build({
                "kind": layout.TRANSACTION_KINDS[kind],
                "time": self.clock.china().strftime("%Y%m%d%H%M%S"),
                "terminal_number": (self.terminal_number or "0" * 12)[:12].rjust(12, "0"),
                "serial": int(entry.request["terminal_serial"]) & 0xFFFFFFFF,
                "institution": self.config.terminal.institution[:10],
                "total": min(parts.get("medfee_sumamt", 0), 0xFFFFFFFF),
                "fund": min(parts.get("fund_pay_sumamt", 0), 0xFFFFFFFF),
                "account": min(parts.get("acct_pay", 0), 0xFFFFFFFF),
                "cash": min(parts.get("psn_cash_pay", 0), 0xFFFFFFFF),
            })
            try:
                self.crashpoint("card_record.before_write")
                s.card.append_record(self.security, layout.DF04, TX, record)
                outcome = "written"
            except CardRemoved:
                outcome = "failed: the card was removed before its record was written"
            except CardError as e:
                outcome = f"failed: {type(e).__name__}: {e}"
                metrics.reader_errors.labels(s.name, type(e).__name__).inc()
        self.journal.set_card_record(entry.key, outcome)
        return outcome
