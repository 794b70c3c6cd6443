"""Who may do what at the centre: the scoping rules the service applies to every terminal (issue 12).

A terminal key belongs to one institution; an operator key to none (settlement/api/auth.py). Each rule
refuses with a typed error that names it in `details["rule"]`, before anything is written:

own_institution  a terminal registers, pre-settles, settles, refunds and collects pensions only at its own
                 institution, and reads a visit only if its institution holds it.      OTHER_INSTITUTION
own_key          a void (medical or pension) and a lookup of a settlement or posting name a key the terminal
                 issued itself (`<terminal id>:<serial>`): nobody tombstones another terminal's next serial.
                 A refund of another terminal's settlement (same institution) needs `card_proof` and a
                 `reason`.                                                            NOT_OWN_KEY
card_proof       person data (name, card number, balances, accumulators, certification and pension status)
                 and every act on a person (register a visit, certify, collect a pension) need the person's
                 card: its card number, read from the card in the same flow, sent in the request's `card_no`
                 (or the `X-Card-No` header, for reads), the person's active card in the card registry.
                                                                   CARD_PROOF_REQUIRED / CARD_PROOF_MISMATCH
reason           an operator's void or refund, and a refund of another terminal's settlement, carry a reason;
                 it is kept with who did it, and written to the person's audit trail.  REASON_REQUIRED
The operator may act for every institution and every key, but voids and refunds only with a reason.
"""

from __future__ import annotations

from settlement.api.auth import TerminalKey
from settlement.errors import (
    CardNotPersons,
    CardProofMismatch,
    CardProofRequired,
    NotOwnKey,
    OtherInstitution,
    ReasonRequired,
    UnknownCard,
    UnknownPerson,
)
from settlement.ledger import issued_by
from settlement.schemes.engine import Engine

CARD_HEADER = "X-Card-No"


def own_institution(t: TerminalKey, institution: str | None) -> None:
    """The terminal acts at `institution` (an operator anywhere)."""
    if not t.operator and institution != t.institution:
        raise OtherInstitution(f"terminal {t.terminal_id} acts for institution {t.institution}, not {institution}",
                               rule="own_institution", terminal_id=t.terminal_id, institution=institution)


def own_key(t: TerminalKey, key: str) -> None:
    """`key` was issued by this terminal (an operator may name any)."""
    if not t.operator and not issued_by(key, t.terminal_id):
        raise NotOwnKey(f"terminal {t.terminal_id} may only void or look up keys it issued "
                        f"({t.terminal_id}:<serial>)", rule="own_key", terminal_id=t.terminal_id, key=key)


def reason_given(t: TerminalKey, reason: str | None, what: str) -> None:
    if not reason:
        who = "an operator" if t.operator else f"terminal {t.terminal_id}"
        raise ReasonRequired(f"{what} by {who} needs a reason", rule="reason", terminal_id=t.terminal_id)


def card_proof(engine: Engine, t: TerminalKey, person_id: str, card_no: str | None, card_id: str | None = None
               ) -> None:
    """The terminal holds the person's card: the card shown (`card_no` and/or `card_id`, as read from it) is the
    person's active card in the card registry (settlement/schemes/cards.py; operators need none). A card that is
    not the person's, an unknown card and an unknown person all get the same CARD_PROOF_MISMATCH (a terminal
    learns nothing of who is enrolled); the person's own card that is lost, cancelled, replaced or expired gets
    the registry's own refusal."""
    if t.operator:
        return
    card_shown(t, person_id, card_no, card_id)
    try:
        engine.cards.proof(person_id, card_id=card_id, card_no=card_no)
    except (UnknownCard, CardNotPersons) as e:
        raise not_the_card(t, person_id, card_no or card_id, e) from None


NOT_THE_CARD = (UnknownCard, CardNotPersons, UnknownPerson)
"""What a flow that checks the card in its own batch (register, collect) raises for a card not the person's."""


def card_shown(t: TerminalKey, person_id: str, card_no: str | None, card_id: str | None) -> None:
    """The request carries the person's card (`card_no` and/or `card_id`), for a flow that checks it is the
    person's active card in its own batch, with the registry's refusals (`not_the_card` words them)."""
    if not t.operator and not card_no and not card_id:
        raise CardProofRequired(f"data of person {person_id} and acts on them need the person's card: send the "
                                f"card number read from it (card_no or {CARD_HEADER})", rule="card_proof",
                                person_id=person_id)


def not_the_card(t: TerminalKey, person_id: str, card: str | None, e: Exception) -> Exception:
    """A flow's refusal of the card shown (one of NOT_THE_CARD), as a terminal is told it: CARD_PROOF_MISMATCH
    for another person's card, an unknown card and an unknown person alike (an operator gets the flow's own)."""
    if t.operator:
        return e
    return CardProofMismatch(f"card {card} is not the card on record for person {person_id}", rule="card_proof",
                             person_id=person_id)


def void(t: TerminalKey, key: str, reason: str | None) -> None:
    """A void (medical or pension) of `key`: its own terminal's, or an operator's with a reason."""
    own_key(t, key)
    if t.operator:
        reason_given(t, reason, "a void")


def refund(engine: Engine, t: TerminalKey, setl_id: str, card_no: str | None, card_id: str | None,
           reason: str | None) -> None:
    """A refund: by the settlement's own terminal; by another terminal of its institution with the holder's
    card and a reason; by an operator with a reason."""
    if t.operator:
        reason_given(t, reason, "a refund")
        return
    if issued_by(setl_id, t.terminal_id):
        return
    record = engine.medical.settlement(setl_id)
    own_institution(t, record.institution)
    card_proof(engine, t, record.person_id or "", card_no, card_id)
    reason_given(t, reason, "a refund of another terminal's settlement")
