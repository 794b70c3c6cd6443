"""SocialSecurityCard: the card's functions on top of a reader (read basic data, PIN).

It keeps track of what is selected so no SELECT is sent twice: `read_basic()` costs one SELECT of SSSE and
one READ RECORD per item (14 APDUs on a fresh card, 13 after). Every reply is checked against the layout
(tag, length, format); a card that answers anything else raises MalformedResponse naming the item.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

from cardlib import layout
from cardlib.apdu import CardChannel, CommandAPDU
from cardlib.crypto import MAC_SIZE, suite_for
from cardlib.errors import (
    ApplicationBlocked,
    CardBlocked,
    CardError,
    CounterfeitCard,
    ExternalAuthFailed,
    FieldError,
    FunctionNotSupported,
    MalformedResponse,
    PinBlocked,
    PinWrong,
    StatusError,
    TlvError,
)
from cardlib.layout import DataItem, KeyType, RecordFile, maintenance_key, suite_for_spec
from cardlib.readers.base import Reader, historical_bytes
from cardlib.security import SecurityModule
from cardlib.tlv import parse_record

INS_SELECT = 0xA4
INS_READ_RECORD = 0xB2
INS_READ_BINARY = 0xB0
INS_VERIFY = 0x20
#: CHANGE PIN as Chinese CPU cards (PBOC family) implement it: 80 5E 01 00 Lc old-PIN FF new-PIN
CLA_PROPRIETARY = 0x80
INS_CHANGE_PIN = 0x5E


@dataclass(frozen=True)
class BasicInfo:
    """The card's basic data (EF05 + EF06) plus the region code and the ATR."""

    card_id: str  # 卡识别码, 32 hex digits
    card_type: str
    spec_version: str
    issuer_code: str
    issue_date: dt.date
    expiry_date: dt.date
    card_number: str  # 卡号
    social_security_number: str
    name: str
    sex: str
    nation: str
    birth_place: str
    birth_date: dt.date
    region_code: str  # 区号: first 6 hex digits of the card identification code
    atr: bytes

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, dt.date):
                d[k] = v.isoformat()
        d["atr"] = self.atr.hex().upper()
        return d

    def national(self, terminal_number: str = "", device_number: str = "") -> str:
        """The national reader-interface basic-data string: 11 fields, each followed by '|'.

        区号|社会保障号码|卡号|卡识别码|姓名|卡复位信息|规范版本|发卡日期|卡有效期|终端机编号|终端设备号|
        卡复位信息 is the ATR's historical bytes in hex; dates are YYYYMMDD; 终端机编号 is the PSAM's
        12-digit terminal number.
        """
        fields = [
            self.region_code,
            self.social_security_number,
            self.card_number,
            self.card_id,
            self.name,
            historical_bytes(self.atr).hex().upper(),
            self.spec_version,
            self.issue_date.strftime("%Y%m%d"),
            self.expiry_date.strftime("%Y%m%d"),
            terminal_number,
            device_number,
        ]
        return "".join(f"{f}|" for f in fields)


_BASIC = tuple((f, f.item(name)) for f, name in layout.BASIC_ITEMS)


def encode_pin(pin: str) -> bytes:
    """A PIN as BCD (6 digits -> 3 bytes; an odd length is padded with F). 4 to 12 digits."""
    if not isinstance(pin, str) or not (pin.isascii() and pin.isdigit()) or not 4 <= len(pin) <= 12:
        raise ValueError("a PIN is 4 to 12 digits")
    return bytes.fromhex(pin + ("F" if len(pin) % 2 else ""))


