"""A simulated PSAM: the terminal's security module card, holding the issuer's master keys.

It answers the commands cardlib.psam documents: READ BINARY of the terminal number (SFI 16), GET
CHALLENGE, DELIVER KEY (diversify a card key into the working key), ENCRYPT and MAC with the working key,
and PIN ENCIPHER (a format-0 PIN block under the terminal PIN key). Master keys and PIN keys come from an
`Issuer` (loaded at personalisation, never readable back).
"""

from __future__ import annotations

import os
import threading

from cardlib.apdu import CommandAPDU
from cardlib.crypto import CipherSuite, CryptoError, Suite, suite_for
from cardlib.errors import MalformedResponse
from cardlib.layout import KeyType
from cardlib.psam import INS_PIN_ENCIPHER
from sim.card import make_atr
from sim.issuer import DEFAULT_ISSUER, Issuer

SUITES_BY_CODE = {0x01: Suite.DES3, 0x02: Suite.SM4}


def _sw(v: int) -> bytes:
    return v.to_bytes(2, "big")


class SimPsam:
    """The PSAM card. `terminal_number` is 12 digits."""

    def __init__(self, issuer: Issuer | None = None, terminal_number: str = "110100000001", *, t0: bool = False):
        if len(terminal_number) != 12 or not terminal_number.isdigit():
            raise ValueError("a PSAM terminal number is 12 digits")
        self._issuer = issuer or DEFAULT_ISSUER
        self.terminal_number = terminal_number
        self.atr = make_atr(t0, b"SSCARD-PSAM")
        self.present = True
        self.t0 = t0
        self._lock = threading.Lock()
        self._working: tuple[CipherSuite, bytes] | None = None

    def __repr__(self) -> str:
        return f"SimPsam({self.terminal_number})"

    def power_on(self) -> bytes:
        if not self.present:
            raise ConnectionError("PSAM removed")
        self._working = None
        return self.atr

    def power_off(self) -> None:
        self._working = None

    def reinsert(self) -> None:
        self.present = True

    def process(self, raw: bytes) -> bytes:
        if not self.present:
            raise ConnectionError("PSAM removed")
        try:
            cmd = CommandAPDU.from_bytes(raw)
        except (MalformedResponse, ValueError):
            return _sw(0x6700)
        with self._lock:
            return self._dispatch(cmd)

    def _dispatch(self, cmd: CommandAPDU) -> bytes:
        if cmd.cla == 0x00 and cmd.ins == 0xA4:
            return b"\x90\x00"
        if cmd.cla == 0x00 and cmd.ins == 0xB0:
            if cmd.p1 != 0x96 or cmd.p2 != 0:
                return _sw(0x6A82)
            data = bytes.fromhex(self.terminal_number)
            return data[: cmd.le or 6] + b"\x90\x00"
        if cmd.cla == 0x00 and cmd.ins == 0x84:
            if cmd.le not in (4, 8, 16):
                return _sw(0x6700)
            return os.urandom(cmd.le) + b"\x90\x00"
        if cmd.cla == 0x80 and cmd.ins == 0x1A:
            return self._deliver_key(cmd)
        if cmd.cla == 0x80 and cmd.ins == 0xFA:
            return self._cipher(cmd)
        if cmd.cla == 0x80 and cmd.ins == INS_PIN_ENCIPHER:
            return self._encipher_pin(cmd)
        return _sw(0x6D00)

    def _encipher_pin(self, cmd: CommandAPDU) -> bytes:
        """80 F8 00 <suite> 10 <PIN field> <PAN field>: E(PIK, PIN field XOR PAN field), see cardlib.psam."""
        suite = SUITES_BY_CODE.get(cmd.p2)
        if cmd.p1 != 0x00 or suite is None:
            return _sw(0x6A86)
        if len(cmd.data) != 16:
            return _sw(0x6700)
        pin_f, pan_f = cmd.data[:8].hex().upper(), cmd.data[8:].hex().upper()
        n = int(pin_f[1], 16)
        digits, pad = pin_f[2 : 2 + n], pin_f[2 + n :]
        if (pin_f[0] != "0" or not 4 <= n <= 12 or not digits.isdigit() or pad != "F" * len(pad)
                or not (pan_f.startswith("0000") and pan_f.isdigit())):
            return _sw(0x6A80)
        try:
            pik = self._issuer.pin_key(suite)
        except KeyError:
            return _sw(0x6A88)
        cs = suite_for(suite)
        size = cs.block
        clear = bytes(a ^ b for a, b in zip(bytes.fromhex(pin_f.ljust(2 * size, "F")),
                                            bytes.fromhex(pan_f.rjust(2 * size, "0")), strict=True))
        return cs.encrypt(pik, clear) + b"\x90\x00"

    def _deliver_key(self, cmd: CommandAPDU) -> bytes:
        try:
            kt = KeyType(cmd.p1)
            suite = SUITES_BY_CODE[cmd.p2]
        except (ValueError, KeyError):
            self._working = None
            return _sw(0x6A88)
        if len(cmd.data) != 8:
            return _sw(0x6700)
        try:
            master = self._issuer.master(suite, kt)
        except KeyError:
            self._working = None
            return _sw(0x6A88)
        cs = suite_for(suite)
        self._working = (cs, cs.diversify(master, cmd.data))
        return b"\x90\x00"

    def _cipher(self, cmd: CommandAPDU) -> bytes:
        if self._working is None:
            return _sw(0x6985)
        cs, key = self._working
        try:
            if cmd.p1 == 0x00:
                return cs.encrypt(key, cmd.data) + b"\x90\x00"
            if cmd.p1 == 0x05:
                iv, message = cmd.data[: cs.block], cmd.data[cs.block :]
                if len(iv) != cs.block:
                    return _sw(0x6700)
                return cs.mac(key, message, iv)[:4] + b"\x90\x00"
        except CryptoError:
            return _sw(0x6700)
        return _sw(0x6A86)
