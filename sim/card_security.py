"""The simulated card's security commands: challenge, authentication, MAC-protected writes, PIN and card
management. Mixed into `sim.card.SimCard`.

Rules the card enforces (all checks before any change; a refused command changes nothing except that
the challenge it tried to use is spent):
- GET CHALLENGE (00 84 00 00 Le, Le = 4, 8 or 16) gives a fresh random; any command that uses it spends it.
- EXTERNAL AUTHENTICATE (00 82 00 EAK Lc cryptogram): cryptogram = E(EAK, challenge as a block). Success
  opens the session's write security state; failure counts down the key's tries (63Cx, 6983 when spent).
- INTERNAL AUTHENTICATE (00 88 00 IAK Lc random Le): answers E(IAK, random).
- UPDATE RECORD (04 DC P1 P2, records addressed as READ RECORD addresses them, see sim.card) / APPEND
  RECORD (04 E2 00 P2, P2 = SFI << 3): need the external authentication (6982) and a MAC (6987 missing:
  CLA 00; 6988 wrong; 6984 no fresh challenge) under the DF's maintenance key; EF05/EF06 never change
  (6985); an item record keeps its tag and length (6700); a cyclic file's newest record becomes record 1.
- PIN UNBLOCK (84 24 00 00 04 MAC, PUK) and PIN RELOAD (84 5E 00 00 Lc PIN MAC, PRK).
- APPLICATION BLOCK (84 1E 00 P2 04 MAC, the current DF's maintenance key; no terminal authentication needed):
  P2 00 blocks it until APPLICATION UNBLOCK: a SELECT of it answers 6283 ("selected file invalidated") and
  selects it all the same, and in it every command but SELECT, GET CHALLENGE, GET RESPONSE and APPLICATION
  BLOCK/UNBLOCK answers 6A81; P2 01 blocks it for good: a SELECT of it answers 9303 and selects nothing.
- APPLICATION UNBLOCK (84 18 00 00 04 MAC, the same key) lifts a P2 00 block of the current DF.
- CARD BLOCK (84 16 00 00 04 MAC, CMK): every command answers 6A81 after.

Field evidence for the application commands: EMV Book 3 6.5.1/6.5.2 (an invalidated application answers
SELECT with 6283; APPLICATION UNBLOCK rehabilitates the current application), a Chinese CPU-card (PBOC/FMCOS)
test helper sending 841E000004 for a temporary and 841E000104 for a permanent block and 8418000004 to
unblock (github.com, an "apptest" APDU class), FMCOS's status table (9303 "application permanently locked",
6A81 "card locked"), PBOC card test scripts expecting 6988 for an APPLICATION UNBLOCK with a wrong MAC and
6700 for a short one, and an OBU card's unlock routine that selects the locked DF ignoring its status word,
then GET CHALLENGE (4 bytes) and 8418000004 + MAC under the application's key.
"""

from __future__ import annotations

import hmac
import os
from typing import TYPE_CHECKING

from cardlib.apdu import CommandAPDU
from cardlib.crypto import MAC_SIZE
from cardlib.layout import READ_ONLY_FILES, KeyType, RecordKind, maintenance_key

if TYPE_CHECKING:
    from sim.card import EF
    from sim.issuer import CardKeys

KEY_TRIES = 5


def _sw(v: int) -> bytes:
    return v.to_bytes(2, "big")


