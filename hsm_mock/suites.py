"""Cipher suites of the mock HSM: 3DES (double-length keys, 8-byte blocks) and SM4 (16-byte blocks).

All keys are 16 bytes. The algorithms, exactly (E = block encrypt under the named key, ECB):

- **Padding** (ISO 9797-1 method 2): append 0x80, then 0x00 up to a multiple of the block size; always
  applied, so a block-aligned message gains a whole block.
- **KCV**: the first 3 bytes of E(K, zero block).
- **3DES MAC** (ISO 9797-1 MAC algorithm 3, "retail MAC"), K = KL || KR: pad; H0 = IV (zero if none);
  Hi = DES(KL, Xi XOR Hi-1) for all blocks but the last; the last: Hn = DES(KL, DES^-1(KR, DES(KL, Xn XOR
  Hn-1))), i.e. 3DES-EDE(K) of the last block. The MAC is Hn (8 bytes); card commands use its first 4.
- **SM4 MAC**: SM4-CBC over the padded message with the IV (zero if none); the MAC is the last
  ciphertext block (16 bytes); card commands use its first 4.
- **Diversification** (Chinese CPU cards), D an 8-byte factor, ~D its bitwise complement:
  3DES: card key = E(MK, D) || E(MK, ~D); SM4: card key = E(MK, D || ~D). Both are the ECB encryption of
  the 16 bytes D || ~D under MK, which is how `diversify()` computes them.

The IV is where the card's challenge goes for protected writes (see `hsm_mock.commands`); an IV shorter
than a block (4..block bytes, e.g. an 8-byte challenge on an SM4 card) is right-padded with 00 bytes.
"""

from __future__ import annotations

import threading

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import BlockCipherAlgorithm, Cipher, CipherContext, modes
from cryptography.hazmat.primitives.ciphers.algorithms import SM4

from hsm_client.api import Suite
from hsm_client.errors import InvalidInput

KEY_SIZE = 16
KCV_SIZE = 3
FACTOR_SIZE = 8
MIN_IV = 4  # shortest challenge used as an IV (4, 8 or 16 bytes in practice)


def pad_m2(data: bytes, block_size: int) -> bytes:
    """ISO 9797-1 padding method 2 (also ISO 7816-4): 0x80 then zeros to a whole number of blocks."""
    n = len(data) + 1
    return data + b"\x80" + bytes(-n % block_size)


def unpad_m2(data: bytes, block_size: int) -> bytes:
    """Strip ISO 9797-1 method 2 padding; InvalidInput if it is not there."""
    if not data or len(data) % block_size:
        raise InvalidInput("padded data is not a whole number of blocks")
    stripped = data.rstrip(b"\x00")
    if not stripped or stripped[-1] != 0x80 or len(data) - len(stripped) >= block_size:
        raise InvalidInput("bad ISO 9797-1 method 2 padding")
    return stripped[:-1]


def xor(a: bytes, b: bytes) -> bytes:
    """Bytewise XOR of two equal-length byte strings."""
    if len(a) != len(b):
        raise InvalidInput("xor of unequal lengths")
    return (int.from_bytes(a) ^ int.from_bytes(b)).to_bytes(len(a))


def complement(data: bytes) -> bytes:
    """Bitwise NOT of every byte."""
    return bytes(b ^ 0xFF for b in data)