class SocialSecurityCard:
    """A social security card in `reader`. Connects on first use, unless `connected` says the reader already is."""

    def __init__(self, reader: Reader, *, channel: CardChannel | None = None, connected: bool = False) -> None:
        self.reader = reader
        self.channel = channel or CardChannel(reader)
        self._selected: str | None = None
        self._connected = connected
        self._ident: tuple[bytes, str] | None = None  # (card id, suite), learnt from EF05

    # ---- session -------------------------------------------------------------------------------------
    def connect(self) -> bytes:
        atr = self.reader.connect()
        self._connected = True
        self._selected = None
        self._ident = None
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
            raise CardBlocked(f"application {df.name} is blocked") from e

    # ---- records -------------------------------------------------------------------------------------
    def _decode_item(self, file: RecordFile, item: DataItem, raw: bytes) -> Any:
        where = f"{file.name} item {item.tag:02X} ({item.name})"
        try:
            _tag, value = parse_record(raw, expected_tag=item.tag)
        except TlvError as e:
            raise MalformedResponse(f"{where}: {e}") from e
        if len(value) != item.length:
            raise MalformedResponse(f"{where}: {len(value)} bytes, layout says {item.length}")
        try:
            return item.fmt.parse(value)
        except FieldError as e:
            raise MalformedResponse(f"{where}: {e}") from e

    def read_item(self, file: RecordFile, name: str | DataItem) -> Any:
        """READ RECORD of one data item by tag via the file's SFI (SSSE must be selected)."""
        item = name if isinstance(name, DataItem) else file.item(name)
        raw = self.channel.check(CommandAPDU(0x00, INS_READ_RECORD, item.tag, file.p2_sfi, b"", 2 + item.length))
        return self._decode_item(file, item, raw)

    def read_item_current(self, file: RecordFile, name: str) -> Any:
        """READ RECORD of one data item by tag from the current file (select `file` first)."""
        item = file.item(name)
        raw = self.channel.check(CommandAPDU(0x00, INS_READ_RECORD, item.tag, 0x04, b"", 2 + item.length))
        return self._decode_item(file, item, raw)

    def read_record(self, sfi: int, number: int, le: int = 256) -> bytes:
        """READ RECORD number `number` of the file with `sfi` (raw record, e.g. DF04 transactions)."""
        self._ensure()
        return self.channel.check(CommandAPDU(0x00, INS_READ_RECORD, number, (sfi << 3) | 4, b"", le))

    def read_binary(self, offset: int = 0, le: int = 256) -> bytes:
        """READ BINARY from the current transparent file."""
        self._ensure()
        if not 0 <= offset <= 0x7FFF:
            raise ValueError(f"offset out of range: {offset}")
        return self.channel.check(CommandAPDU(0x00, INS_READ_BINARY, offset >> 8, offset & 0xFF, b"", le))

    def read_basic(self) -> BasicInfo:
        """Read EF05 and EF06 into a BasicInfo (1 SELECT + 13 READ RECORDs on a fresh card)."""
        self.select_ssse()
        values: dict[str, Any] = {}
        for file, item in _BASIC:
            values[item.name] = self.read_item(file, item)
        self._ident = (values["card_id"], suite_for_spec(values["spec_version"]))
        card_id = values["card_id"].hex().upper()
        values["card_id"] = card_id
        return BasicInfo(region_code=card_id[:6], atr=self.reader.atr, **values)

    def read_name_extension(self, spec_version: str) -> str:
        """The name extension (tag 4E, since spec 2.00); '' on version 1 cards, which lack the record."""
        if layout.EF06.item("name_extension") not in layout.EF06.items_for(spec_version):
            return ""
        self.select_ssse()
        return self.read_item(layout.EF06, "name_extension")

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
            card_id = self.read_item(layout.EF05, "card_id")
            spec = self.read_item(layout.EF05, "spec_version")
            self._ident = (card_id, suite_for_spec(spec))
        return self._ident

    def get_challenge(self, n: int) -> bytes:
        self._ensure()
        ch = self.channel.check(CommandAPDU(0x00, 0x84, 0x00, 0x00, b"", n))
        if len(ch) != n:
            raise MalformedResponse(f"card gave a {len(ch)}-byte challenge, asked {n}")
        return ch

    def authenticate_terminal(self, sm: SecurityModule) -> None:
        """EXTERNAL AUTHENTICATE: the security module proves the terminal; opens protected writes."""
        card_id, suite = self.identity()
        challenge = self.get_challenge(suite_for(suite).block)
        cryptogram = sm.external_auth_cryptogram(card_id, suite, challenge)
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
        """UPDATE RECORD with a MAC: P1 is the record number (NUMBER files) or the item tag (TAG files)."""
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

    def block_application(self, sm: SecurityModule, df: layout.DedicatedFile) -> None:
        self.identity()
        self.select_application(df)
        self._protected(sm, maintenance_key(df.name), 0x84, 0x1E, 0x00, 0x00, b"")
        self._selected = None

    def block_card(self, sm: SecurityModule) -> None:
        self.identity()
        self.select_ssse()
        self._protected(sm, KeyType.CMK, 0x84, 0x16, 0x00, 0x00, b"")
        self._selected = None


__all__ = ["BasicInfo", "SocialSecurityCard", "StatusError", "encode_pin"]
