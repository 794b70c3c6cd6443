"""Key storage: every key lives wrapped (AES-256-GCM) under the local master key (LMK).

- The LMK comes from `SSCARD_HSM_LMK` (64 hex digits) or the file named by `SSCARD_HSM_LMK_FILE` (64 hex
  digits or 32 raw bytes); never from the repository. `Lmk.ephemeral()` makes a random one for tests.
- Wrapping: blob = nonce (12) || AES-GCM(LMK, nonce, key, aad), aad = "label|version|type|suite|kcv|rule",
  so a blob moved to another label or retyped does not open.
- Persistence: a SQLite file holding only wrapped keys and an LMK check value (8 bytes of an HMAC under
  the LMK: opening a store with another LMK fails with LmkError), or memory only (path None). The file
  is read when the store opens: one process owns it at a time (a running server sees key changes made
  through its host commands, not changes made by another process until it restarts).
- The LMK also roots the HSM's client keys (`Lmk.client_key`, see `hsm_mock.access`): none is stored.
- No method returns clear key bytes except `unwrap()`, which is for the HSM's own commands; `handle()`
  gives them a loaded key (cipher contexts) that lives in process memory until the key is deleted.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hsm_client.api import KeyInfo, KeyType
from hsm_client.errors import (
    InvalidInput,
    KcvMismatch,
    KeyExists,
    KeyNotFound,
    LmkError,
    WrongKeyType,
    WrongSuite,
)
from hsm_mock.factors import check_rule
from hsm_mock.suites import KCV_SIZE, KEY_SIZE, KeyHandle, Suite, get_suite, xor

LMK_ENV = "SSCARD_HSM_LMK"
LMK_FILE_ENV = "SSCARD_HSM_LMK_FILE"
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_NONCE = 12


class Lmk:
    """The local master key; holds an AES-GCM context, the root of the client keys and a check value,
    never prints the key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise LmkError("the LMK must be 32 bytes (64 hex digits)")
        self._aead = AESGCM(key)
        self._client_root = hmac.digest(key, b"sscard-hsm client keys", "sha256")
        self.check_value = hmac.digest(key, b"sscard-hsm lmk check", "sha256")[:8].hex()

    def client_key(self, client_id: str, generation: int = 1) -> bytes:
        """A client's 32-byte key: HMAC-SHA-256(HMAC-SHA-256(LMK, "sscard-hsm client keys"), "id|generation").
        The HSM stores no client key; a new generation revokes the old key."""
        return hmac.digest(self._client_root, f"{client_id}|{generation}".encode(), "sha256")

    def __repr__(self) -> str:
        return f"Lmk(check={self.check_value})"

    @classmethod
    def ephemeral(cls) -> Lmk:
        """A random LMK that lives as long as the process (tests, demos)."""
        return cls(secrets.token_bytes(32))

    @classmethod
    def from_hex(cls, text: str) -> Lmk:
        try:
            return cls(bytes.fromhex(text.strip()))
        except ValueError:
            raise LmkError("the LMK must be 64 hex digits") from None

    @classmethod
    def from_file(cls, path: str | Path) -> Lmk:
        """From a file of 64 hex digits or 32 raw bytes."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise LmkError(f"cannot read LMK file: {exc.strerror}") from None
        return cls(data) if len(data) == 32 else cls.from_hex(data.decode("ascii", "replace"))

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Lmk:
        """From SSCARD_HSM_LMK (hex) or else SSCARD_HSM_LMK_FILE; LmkError if neither is set."""
        env = os.environ if environ is None else environ
        if env.get(LMK_ENV):
            return cls.from_hex(env[LMK_ENV])
        if env.get(LMK_FILE_ENV):
            return cls.from_file(env[LMK_FILE_ENV])
        raise LmkError(f"no LMK: set {LMK_ENV} or {LMK_FILE_ENV}")

    def wrap(self, key: bytes, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        return nonce + self._aead.encrypt(nonce, key, aad)

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        try:
            return self._aead.decrypt(blob[:_NONCE], blob[_NONCE:], aad)
        except InvalidTag:
            raise LmkError("a wrapped key does not open under this LMK") from None


@dataclass(frozen=True, slots=True)
class WrappedKey:
    info: KeyInfo
    blob: bytes


def parse_ref(ref: str) -> tuple[str, int | None]:
    """Split "label" or "label@N" into (label, version or None); InvalidInput if malformed."""
    label, sep, version = ref.partition("@")
    if not _LABEL.fullmatch(label) or (sep and not (version.isdigit() and 0 < int(version) < 10**6)):
        raise InvalidInput("bad key reference (label or label@version)")
    return label, int(version) if sep else None


def key_type_of(value: KeyType | str) -> KeyType:
    try:
        return KeyType(value)
    except ValueError:
        raise InvalidInput(f"unknown key type (one of {', '.join(t.value for t in KeyType)})") from None


def suite_of(value: Suite | str) -> Suite:
    try:
        return Suite(value)
    except ValueError:
        raise InvalidInput("unknown cipher suite (3DES or SM4)") from None


def _aad(info: KeyInfo) -> bytes:
    fields = (info.label, str(info.version), info.key_type.value, info.suite.value, info.kcv.hex(),
              info.div_rule)
    return "|".join(fields).encode()


def _odd_parity(key: bytes) -> bytes:
    """DES convention: every byte with odd parity (the low bit is the parity bit)."""
    return bytes((b & 0xFE) | (1 - bin(b >> 1).count("1") % 2) for b in key)


class KeyStore:
    """Wrapped keys by (label, version), in memory and, if `path` is given, in a SQLite file."""

    def __init__(self, lmk: Lmk, path: str | Path | None = None) -> None:
        self._lmk = lmk
        self._lock = threading.Lock()
        self._keys: dict[tuple[str, int], WrappedKey] = {}
        self._latest: dict[str, int] = {}  # label -> newest version
        self._handles: dict[bytes, KeyHandle] = {}  # wrapped blob -> loaded key
        self._db: sqlite3.Connection | None = None
        if path is not None:
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            try:
                self._open_db()
            except BaseException:
                self.close()
                raise

    # ---- persistence --------------------------------------------------------------------------------
    def _open_db(self) -> None:
        db = self._db
        assert db is not None
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute(
            "CREATE TABLE IF NOT EXISTS keys (label TEXT NOT NULL, version INTEGER NOT NULL,"
            " type TEXT NOT NULL, suite TEXT NOT NULL, kcv BLOB NOT NULL, div_rule TEXT NOT NULL,"
            " created REAL NOT NULL, blob BLOB NOT NULL, PRIMARY KEY (label, version))"
        )
        row = db.execute("SELECT value FROM meta WHERE name = 'lmk_check'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES ('lmk_check', ?)", (self._lmk.check_value,))
        elif row[0] != self._lmk.check_value:
            raise LmkError("this key store was created under another LMK")
        for label, version, kt, suite, kcv, rule, created, blob in db.execute("SELECT * FROM keys"):
            info = KeyInfo(label, version, KeyType(kt), Suite(suite), bytes(kcv), rule, created)
            self._keys[(label, version)] = WrappedKey(info, bytes(blob))
            self._latest[label] = max(version, self._latest.get(label, 0))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # ---- lookup -------------------------------------------------------------------------------------
    def _find(self, ref: str) -> WrappedKey:
        label, version = parse_ref(ref)
        found = self._keys.get((label, version if version is not None else self._latest.get(label, 0)))
        if found is None:
            raise KeyNotFound(f"no key {ref}")
        return found

    def get(self, ref: str) -> KeyInfo:
        """A key's description; KeyNotFound if absent."""
        return self._find(ref).info

    def list(self, prefix: str = "") -> list[KeyInfo]:
        """All key versions whose label starts with `prefix`, by label and version."""
        with self._lock:
            infos = [w.info for w in self._keys.values() if w.info.label.startswith(prefix)]
        return sorted(infos, key=lambda i: (i.label, i.version))

    def _typed(self, ref: str, types: tuple[KeyType, ...]) -> WrappedKey:
        wrapped = self._find(ref)
        if types and wrapped.info.key_type not in types:
            raise WrongKeyType(f"{wrapped.info.ref} is a {wrapped.info.key_type.value} key")
        return wrapped

    def unwrap(self, ref: str, *types: KeyType) -> tuple[KeyInfo, bytes]:
        """For the HSM's own commands only: the key's info and clear bytes; WrongKeyType if not of `types`."""
        wrapped = self._typed(ref, types)
        return wrapped.info, self._lmk.unwrap(wrapped.blob, _aad(wrapped.info))

    def handle(self, ref: str, *types: KeyType) -> tuple[KeyInfo, KeyHandle]:
        """For the HSM's own commands only: the key loaded for use (unwrapped once, then kept in this
        process's memory until the key is deleted, as an HSM keeps keys in its internal memory)."""
        wrapped = self._typed(ref, types)
        handle = self._handles.get(wrapped.blob)
        if handle is None:
            clear = self._lmk.unwrap(wrapped.blob, _aad(wrapped.info))
            handle = self._handles[wrapped.blob] = get_suite(wrapped.info.suite).load(clear)
        return wrapped.info, handle

    # ---- changes ------------------------------------------------------------------------------------
    def _store(self, label: str, key_type: KeyType, suite: Suite, key: bytes, div_rule: str) -> KeyInfo:
        if not _LABEL.fullmatch(label):
            raise InvalidInput("bad label: 1-64 of A-Z a-z 0-9 . _ : - (not starting with a sign)")
        rule = check_rule(div_rule) if key_type is KeyType.MK else ""
        if key_type is not KeyType.MK and div_rule:
            raise InvalidInput("only MK keys carry a diversification rule")
        with self._lock:
            newest = self._latest.get(label, 0)
            if newest:
                old = self._keys[(label, newest)].info
                if (old.key_type, old.suite) != (key_type, suite):
                    raise KeyExists(f"{label} exists as a {old.suite.value} {old.key_type.value} key")
            version = newest + 1
            kcv = get_suite(suite).kcv(key)
            info = KeyInfo(label, version, key_type, suite, kcv, rule, time.time())
            wrapped = WrappedKey(info, self._lmk.wrap(key, _aad(info)))
            if self._db is not None:
                self._db.execute(
                    "INSERT INTO keys VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (label, version, key_type.value, suite.value, kcv, rule, info.created, wrapped.blob),
                )
            self._keys[(label, version)] = wrapped
            self._latest[label] = version
            return info

    def generate(
        self, label: str, key_type: KeyType | str, suite: Suite | str, div_rule: str = ""
    ) -> KeyInfo:
        """A new random key as the next version of `label` (3DES keys get odd parity, halves differ)."""
        kt, st = key_type_of(key_type), suite_of(suite)
        key = secrets.token_bytes(KEY_SIZE)
        if st is Suite.DES3:
            while key[:8] == key[8:]:  # pragma: no cover - 2**-64
                key = secrets.token_bytes(KEY_SIZE)
            key = _odd_parity(key)
        return self._store(label, kt, st, key, div_rule)

    def import_under_kek(
        self,
        label: str,
        key_type: KeyType | str,
        suite: Suite | str,
        kek: str,
        encrypted_key: bytes,
        kcv: bytes,
        div_rule: str = "",
    ) -> KeyInfo:
        """A key ECB-encrypted under a KEK of the same suite; KcvMismatch unless `kcv` matches."""
        kt, st = key_type_of(key_type), suite_of(suite)
        kek_info, kek_handle = self.handle(kek, KeyType.KEK)
        if kek_info.suite is not st:
            raise WrongSuite(f"KEK {kek_info.ref} is {kek_info.suite.value}, the key is {st.value}")
        if len(encrypted_key) != KEY_SIZE:
            raise InvalidInput(f"an encrypted key is {KEY_SIZE} bytes")
        key = kek_handle.decrypt(encrypted_key)
        return self._check_and_store(label, kt, st, key, kcv, div_rule)

    def load_components(
        self,
        label: str,
        key_type: KeyType | str,
        suite: Suite | str,
        components: Iterable[bytes],
        kcv: bytes,
        div_rule: str = "",
    ) -> KeyInfo:
        """Console key entry (never over the host protocol): the key is the XOR of clear components."""
        kt, st = key_type_of(key_type), suite_of(suite)
        parts = list(components)
        if not parts or any(len(p) != KEY_SIZE for p in parts):
            raise InvalidInput(f"components are {KEY_SIZE} bytes each")
        key = parts[0]
        for part in parts[1:]:
            key = xor(key, part)
        return self._check_and_store(label, kt, st, key, kcv, div_rule)

    def _check_and_store(
        self, label: str, kt: KeyType, st: Suite, key: bytes, kcv: bytes, div_rule: str
    ) -> KeyInfo:
        if len(kcv) != KCV_SIZE:
            raise InvalidInput(f"a KCV is {KCV_SIZE} bytes")
        if not hmac.compare_digest(get_suite(st).kcv(key), kcv):
            raise KcvMismatch()
        return self._store(label, kt, st, key, div_rule)

    def delete(self, ref: str) -> int:
        """Delete "label@N", or every version of "label"; returns the count (KeyNotFound if none)."""
        label, version = parse_ref(ref)
        with self._lock:
            doomed = [k for k in self._keys if k[0] == label and version in (None, k[1])]
            if not doomed:
                raise KeyNotFound(f"no key {ref}")
            for k in doomed:
                self._handles.pop(self._keys.pop(k).blob, None)
                if self._db is not None:
                    self._db.execute("DELETE FROM keys WHERE label = ? AND version = ?", k)
            left = [v for (lb, v) in self._keys if lb == label]
            if left:
                self._latest[label] = max(left)
            else:
                self._latest.pop(label, None)
            return len(doomed)