class CipherSuite:
    """One suite: block size and key checks; `DES3` and `SM4_SUITE` are the two instances.

    The methods taking a clear key are one-shot conveniences over `load(key)`, which gives a
    `KeyHandle` whose cipher contexts are made once and then reused.
    """

    def __init__(self, suite: Suite, block_size: int) -> None:
        self.suite = suite
        self.block_size = block_size

    def __repr__(self) -> str:
        return f"CipherSuite({self.suite.value})"

    def algorithm(self, key: bytes) -> BlockCipherAlgorithm:
        """The algorithm object; a 16-byte 3DES key K1||K2 is given to OpenSSL as K1||K2||K1."""
        if len(key) != KEY_SIZE:
            raise InvalidInput(f"{self.suite.value} keys are {KEY_SIZE} bytes")
        return TripleDES(key + key[:8]) if self.suite is Suite.DES3 else SM4(key)

    def check_blocks(self, data: bytes) -> None:
        if not data or len(data) % self.block_size:
            raise InvalidInput(f"data must be a non-empty multiple of {self.block_size} bytes")

    def check_iv(self, iv: bytes | None) -> bytes:
        """The IV: zero if None or empty; 4..block bytes, right-padded with 00 to a block."""
        if not iv:
            return bytes(self.block_size)
        if not MIN_IV <= len(iv) <= self.block_size:
            raise InvalidInput(f"{self.suite.value} IV/challenge must be {MIN_IV}..{self.block_size} bytes")
        return iv + bytes(self.block_size - len(iv))

    def load(self, key: bytes) -> KeyHandle:
        return KeyHandle(self, key)

    def encrypt(self, key: bytes, data: bytes) -> bytes:
        """ECB encryption of whole blocks."""
        return self.load(key).encrypt(data)

    def decrypt(self, key: bytes, data: bytes) -> bytes:
        """ECB decryption of whole blocks."""
        return self.load(key).decrypt(data)

    def kcv(self, key: bytes) -> bytes:
        """Key check value: the first 3 bytes of E(key, zero block)."""
        return self.load(key).kcv()

    def mac(self, key: bytes, data: bytes, iv: bytes | None = None, *, pad: bool = True) -> bytes:
        """Full-block MAC (3DES: ISO 9797-1 algorithm 3; SM4: CBC-MAC), padding method 2 unless pad=False."""
        return self.load(key).mac(data, iv, pad=pad)

    def diversify(self, master_key: bytes, factor: bytes) -> bytes:
        """Card key from an 8-byte factor D: ECB of D || ~D under the master key (see module docstring)."""
        return self.load(master_key).diversify(factor)


class KeyHandle:
    """A key loaded for use: ECB contexts made on first need and reused (ECB keeps no state between
    whole blocks); CBC chaining for MACs is done here, block by block. Never exposes the key bytes."""

    __slots__ = ("suite", "_enc", "_dec", "_single", "_alg", "_left", "_lock")

    def __init__(self, suite: CipherSuite, key: bytes) -> None:
        self.suite = suite
        self._alg = suite.algorithm(key)
        self._left = key[:8]  # 3DES only: single DES under the left half for the MAC's CBC part
        self._enc = Cipher(self._alg, modes.ECB()).encryptor()
        self._dec: CipherContext | None = None
        self._single: CipherContext | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"KeyHandle({self.suite.suite.value})"

    def encrypt(self, data: bytes) -> bytes:
        """ECB encryption of whole blocks."""
        self.suite.check_blocks(data)
        with self._lock:
            return self._enc.update(data)

    def decrypt(self, data: bytes) -> bytes:
        """ECB decryption of whole blocks."""
        self.suite.check_blocks(data)
        with self._lock:
            if self._dec is None:
                self._dec = Cipher(self._alg, modes.ECB()).decryptor()
            return self._dec.update(data)

    def kcv(self) -> bytes:
        """Key check value: the first 3 bytes of E(key, zero block)."""
        return self.encrypt(bytes(self.suite.block_size))[:KCV_SIZE]

    def diversify(self, factor: bytes) -> bytes:
        """Card key for an 8-byte factor D: ECB of D || ~D under this (master) key."""
        if len(factor) != FACTOR_SIZE:
            raise InvalidInput(f"diversification factor must be {FACTOR_SIZE} bytes")
        return self.encrypt(factor + complement(factor))

    def mac(self, data: bytes, iv: bytes | None = None, *, pad: bool = True) -> bytes:
        """Full-block MAC (3DES: ISO 9797-1 algorithm 3; SM4: CBC-MAC), padding method 2 unless pad=False."""
        suite = self.suite
        bs = suite.block_size
        state = int.from_bytes(suite.check_iv(iv))
        msg = pad_m2(data, bs) if pad else data
        suite.check_blocks(msg)
        last = len(msg) - bs
        with self._lock:
            chain = self._enc
            if suite.suite is Suite.DES3 and last:
                if self._single is None:  # K1 = K2 = K3: single DES
                    self._single = Cipher(TripleDES(self._left * 3), modes.ECB()).encryptor()
                chain = self._single
            for i in range(0, last, bs):
                state = int.from_bytes(chain.update((state ^ int.from_bytes(msg[i : i + bs])).to_bytes(bs)))
            return self._enc.update((state ^ int.from_bytes(msg[last:])).to_bytes(bs))


DES3 = CipherSuite(Suite.DES3, 8)
SM4_SUITE = CipherSuite(Suite.SM4, 16)
_SUITES = {Suite.DES3: DES3, Suite.SM4: SM4_SUITE}


def get_suite(suite: Suite | str) -> CipherSuite:
    """The CipherSuite for a Suite or its name ("3DES", "SM4")."""
    try:
        return _SUITES[Suite(suite)]
    except ValueError:
        raise InvalidInput(f"unknown cipher suite {suite!r}") from None
