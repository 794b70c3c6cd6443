"""In-process HSM commands: `LocalHsm`, the reference implementation of `HsmApi`.

Card keys are derived inside each command and never leave it in clear. Exactly, for an MK of suite S
(block size b: 8 for 3DES, 16 for SM4) and a card with identification code `card_id`:

1. D = the 8-byte factor that the MK's rule selects from card_id (`hsm_mock.factors`, default `last8`
   = card_id[8:16]).
2. card key K = ECB-encrypt(MK, D || ~D) (3DES: E(MK, D) || E(MK, ~D); SM4: one block).
3. External authentication: cryptogram = ECB-encrypt(K, challenge), challenge of exactly b bytes.
   Internal authentication: response = ECB-encrypt(K, terminal random), random of exactly b bytes.
4. Protected-write (session) MAC: the message is CLA INS P1 P2 Lc || data exactly as sent, with CLA
   already carrying the secure-messaging bit (e.g. 04) and Lc counting the 4 MAC bytes; MAC =
   the leftmost 4 bytes of `suite.mac(K, message, iv=challenge)`: ISO 9797-1 padding 2, then for 3DES the
   retail MAC (single-DES CBC under K's left half, last block 3DES-EDE under K), for SM4 SM4-CBC, the
   IV being the card's challenge (b bytes; a shorter one, 4..b bytes, right-padded with 00). No separate
   session key is derived: K with the fresh challenge as IV is the session.
5. MACs under a stored MAK use the same `suite.mac`, IV zero unless given.
6. PIN blocks: ISO 9564 format 0 (`hsm_mock.pinblock`), ECB-encrypted under a PIK. The PIN reference is
   HMAC(PVK, "sscard-hsm pin ref|" || 12 PAN digits || "|" || PIN digits), SHA-256 for a 3DES PVK,
   SM3 for an SM4 PVK, first 16 bytes: one-way, and useless without the PVK.
   `encrypt_pin` (host command BA, after Thales' "encrypt a clear PIN") takes a clear PIN from a PIN-entry
   stand-in and returns its format-0 block under a PIK; it is the terminal's path when it has no PSAM.
   The PIN is never audited or echoed: the audit entry names only the PIK.

Every command is audited (`hsm_mock.audit`): name, key references, result code, time, duration.
Stored keys are unwrapped once and kept loaded (`KeyStore.handle`); card keys exist only for the
command that derives them.
"""

from __future__ import annotations

import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.hmac import HMAC

from hsm_client.api import DiversifiedKey, KeyInfo, KeyType
from hsm_client.errors import InvalidInput, VerificationFailed, WrongSuite
from hsm_mock import factors, pinblock
from hsm_mock.audit import Audited, AuditLog
from hsm_mock.keystore import KeyStore
from hsm_mock.suites import CipherSuite, KeyHandle, Suite

VERSION = "sscard-hsm-mock 1"
MAC_LEN_MIN = 4
PIN_REF_SIZE = 16


def _check_block(suite: CipherSuite, value: bytes, what: str) -> bytes:
    if len(value) != suite.block_size:
        raise InvalidInput(f"{what} must be {suite.block_size} bytes for {suite.suite.value}")
    return value


def _check_challenge(challenge: bytes) -> bytes:
    if not challenge:
        raise InvalidInput("a protected write needs the card's challenge")
    return challenge


def _check_mac_len(suite: CipherSuite, n: int) -> int:
    if not MAC_LEN_MIN <= n <= suite.block_size:
        raise InvalidInput(f"MAC length must be {MAC_LEN_MIN}..{suite.block_size} for {suite.suite.value}")
    return n


def _verify(expected: bytes, given: bytes) -> None:
    if not hmac.compare_digest(expected, given):
        raise VerificationFailed()


