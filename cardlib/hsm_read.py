"""The national reader interface's two-step basic-data read with the centre's HSM (iReadCardBas_HSM_Step1/2).

A terminal with no PSAM for a card (another region's keys) reads a card that wants an authenticated
terminal in two steps, with the HSM between them (field code: the national interface's ActiveX readers):

1. `card.read_basic_step1()` at the terminal: SELECT SSSE, EF05, INTERNAL AUTHENTICATE with a terminal
   random, GET CHALLENGE. It returns a `ReadState`; `state.request()` is what goes to the HSM (region code,
   ATR, algorithm, card identification code, the random and the card's answer, the challenge).
2. `hsm_step(sm, request)` wherever the HSM is reached (any cardlib SecurityModule, e.g. terminal.security.
   HsmSecurity over TCP): the HSM checks the card's internal-authentication answer (CounterfeitCard if it is
   wrong) and computes the external-authentication cryptogram for the challenge.
3. `card.read_basic_step2(state, cryptogram)` at the terminal: EXTERNAL AUTHENTICATE, then EF06; the card's
   basic data with the same tolerant decoding as read_basic().

The state is plain data (`to_dict()` / `from_dict()`, hex strings), so a reader bridge can keep it between
two HTTP calls. It stays on the terminal: only `request()` travels. The card must stay powered between the
steps (the challenge lives in its session); a card swapped in between fails EXTERNAL AUTHENTICATE.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from cardlib.apdu import CardChannel
from cardlib.crypto import suite_for
from cardlib.errors import CounterfeitCard
from cardlib.layout import EF05
from cardlib.profiles import CardProfile
from cardlib.reading import ItemRecords
from cardlib.security import SecurityModule

#: The algorithm flags reader interfaces report to the HSM (01 DES family, 03 SM4).
ALGORITHM_FLAGS = {"3DES": "01", "SM4": "03"}


@dataclass(frozen=True)
class ReadState:
    """What step 1 learnt. Hex strings throughout; `ef05` maps tag (2 hex) to [record number, value hex]."""

    card_id: str
    region_code: str
    atr: str
    suite: str
    ef05: dict[str, tuple[int | None, str]]
    random: str
    response: str
    challenge: str

    @classmethod
    def of(cls, rd: ItemRecords, atr: bytes, suite: str, random: bytes, response: bytes,
           challenge: bytes) -> ReadState:
        ef05 = {f"{tag:02X}": (got[0], got[1].hex().upper())
                for (file, tag), got in rd.records.items() if file == EF05.name and got is not None}
        card_id = ef05["01"][1]
        return cls(card_id, card_id[:6], atr.hex().upper(), suite, ef05, random.hex().upper(),
                   response.hex().upper(), challenge.hex().upper())

    @property
    def atr_bytes(self) -> bytes:
        return bytes.fromhex(self.atr)

    def request(self) -> dict[str, str]:
        """What the HSM needs: no holder data."""
        return {
            "region_code": self.region_code,
            "atr": self.atr,
            "algorithm": ALGORITHM_FLAGS[self.suite],
            "suite": self.suite,
            "card_id": self.card_id,
            "random": self.random,
            "response": self.response,
            "challenge": self.challenge,
        }

    def records(self, channel: CardChannel, profiles: Iterable[CardProfile] = ()) -> ItemRecords:
        """The EF05 records of step 1, ready for step 2 (profile chosen again, no APDU)."""
        rd = ItemRecords(channel)
        for tag, (recno, value) in self.ef05.items():
            rd.records[(EF05.name, int(tag, 16))] = (recno, bytes.fromhex(value))
        rd.identify(profiles)
        return rd

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ef05"] = {k: list(v) for k, v in self.ef05.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReadState:
        """A state back from `to_dict()`; ValueError for anything else."""
        try:
            ef05 = {str(k): (None if v[0] is None else int(v[0]), str(v[1])) for k, v in dict(d["ef05"]).items()}
            state = cls(str(d["card_id"]), str(d["region_code"]), str(d["atr"]), str(d["suite"]), ef05,
                        str(d["random"]), str(d["response"]), str(d["challenge"]))
            for h in (state.card_id, state.atr, state.random, state.response, state.challenge,
                      *(v for _, v in ef05.values()), *ef05):
                bytes.fromhex(h)
            suite_for(state.suite)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise ValueError(f"not a card read state: {e}") from e
        if "01" not in ef05 or ef05["01"][1] != state.card_id:
            raise ValueError("not a card read state: EF05 does not hold its card identification code")
        return state


def hsm_step(sm: SecurityModule, request: Mapping[str, str]) -> bytes:
    """The HSM's part: check the card's INTERNAL AUTHENTICATE answer, then the EXTERNAL AUTHENTICATE
    cryptogram for the card's challenge. CounterfeitCard when the card's answer is wrong."""
    try:
        card_id, suite = bytes.fromhex(request["card_id"]), request["suite"]
        random, response = bytes.fromhex(request["random"]), bytes.fromhex(request["response"])
        challenge = bytes.fromhex(request["challenge"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"not a card read request: {e}") from e
    if not sm.verify_internal_auth(card_id, suite, random, response):
        raise CounterfeitCard("the card's internal-authentication answer is wrong: not a genuine card")
    return sm.external_auth_cryptogram(card_id, suite, challenge)
