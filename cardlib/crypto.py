"""The card's cipher suites on `cryptography`: 3DES (second-generation cards) and SM4 (third generation).

The terminal side needs these to check what a PSAM or HSM computed and the simulator needs them to be a
card; the mock HSM has its own copy (hsm_mock knows no cards), and tests hold both to the same answers.

Exactly (E = block encryption under the named key, ECB; all keys 16 bytes):

- padding: ISO 9797-1 method 2 (80 then 00s to a whole block, always added);
- 3DES MAC: ISO 9797-1 MAC algorithm 3 ("retail MAC"), K = KL || KR, CBC with single DES under KL from
  the IV, the last block through 3DES-EDE(K); SM4 MAC: SM4-CBC from the IV, the last block. Card commands
  carry the first 4 bytes;
- diversification: card key = E(MK, D || ~D) with D an 8-byte factor taken from the card identification
  code (for 3DES that is E(MK, D) || E(MK, ~D)); which bytes form D is `factor()`'s `offset`;
- a protected command's MAC covers CLA INS P1 P2 Lc data (Lc counting the 4 MAC bytes), with the card's
  fresh challenge as IV: 8 bytes for 3DES, 16 for SM4 (an 8-byte challenge is padded with 00s).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.hazmat.primitives.ciphers.algorithms import SM4

from cardlib.errors import CardError

KEY_SIZE = 16
MAC_SIZE = 4


class CryptoError(CardError, ValueError):
    """A key, factor, IV or block of the wrong size."""


class Suite(StrEnum):
    DES3 = "3DES"
    SM4 = "SM4"


def pad(data: bytes, block: int) -> bytes:
    """ISO 9797-1 padding method 2."""
    return data + b"\x80" + bytes(-(len(data) + 1) % block)


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def _ecb(algorithm, data: bytes, decrypt: bool = False) -> bytes:
    c = Cipher(algorithm, modes.ECB())
    op = c.decryptor() if decrypt else c.encryptor()
    return op.update(data) + op.finalize()


@dataclass(frozen=True)
class CipherSuite:
    suite: Suite
    block: int

    @property
    def challenge_size(self) -> int:
        return self.block

    def _check_key(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise CryptoError(f"{self.suite} keys are {KEY_SIZE} bytes, got {len(key)}")

    def _alg(self, key: bytes):
        return TripleDES(key + key[:8]) if self.suite is Suite.DES3 else SM4(key)  # K1 K2 K1

    def encrypt(self, key: bytes, data: bytes) -> bytes:
        """ECB encryption of whole blocks."""
        self._check_key(key)
        if not data or len(data) % self.block:
            raise CryptoError(f"{self.suite} encrypts whole {self.block}-byte blocks, got {len(data)} bytes")
        return _ecb(self._alg(key), data)

    def decrypt(self, key: bytes, data: bytes) -> bytes:
        self._check_key(key)
        if not data or len(data) % self.block:
            raise CryptoError(f"{self.suite} decrypts whole {self.block}-byte blocks, got {len(data)} bytes")
        return _ecb(self._alg(key), data, decrypt=True)

    def diversify(self, master: bytes, factor8: bytes) -> bytes:
        """The card key for diversification factor `factor8`: E(MK, D || ~D)."""
        if len(factor8) != 8:
            raise CryptoError(f"a diversification factor is 8 bytes, got {len(factor8)}")
        return self.encrypt(master, factor8 + bytes(b ^ 0xFF for b in factor8))

    def iv(self, challenge: bytes) -> bytes:
        """The MAC IV from a card challenge (an 8-byte challenge is padded with zeros for SM4)."""
        if len(challenge) > self.block:
            raise CryptoError(f"challenge longer than a {self.suite} block")
        return challenge + bytes(self.block - len(challenge))

    def mac(self, key: bytes, data: bytes, iv: bytes = b"") -> bytes:
        """Full-block MAC (retail MAC for 3DES, CBC-MAC for SM4) over `data` padded with method 2."""
        self._check_key(key)
        iv = self.iv(iv) if len(iv) != self.block else iv
        msg = pad(data, self.block)
        if self.suite is Suite.SM4:
            c = Cipher(SM4(key), modes.CBC(iv)).encryptor()
            return (c.update(msg) + c.finalize())[-self.block :]
        kl = key[:8]
        head, last = msg[:-8], msg[-8:]
        h = iv
        if head:
            c = Cipher(TripleDES(kl * 3), modes.CBC(iv)).encryptor()  # single DES: 3DES with K1 = K2 = K3
            h = (c.update(head) + c.finalize())[-8:]
        return _ecb(self._alg(key), _xor(last, h))

    def command_mac(self, key: bytes, header: bytes, data: bytes, challenge: bytes) -> bytes:
        """The 4-byte MAC of a protected command: over CLA INS P1 P2 Lc data, Lc counting the MAC."""
        if len(header) != 4:
            raise CryptoError("a command header is 4 bytes")
        lc = len(data) + MAC_SIZE
        return self.mac(key, header + bytes([lc]) + data, challenge)[:MAC_SIZE]

    def kcv(self, key: bytes) -> bytes:
        return self.encrypt(key, bytes(self.block))[:3]


DES3 = CipherSuite(Suite.DES3, 8)
SM4_SUITE = CipherSuite(Suite.SM4, 16)
SUITES = {Suite.DES3: DES3, Suite.SM4: SM4_SUITE}


def suite_for(name: str | Suite) -> CipherSuite:
    try:
        return SUITES[Suite(name)]
    except ValueError as e:
        raise CryptoError(f"unknown cipher suite {name!r} (3DES or SM4)") from e


def factor(card_id: bytes, offset: int = 8) -> bytes:
    """The 8-byte diversification factor from the 16-byte card identification code (default: the issuer
    serial, bytes 8..15). Regions differ: set `offset` from configuration."""
    if len(card_id) != 16:
        raise CryptoError(f"a card identification code is 16 bytes, got {len(card_id)}")
    if not 0 <= offset <= 8:
        raise CryptoError(f"factor offset out of range: {offset}")
    return card_id[offset : offset + 8]
