"""The small protocols through which the schemes reach each other, wired once by `engine.Engine`.

A scheme never holds another scheme (or the engine): it receives what it asks of the others as one of
these, e.g. medical settlements and pension collections ask `FraudChecks` to flag card use and refused
attempts; identity tells `PensionHooks` about a passed certification; pensions ask `CertificationCheck`
whether a person is certified; every transaction asks `CardCheck` whether the card presented is the
person's active card.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Protocol

from settlement.errors import SettlementError
from settlement.ledger import Tx
from settlement.wire import Flag, Person


class FraudChecks(Protocol):
    """Fraud detection, called by the flows (settlement/schemes/fraud.py implements it)."""

    def check_card_uses(self, tx: Tx, uses: list[tuple[str, str, str]], at: dt.datetime) -> None:
        """In a batch of settlements' unit: for each (person, institution, key), flag the person's settlements at
        another institution in the window."""

    def check_enrolments(self, tx: Tx, person_id: str) -> str | None:
        """In an enrolment's unit: flag a person active in two or more regions; the flag id if it is new."""

    def record_death_attempt(self, what: str, error: SettlementError) -> None:
        """After a request refused with DEATH_REPORTED: keep a flag of the attempt (its own unit)."""

    def scan(self, person_id: str | None = None) -> list[Flag]:
        """Run every detector (over one person, or all); return the new flags."""


class PensionHooks(Protocol):
    """What the pension scheme is told by identity and the registry (settlement/schemes/pension.py)."""

    def status_code(self, tx: Tx, person_id: str) -> int | None:
        """The benefit status code (1 normal .. 4), None for a person who is not a pensioner."""

    def on_death(self, tx: Tx, person_id: str, *, actor: str) -> None:
        """In the death report's unit: suspend the pension."""

    def after_certification(self, tx: Tx, person: Person, method: str, *, actor: str, key: str) -> int | None:
        """In a passed certification's unit: resume what the certification resumes; the status code after."""


class CertificationCheck(Protocol):
    """Whether a person holds a valid eligibility certification (settlement/schemes/identity.py)."""

    def is_certified(self, tx: Tx, person_id: str, on: dt.date | None = None) -> bool:
        """True if the person's latest passed certification is valid on `on` (default: today)."""

    def certified(self, tx: Tx, person_ids: Iterable[str], on: dt.date | None = None) -> set[str]:
        """Those of `person_ids` certified on `on` (default: today), with one query."""


class CardCheck(Protocol):
    """The card registry, as the other schemes use it (settlement/schemes/cards.py)."""

    def check(self, tx: Tx, person_id: str, *, card_id: str | None = None, card_no: str | None = None) -> None:
        """In a transaction's unit: raise the typed refusal unless the card presented (identification code
        and/or number; none: nothing to check) is the person's active card."""

    def refusals(self, tx: Tx, asks: Sequence[tuple[str, str | None, str | None]]) -> list[SettlementError | None]:
        """In a batch's unit: for each (person_id, card_id, card_no) presented, the typed refusal or None; the
        batch's cards are read once."""

    def adopt(self, tx: Tx, person_id: str, card_no: str) -> None:
        """In add_person's unit: record the card number given with a new person as its card."""
