"""SocialSecurityCard: the card's functions on top of a reader (read basic data, PIN, security).

It keeps track of what is selected so no SELECT is sent twice. `read_basic()` reads EF05 and EF06 by record
number (cardlib.reading): one SELECT of SSSE, the 7 EF05 records, then the EF06 records as the card's
profile numbers them (chosen from EF05's region code and spec version, cardlib.profiles): 14 APDUs on a
fresh second-generation card, 15 when the name fills its record and the 4E extension follows. The items a
counter needs are decoded strictly, the others tolerantly with named warnings (cardlib.basic).

A third-generation card may refuse EF06 (6982) until the terminal authenticates: given a security module
(`security=`, a PSAM or the centre's HSM), read_basic() then authenticates the terminal and reads on;
without one it raises AuthenticationRequired. The national interface's two-step HSM read is
`read_basic_step1()` / `hsm_step()` / `read_basic_step2()` (cardlib.hsm_read).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from cardlib import layout
from cardlib.apdu import CardChannel, CommandAPDU
from cardlib.basic import BasicInfo
from cardlib.crypto import MAC_SIZE, suite_for
from cardlib.errors import (
    ApplicationBlocked,
    ApplicationInvalidated,
    AuthenticationRequired,
    CardBlocked,
    CardError,
    CounterfeitCard,
    ExternalAuthFailed,
    FieldError,
    FunctionNotSupported,
    ItemUnreadable,
    MalformedResponse,
    PinBlocked,
    PinWrong,
    SecurityStatusNotSatisfied,
    StatusError,
    TlvError,
)
from cardlib.hsm_read import ReadState
from cardlib.layout import EF05, EF06, DataItem, KeyType, RecordFile, maintenance_key
from cardlib.profiles import CardProfile
from cardlib.readers.base import Reader
from cardlib.reading import BASE_PROFILE, ItemRecords, describe, read_record_apdu
from cardlib.security import SecurityModule
from cardlib.tlv import parse_record

INS_SELECT = 0xA4
INS_READ_RECORD = 0xB2
INS_READ_BINARY = 0xB0
INS_VERIFY = 0x20
#: CHANGE PIN as Chinese CPU cards (PBOC family) implement it: 80 5E 01 00 Lc old-PIN FF new-PIN
CLA_PROPRIETARY = 0x80
INS_CHANGE_PIN = 0x5E


def encode_pin(pin: str) -> bytes:
    """A PIN as BCD (6 digits -> 3 bytes; an odd length is padded with F). 4 to 12 digits."""
    if not isinstance(pin, str) or not (pin.isascii() and pin.isdigit()) or not 4 <= len(pin) <= 12:
        raise ValueError("a PIN is 4 to 12 digits")
    return bytes.fromhex(pin + ("F" if len(pin) % 2 else ""))


class SocialSecurityCard:
    """A social security card in `reader`. Connects on first use, unless `connected` says the reader already is."""

    def __init__(self, reader: Reader, *, channel: CardChannel | None = None, connected: bool = False,
                 security: SecurityModule | None = None, profiles: Iterable[CardProfile] = ()) -> None:
        self.reader = reader
        self.channel = channel or CardChannel(reader)
        self.security = security  # what read_basic() authenticates with when a card asks for it
        self.profiles = tuple(profiles)  # regional profiles besides the built-in ones
        self.profile: CardProfile | None = None  # the card's profile, once EF05 was read
        self._selected: str | None = None
        self._connected = connected
        self._ident: tuple[bytes, str] | None = None  # (card id, suite), learnt from EF05

    # ---- session -------------------------------------------------------------------------------------
    def connect(self) -> bytes:
        atr = self.reader.connect()
        self._connected = True
        self._selected = None
        self._ident = None
        self.profile = None
        return atr

    def _ensure(self) -> None:
        if not self._connected:
            self.connect()

    def disconnect(self) -> None:
        self.reader.disconnect()
        self._connected = False
        self._selected = None

    @property
    def apdu_count(self) -> int:
        return self.channel.apdu_count

    def forget_selection(self) -> None:
        """Assume nothing about the current DF (e.g. another program used the card): the next access selects."""
        self._selected = None

    # ---- file selection ------------------------------------------------------------------------------
    def select_ssse(self) -> None:
        """SELECT the SSSE application by AID (skipped when it is already the current DF)."""
        self._ensure()
        if self._selected == "SSSE":
            return
        try:
            self.channel.check(CommandAPDU(0x00, INS_SELECT, 0x04, 0x00, layout.SSSE_AID))
        except FunctionNotSupported as e:
            raise CardBlocked("the card is blocked (SELECT SSSE answered 6A81)") from e
        self._selected = "SSSE"

    def select_file(self, fid: int, path_name: str | None = None) -> None:
        """SELECT a file by FID under the current DF (00 A4 00 00 02 FID)."""
        self._ensure()
        name = path_name or f"{fid:04X}"
        self.channel.check(CommandAPDU(0x00, INS_SELECT, 0x00, 0x00, fid.to_bytes(2, "big")))
        self._selected = name

    def select_application(self, df: layout.DedicatedFile) -> None:
        """SELECT SSSE, then one of DF01..DF04."""
        if self._selected == df.name:
            return
        self.select_ssse()
        try:
            self.select_file(df.fid, df.name)
        except ApplicationBlocked as e:
            raise CardBlocked(f"application {df.name} is blocked for good") from e
        except ApplicationInvalidated as e:
            self._selected = None
            raise CardBlocked(f"application {df.name} is blocked (until the issuer unblocks it)",
                              until_unblocked=True) from e

    # ---- records -------------------------------------------------------------------------------------
    def _numbering(self, file: RecordFile) -> CardProfile:
        """The profile that numbers `file`'s records: EF06 depends on the card (learnt from EF05 once)."""
        if file is EF06 and self.profile is None:
            self.identity()
        return self.profile if file is EF06 and self.profile else BASE_PROFILE

    def read_item(self, file: RecordFile, name: str | DataItem) -> Any:
        """READ RECORD of one item by its record number via the file's SFI (its application must be selected),
        decoded strictly by the layout. Errors name the file, record and tag."""
        item = name if isinstance(name, DataItem) else file.item(name)
        self._ensure()
        profile = self._numbering(file)
        if not profile.has(item):
            raise ItemUnreadable(f"cards of profile {profile.name} do not have it", file=file.name, record=None,
                                 tag=item.tag, item=item.name)
        recno = profile.record_number(file, item)
        raw = read_record_apdu(self.channel, recno, file.p2_sfi, 2 + item.length, lambda: describe(file, recno, item))
        try:
            _tag, value = parse_record(raw, expected_tag=item.tag)
            if len(value) != item.length:
                raise FieldError(f"{len(value)} bytes, layout says {item.length}")
            return item.fmt.parse(value)
        except (TlvError, FieldError) as e:
            raise ItemUnreadable(str(e), file=file.name, record=recno, tag=item.tag, item=item.name, raw=raw) from e

    def read_record(self, sfi: int, number: int, le: int = 256) -> bytes:
        """READ RECORD number `number` of the file with `sfi` (raw record, e.g. DF04 transactions)."""
        self._ensure()
        return read_record_apdu(self.channel, number, (sfi << 3) | 4, le, lambda: f"SFI {sfi:02X} record {number}")

    def read_binary(self, offset: int = 0, le: int = 256) -> bytes:
        """READ BINARY from the current transparent file."""
        self._ensure()
        if not 0 <= offset <= 0x7FFF:
            raise ValueError(f"offset out of range: {offset}")
        return self.channel.check(CommandAPDU(0x00, INS_READ_BINARY, offset >> 8, offset & 0xFF, b"", le))

    def _read_issuer_data(self) -> ItemRecords:
        """SELECT SSSE and read EF05; the card's profile chosen from it."""
        self.select_ssse()
        rd = ItemRecords(self.channel)
        rd.fetch(EF05, EF05.items)
        card_id, profile = rd.identify(self.profiles)
        self.profile, self._ident = profile, (card_id, profile.suite)
        return rd

    def _read_holder_data(self, rd: ItemRecords, sm: SecurityModule | None, authenticated: bool) -> None:
        """EF06; on 6982, authenticate the terminal with `sm` once and read on."""
        if rd.profile.authenticate_first and sm is not None and not authenticated:
            self.authenticate_terminal(sm)
            authenticated = True
        try:
            rd.fetch_holder()
        except SecurityStatusNotSatisfied as e:
            if sm is None:
                raise AuthenticationRequired(e.sw, f"{e.message}: the card shows its holder data only to an "
                                             "authenticated terminal; read it with a PSAM or the centre's HSM") from e
            if authenticated:
                raise AuthenticationRequired(e.sw, f"{e.message}, even after the terminal authenticated") from e
            self.authenticate_terminal(sm)
            self._read_holder_data(rd, sm, True)
        self.profile = rd.profile

    def read_basic(self, security: SecurityModule | None = None) -> BasicInfo:
        """Read EF05 and EF06 into a BasicInfo (14 APDUs on a fresh second-generation card). `security`
        (default: the card's `security`) authenticates the terminal when the card refuses EF06 (6982)."""
        sm = security if security is not None else self.security
        rd = self._read_issuer_data()
        self._read_holder_data(rd, sm, False)
        return rd.basic_info(self.reader.atr)

    # ---- the national interface's two-step HSM read (iReadCardBas_HSM_Step1/Step2) -----------------------
    def read_basic_step1(self, random: bytes | None = None) -> ReadState:
        """Step 1 at the terminal: EF05, the card's INTERNAL AUTHENTICATE answer to a terminal random, and a
        fresh challenge. The returned state holds what the HSM needs (`state.request()`); keep it on the
        terminal and leave the card in the reader until step 2. `random` defaults to os.urandom."""
        rd = self._read_issuer_data()
        card_id, suite = self.identity()
        block = suite_for(suite).block
        random = os.urandom(block) if random is None else random
        if len(random) != block:
            raise ValueError(f"a {suite} terminal random is {block} bytes")
        response = self.channel.check(CommandAPDU(0x00, 0x88, 0x00, KeyType.IAK.value, random, len(random)))
        challenge = self.get_challenge(block)
        return ReadState.of(rd, self.reader.atr, suite, random, response, challenge)

    def read_basic_step2(self, state: ReadState, cryptogram: bytes) -> BasicInfo:
        """Step 2 at the terminal, with the HSM's external-authentication cryptogram (cardlib.hsm_read.hsm_step):
        EXTERNAL AUTHENTICATE, then EF06. The card must not have been reset since step 1."""
        rd = state.records(self.channel, self.profiles)
        self.profile, self._ident = rd.profile, (bytes.fromhex(state.card_id), state.suite)
        self._selected = "SSSE"
        self._external_authenticate(cryptogram)
        self._read_holder_data(rd, None, True)
        return rd.basic_info(state.atr_bytes)

    # ---- PIN -----------------------------------------------------------------------------------------
    def verify_pin(self, pin: str) -> None:
        """VERIFY the holder's PIN. Raises PinWrong (with .tries_left) or PinBlocked."""
        data = encode_pin(pin)
        self.select_ssse()
        self.channel.check(CommandAPDU(0x00, INS_VERIFY, 0x00, 0x00, data))

    def pin_tries_left(self) -> int:
        """Tries left without consuming one (VERIFY with no data: 63Cx, 9000 when already verified)."""
        self.select_ssse()
        resp = self.channel.send(CommandAPDU(0x00, INS_VERIFY, 0x00, 0x00))
        if resp.sw & 0xFFF0 == 0x63C0:
            return resp.sw & 0x0F
        if resp.sw == 0x6983:
            return 0
        if resp.ok:
            return -1  # already verified in this session; the card does not say the count
        resp.check()
        raise CardError(f"unexpected answer to a PIN status query: {resp.sw:04X}")  # pragma: no cover

    def change_pin(self, old: str, new: str) -> None:
        """Change the PIN (80 5E 01 00 old FF new). Raises PinWrong / PinBlocked on a wrong old PIN."""
        data = encode_pin(old) + b"\xff" + encode_pin(new)
        self.select_ssse()
        self.channel.check(CommandAPDU(CLA_PROPRIETARY, INS_CHANGE_PIN, 0x01, 0x00, data))

    # ---- security (needs a PSAM or the HSM: see cardlib.security) ------------------------------------
    def identity(self) -> tuple[bytes, str]:
        """(card identification code, cipher suite): read from EF05 once per session."""
        if self._ident is None:
            self.select_ssse()
            card_id, profile = ItemRecords(self.channel).identify(self.profiles)
            self.profile, self._ident = profile, (card_id, profile.suite)
        return self._ident

    def get_challenge(self, n: int) -> bytes:
        self._ensure()
        ch = self.channel.check(CommandAPDU(0x00, 0x84, 0x00, 0x00, b"", n))
        if len(ch) != n:
            raise MalformedResponse(f"card gave a {len(ch)}-byte challenge, asked {n}")
        return ch

    def authenticate_terminal(self, sm: SecurityModule) -> None:
        """EXTERNAL AUTHENTICATE: the security module proves the terminal; opens protected reads and writes."""
        card_id, suite = self.identity()
        challenge = self.get_challenge(suite_for(suite).block)
        self._external_authenticate(sm.external_auth_cryptogram(card_id, suite, challenge))

    def _external_authenticate(self, cryptogram: bytes) -> None:
        try:
            self.channel.check(CommandAPDU(0x00, 0x82, 0x00, KeyType.EAK.value, cryptogram))
        except PinWrong as e:  # 63Cx on a key: tries left before the card locks it
            raise ExternalAuthFailed(f"card rejected the terminal's cryptogram, {e.tries_left} tries left",
                                     e.tries_left) from e
        except PinBlocked as e:
            raise ExternalAuthFailed("the card's external-authentication key is locked", 0) from e

    def authenticate_card(self, sm: SecurityModule) -> None:
        """INTERNAL AUTHENTICATE: the card proves it holds the issuer's keys; CounterfeitCard if not."""
        card_id, suite = self.identity()
        random = sm.terminal_random(suite)
        response = self.channel.check(CommandAPDU(0x00, 0x88, 0x00, KeyType.IAK.value, random, len(random)))
        if not sm.verify_internal_auth(card_id, suite, random, response):
            raise CounterfeitCard("the card's internal-authentication answer is wrong: not a genuine card")

    def authenticate(self, sm: SecurityModule) -> None:
        """Mutual authentication: the card first (catch counterfeits), then the terminal."""
        self.authenticate_card(sm)
        self.authenticate_terminal(sm)

    def _protected(self, sm: SecurityModule, key: KeyType, cla: int, ins: int, p1: int, p2: int,
                   data: bytes) -> None:
        card_id, suite = self.identity()
        challenge = self.get_challenge(suite_for(suite).block)
        header = bytes((cla, ins, p1, p2))
        mac = sm.command_mac(key, card_id, suite, challenge, header, data)
        if len(mac) != MAC_SIZE:
            raise MalformedResponse(f"security module gave a {len(mac)}-byte MAC")
        self.channel.check(CommandAPDU(cla, ins, p1, p2, data + mac))

    def append_record(self, sm: SecurityModule, df: layout.DedicatedFile, file: RecordFile, record: bytes) -> None:
        """APPEND RECORD with a MAC to a cyclic file of `df` (after `authenticate_terminal`)."""
        self.identity()
        self.select_application(df)
        self._protected(sm, maintenance_key(df.name), 0x04, 0xE2, 0x00, file.sfi << 3, record)

    def update_record(self, sm: SecurityModule, df: layout.DedicatedFile, file: RecordFile, p1: int,
                      record: bytes) -> None:
        """UPDATE RECORD number `p1` with a MAC (an item file's record numbers: `BASE_PROFILE.record_number`)."""
        self.identity()
        self.select_application(df)
        self._protected(sm, maintenance_key(df.name), 0x04, 0xDC, p1, file.p2_sfi, record)

    def unblock_pin(self, sm: SecurityModule) -> None:
        """PIN UNBLOCK under the issuer's PIN-unblock key: the retry counter is full again."""
        self.identity()
        self.select_ssse()
        self._protected(sm, KeyType.PUK, 0x84, 0x24, 0x00, 0x00, b"")

    def reload_pin(self, sm: SecurityModule, new_pin: str) -> None:
        """PIN RELOAD under the issuer's PIN-reload key: sets a new PIN without the old one."""
        data = encode_pin(new_pin)
        self.identity()
        self.select_ssse()
        self._protected(sm, KeyType.PRK, 0x84, 0x5E, 0x00, 0x00, data)

    def block_application(self, sm: SecurityModule, df: layout.DedicatedFile, *, permanent: bool = False) -> None:
        """APPLICATION BLOCK (84 1E 00 P2, MAC under the application's maintenance key): P2 00 until the issuer
        unblocks it (SELECT then answers 6283), 01 for good (9303). Needs no terminal authentication."""
        self.identity()
        self.select_application(df)
        self._protected(sm, maintenance_key(df.name), 0x84, 0x1E, 0x00, 0x01 if permanent else 0x00, b"")
        self._selected = None

    def application_blocked(self, df: layout.DedicatedFile) -> bool:
        """Whether `df` is blocked until unblocked (SELECT answers 6283); CardBlocked if it is blocked for good."""
        self.select_ssse()
        resp = self.channel.send(CommandAPDU(0x00, INS_SELECT, 0x00, 0x00, df.fid.to_bytes(2, "big")))
        self._selected = df.name if resp.ok else None
        if resp.sw == 0x6283:
            return True
        if resp.sw == 0x9303:
            raise CardBlocked(f"application {df.name} is blocked for good")
        resp.check()
        return False

    def unblock_application(self, sm: SecurityModule, df: layout.DedicatedFile) -> bool:
        """APPLICATION UNBLOCK (84 18 00 00, MAC under the application's maintenance key) of an application
        blocked until unblocked: SELECT it (6283: it is selected all the same), then the command. False when the
        application was not blocked (nothing sent); CardBlocked when it is blocked for good."""
        self.identity()
        if not self.application_blocked(df):
            return False
        self._protected(sm, maintenance_key(df.name), 0x84, 0x18, 0x00, 0x00, b"")
        self._selected = None
        return True

    def block_card(self, sm: SecurityModule) -> None:
        self.identity()
        self.select_ssse()
        self._protected(sm, KeyType.CMK, 0x84, 0x16, 0x00, 0x00, b"")
        self._selected = None


__all__ = ["BasicInfo", "ReadState", "SocialSecurityCard", "StatusError", "encode_pin"]