class LocalHsm:
    """The HSM in this process: a key store, an audit log and the commands of `HsmApi`."""

    def __init__(self, keystore: KeyStore, audit: AuditLog | None = None) -> None:
        self.keystore = keystore
        self.audit = audit if audit is not None else AuditLog()

    def close(self) -> None:
        self.keystore.close()
        self.audit.close()

    def ping(self) -> str:
        with Audited(self.audit, "ping"):
            return VERSION

    # ---- key management -----------------------------------------------------------------------------
    def generate_key(
        self, label: str, key_type: KeyType | str, suite: Suite | str, div_rule: str = ""
    ) -> KeyInfo:
        with Audited(self.audit, "generate_key", label):
            return self.keystore.generate(label, key_type, suite, div_rule)

    def import_key(
        self,
        label: str,
        key_type: KeyType | str,
        suite: Suite | str,
        kek: str,
        encrypted_key: bytes,
        kcv: bytes,
        div_rule: str = "",
    ) -> KeyInfo:
        with Audited(self.audit, "import_key", label, kek):
            return self.keystore.import_under_kek(label, key_type, suite, kek, encrypted_key, kcv, div_rule)

    def list_keys(self, prefix: str = "") -> list[KeyInfo]:
        with Audited(self.audit, "list_keys"):
            return self.keystore.list(prefix)

    def delete_key(self, ref: str) -> int:
        with Audited(self.audit, "delete_key", ref):
            return self.keystore.delete(ref)

    # ---- card keys ----------------------------------------------------------------------------------
    def _card_key(self, mk: str, card_id: bytes) -> tuple[CipherSuite, bytes]:
        info, master = self.keystore.handle(mk, KeyType.MK)
        return master.suite, master.diversify(factors.factor(card_id, info.div_rule))

    def _card_handle(self, mk: str, card_id: bytes) -> KeyHandle:
        suite, key = self._card_key(mk, card_id)
        return suite.load(key)

    def diversify(self, mk: str, card_id: bytes, kek: str = "") -> DiversifiedKey:
        labels = (mk, kek) if kek else (mk,)
        with Audited(self.audit, "diversify", *labels):
            suite, key = self._card_key(mk, card_id)
            if not kek:
                return DiversifiedKey(suite.kcv(key), None)
            kek_info, kek_handle = self.keystore.handle(kek, KeyType.KEK)
            if kek_info.suite is not suite.suite:
                raise WrongSuite(f"KEK {kek_info.ref} is {kek_info.suite.value}, the MK {suite.suite.value}")
            return DiversifiedKey(suite.kcv(key), kek_handle.encrypt(key))

    def ext_auth_cryptogram(self, mk: str, card_id: bytes, challenge: bytes) -> bytes:
        with Audited(self.audit, "ext_auth_cryptogram", mk):
            card = self._card_handle(mk, card_id)
            return card.encrypt(_check_block(card.suite, challenge, "challenge"))

    def verify_ext_auth(self, mk: str, card_id: bytes, challenge: bytes, cryptogram: bytes) -> None:
        with Audited(self.audit, "verify_ext_auth", mk):
            card = self._card_handle(mk, card_id)
            _verify(card.encrypt(_check_block(card.suite, challenge, "challenge")), cryptogram)

    def verify_int_auth(self, mk: str, card_id: bytes, terminal_random: bytes, response: bytes) -> None:
        with Audited(self.audit, "verify_int_auth", mk):
            card = self._card_handle(mk, card_id)
            _verify(card.encrypt(_check_block(card.suite, terminal_random, "terminal random")), response)

    def session_mac(
        self, mk: str, card_id: bytes, challenge: bytes, message: bytes, mac_len: int = 4
    ) -> bytes:
        with Audited(self.audit, "session_mac", mk):
            card = self._card_handle(mk, card_id)
            n = _check_mac_len(card.suite, mac_len)
            return card.mac(message, _check_challenge(challenge))[:n]

    def verify_session_mac(
        self, mk: str, card_id: bytes, challenge: bytes, message: bytes, mac: bytes
    ) -> None:
        with Audited(self.audit, "verify_session_mac", mk):
            card = self._card_handle(mk, card_id)
            n = _check_mac_len(card.suite, len(mac))
            _verify(card.mac(message, _check_challenge(challenge))[:n], mac)

    # ---- MACs under stored keys ---------------------------------------------------------------------
    def generate_mac(self, key: str, data: bytes, iv: bytes = b"", mac_len: int = 4) -> bytes:
        with Audited(self.audit, "generate_mac", key):
            mak = self.keystore.handle(key, KeyType.MAK)[1]
            return mak.mac(data, iv or None)[: _check_mac_len(mak.suite, mac_len)]

    def verify_mac(self, key: str, data: bytes, mac: bytes, iv: bytes = b"") -> None:
        with Audited(self.audit, "verify_mac", key):
            mak = self.keystore.handle(key, KeyType.MAK)[1]
            _verify(mak.mac(data, iv or None)[: _check_mac_len(mak.suite, len(mac))], mac)

    # ---- PINs ---------------------------------------------------------------------------------------
    def _open_pin(self, pik: str, pin_block: bytes, pan: str) -> str:
        handle = self.keystore.handle(pik, KeyType.PIK)[1]
        return pinblock.decode_format0(handle.decrypt(_check_block(handle.suite, pin_block, "PIN block")), pan)

    def _reference(self, pik: str, pvk: str, pin_block: bytes, pan: str) -> bytes:
        info, key = self.keystore.unwrap(pvk, KeyType.PVK)  # check both keys before opening the block
        pin = self._open_pin(pik, pin_block, pan)
        mac = HMAC(key, hashes.SM3() if info.suite is Suite.SM4 else hashes.SHA256())
        mac.update(f"sscard-hsm pin ref|{pinblock.pan_digits(pan)}|{pin}".encode())
        return mac.finalize()[:PIN_REF_SIZE]

    def pin_reference(self, pik: str, pvk: str, pin_block: bytes, pan: str) -> bytes:
        with Audited(self.audit, "pin_reference", pik, pvk):
            return self._reference(pik, pvk, pin_block, pan)

    def verify_pin(self, pik: str, pvk: str, pin_block: bytes, pan: str, reference: bytes) -> None:
        with Audited(self.audit, "verify_pin", pik, pvk):
            if len(reference) != PIN_REF_SIZE:
                raise InvalidInput(f"a PIN reference is {PIN_REF_SIZE} bytes")
            _verify(self._reference(pik, pvk, pin_block, pan), reference)

    def encrypt_pin(self, pik: str, pin: str, pan: str) -> bytes:
        with Audited(self.audit, "encrypt_pin", pik):
            handle = self.keystore.handle(pik, KeyType.PIK)[1]
            return handle.encrypt(pinblock.encode_format0(pin, pan, handle.suite.block_size))

    def translate_pin(self, src_pik: str, dst_pik: str, pin_block: bytes, pan: str) -> bytes:
        with Audited(self.audit, "translate_pin", src_pik, dst_pik):
            dst = self.keystore.handle(dst_pik, KeyType.PIK)[1]
            pin = self._open_pin(src_pik, pin_block, pan)
            return dst.encrypt(pinblock.encode_format0(pin, pan, dst.suite.block_size))