class SecurityCommands:
    """Card-side security state and commands (needs `self.keys: CardKeys | None`)."""

    keys: CardKeys | None
    blocked_card: bool
    blocked_apps: dict[str, bool]  # DF name -> blocked for good

    def _init_security(self, keys: CardKeys | None) -> None:
        self.keys = keys
        self.key_tries = {kt: KEY_TRIES for kt in KeyType}
        self.blocked_card = False
        self.blocked_apps = {}
        self._reset_security()

    def _reset_security(self) -> None:
        self.challenge: bytes | None = None
        self.ext_auth = False

    def security_handlers(self):
        return {
            (False, 0x84): self._get_challenge,
            (False, 0x82): self._external_authenticate,
            (False, 0x88): self._internal_authenticate,
            (False, 0xDC): self._update_record,
            (False, 0xE2): self._append_record,
            (True, 0x24): self._pin_unblock,
            (True, 0x1E): self._application_block,
            (True, 0x18): self._application_unblock,
            (True, 0x16): self._card_block,
        }

    def _take_challenge(self) -> bytes | None:
        ch, self.challenge = self.challenge, None
        return ch

    def _check_mac(self, cmd: CommandAPDU, kt: KeyType) -> tuple[bytes, bytes | None]:
        """(data without MAC, None) when the MAC is right, else (b"", error SW)."""
        if cmd.cla & 0x0F != 0x04:
            return b"", _sw(0x6987)
        ch = self._take_challenge()
        if ch is None:
            return b"", _sw(0x6984)
        if self.keys is None or len(cmd.data) < MAC_SIZE:
            return b"", _sw(0x6988)
        data, mac = cmd.data[:-MAC_SIZE], cmd.data[-MAC_SIZE:]
        header = bytes((cmd.cla, cmd.ins, cmd.p1, cmd.p2))
        expected = self.keys.suite.command_mac(self.keys[kt], header, data, ch)
        if not hmac.compare_digest(expected, mac):
            return b"", _sw(0x6988)
        return data, None

    # ---- challenge and authentication -------------------------------------------------------------------
    def _get_challenge(self, cmd: CommandAPDU) -> bytes:
        if cmd.p1 or cmd.p2 or cmd.data or cmd.le not in (4, 8, 16):
            return _sw(0x6A86 if (cmd.p1 or cmd.p2) else 0x6700)
        self.challenge = os.urandom(cmd.le)
        return self.challenge + b"\x90\x00"

    def _key_for(self, p2: int) -> KeyType | None:
        try:
            return KeyType(p2)
        except ValueError:
            return None

    def _external_authenticate(self, cmd: CommandAPDU) -> bytes:
        kt = self._key_for(cmd.p2)
        if kt is not KeyType.EAK or cmd.p1:
            return _sw(0x6A88)
        if self.key_tries[kt] == 0:
            return _sw(0x6983)
        ch = self._take_challenge()
        if ch is None:
            return _sw(0x6984)
        if self.keys is None:
            return _sw(0x6982)
        suite = self.keys.suite
        if len(cmd.data) != suite.block:
            return _sw(0x6700)
        if hmac.compare_digest(suite.encrypt(self.keys[kt], suite.iv(ch)), cmd.data):
            self.key_tries[kt] = KEY_TRIES
            self.ext_auth = True
            return b"\x90\x00"
        self.key_tries[kt] -= 1
        self.ext_auth = False
        return _sw(0x6983) if self.key_tries[kt] == 0 else _sw(0x63C0 | self.key_tries[kt])

    def _internal_authenticate(self, cmd: CommandAPDU) -> bytes:
        kt = self._key_for(cmd.p2)
        if kt is not KeyType.IAK or cmd.p1:
            return _sw(0x6A88)
        if self.keys is None:
            return _sw(0x6982)
        suite = self.keys.suite
        if len(cmd.data) != suite.block:
            return _sw(0x6700)
        return self._respond(cmd, suite.encrypt(self.keys[kt], cmd.data))  # type: ignore[attr-defined]

    # ---- protected writes --------------------------------------------------------------------------------
    def _protected_file(self, sfi: int) -> EF | bytes:
        ef = self._record_file(sfi)  # type: ignore[attr-defined]
        if isinstance(ef, bytes):
            return ef
        if ef.name in READ_ONLY_FILES and self.cur_df.name == "SSSE":  # type: ignore[attr-defined]
            return _sw(0x6985)
        return ef

    def _write_key(self) -> KeyType | None:
        name = self.cur_df.name  # type: ignore[attr-defined]
        return maintenance_key(name) if name.startswith("DF") else None

    def _write_gate(self, cmd: CommandAPDU, sfi: int, kind: RecordKind | None) -> tuple[EF, bytes] | bytes:
        """The checks every protected write passes, in order: the file (and its kind, if given), a maintenance
        key for the DF, the terminal authenticated, the MAC. (file, data) or the SW to answer."""
        ef = self._protected_file(sfi)
        if isinstance(ef, bytes):
            return ef
        kt = self._write_key()
        if kt is None or (kind is not None and ef.kind is not kind):
            return _sw(0x6985)
        if not self.ext_auth:
            return _sw(0x6982)
        data, err = self._check_mac(cmd, kt)
        return err if err else (ef, data)

    def _update_record(self, cmd: CommandAPDU) -> bytes:
        if not self._record_mode_ok(cmd.p1, cmd.p2 & 0x07):  # type: ignore[attr-defined]
            return _sw(0x6A86)
        gate = self._write_gate(cmd, cmd.p2 >> 3, None)
        if isinstance(gate, bytes):
            return gate
        ef, data = gate
        i = self._locate(ef, cmd.p1, cmd.p2 & 0x07)  # type: ignore[attr-defined]
        if isinstance(i, bytes):
            return i
        old = ef.records[i]
        if len(data) != len(old) or (ef.kind is RecordKind.ITEMS and data[:1] != old[:1]):
            return _sw(0x6700)
        ef.records[i] = data
        return b"\x90\x00"

    def _append_record(self, cmd: CommandAPDU) -> bytes:
        if cmd.p1 or cmd.p2 & 0x07:
            return _sw(0x6A86)
        gate = self._write_gate(cmd, cmd.p2 >> 3, RecordKind.CYCLIC)
        if isinstance(gate, bytes):
            return gate
        ef, data = gate
        if ef.record_length and len(data) != ef.record_length:
            return _sw(0x6700)
        ef.records.insert(0, data)  # cyclic: the newest is record 1, the oldest falls off
        if ef.max_records:
            del ef.records[ef.max_records :]
        return b"\x90\x00"

    # ---- PIN and blocking ----------------------------------------------------------------------------------
    def _pin_unblock(self, cmd: CommandAPDU) -> bytes:
        if cmd.cla != 0x84 or cmd.p1 or cmd.p2:
            return _sw(0x6A86)
        _data, err = self._check_mac(cmd, KeyType.PUK)
        if err:
            return err
        self.pin.unblock()  # type: ignore[attr-defined]
        return b"\x90\x00"

    def pin_reload(self, cmd: CommandAPDU) -> bytes:
        from sim.card import decode_bcd_pin

        data, err = self._check_mac(cmd, KeyType.PRK)
        if err:
            return err
        pin = decode_bcd_pin(data)
        if pin is None:
            return _sw(0x6A80)
        self.pin.set(pin)  # type: ignore[attr-defined]
        return b"\x90\x00"

    #: what an application blocked until unblocked still answers
    WHILE_BLOCKED = frozenset({0xA4, 0x84, 0xC0, 0x1E, 0x18})

    def blocked_here(self, ins: int) -> bool:
        """Whether the current DF is blocked (until unblocked) for this instruction."""
        return self.cur_df.name in self.blocked_apps and ins not in self.WHILE_BLOCKED  # type: ignore[attr-defined]

    def _application_block(self, cmd: CommandAPDU) -> bytes:
        if cmd.cla != 0x84 or cmd.p1 or cmd.p2 not in (0x00, 0x01):
            return _sw(0x6A86)
        kt = self._write_key()
        if kt is None:
            return _sw(0x6985)
        if len(cmd.data) != MAC_SIZE:
            return _sw(0x6700)
        _data, err = self._check_mac(cmd, kt)
        if err:
            return err
        self.blocked_apps[self.cur_df.name] = cmd.p2 == 0x01  # type: ignore[attr-defined]
        return b"\x90\x00"

    def _application_unblock(self, cmd: CommandAPDU) -> bytes:
        if cmd.cla != 0x84 or cmd.p1 or cmd.p2:
            return _sw(0x6A86)
        kt = self._write_key()
        if kt is None:
            return _sw(0x6985)
        if len(cmd.data) != MAC_SIZE:
            return _sw(0x6700)
        if self.blocked_apps.get(self.cur_df.name):  # type: ignore[attr-defined]
            return _sw(0x9303)
        _data, err = self._check_mac(cmd, kt)
        if err:
            return err
        self.blocked_apps.pop(self.cur_df.name, None)  # type: ignore[attr-defined]
        return b"\x90\x00"

    def _card_block(self, cmd: CommandAPDU) -> bytes:
        _data, err = self._check_mac(cmd, KeyType.CMK)
        if err:
            return err
        self.blocked_card = True
        return b"\x90\x00"
