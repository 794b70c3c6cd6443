"""Key store: wrapping under the LMK, versions, import under a KEK, persistence without clear keys."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hsm_client.api import KeyType
from hsm_client.errors import (
    InvalidInput,
    KcvMismatch,
    KeyExists,
    KeyNotFound,
    LmkError,
    WrongKeyType,
    WrongSuite,
)
from hsm_mock.keystore import LMK_ENV, LMK_FILE_ENV, KeyStore, Lmk, parse_ref
from hsm_mock.suites import DES3, SM4_SUITE, Suite

h = bytes.fromhex
CLEAR = h("5A6B7C8D9EAFB0C1D2E3F405162738A9")
KEK = h("2B7E151628AED2A6ABF7158809CF4F3C")


def store_with_kek(lmk: Lmk, path: Path | None = None) -> KeyStore:
    store = KeyStore(lmk, path)
    store.load_components("kek", "KEK", "3DES", [KEK], DES3.kcv(KEK))
    return store


def test_generate_list_versions_delete(lmk: Lmk) -> None:
    store = KeyStore(lmk)
    a = store.generate("mak.host", KeyType.MAK, Suite.SM4)
    b = store.generate("mak.host", "MAK", "SM4")
    assert (a.version, b.version) == (1, 2) and a.kcv != b.kcv
    assert store.get("mak.host") == b and store.get("mak.host@1") == a
    assert [i.ref for i in store.list("mak")] == ["mak.host@1", "mak.host@2"]
    assert store.delete("mak.host@2") == 1
    assert store.get("mak.host") == a
    assert store.delete("mak.host") == 1
    with pytest.raises(KeyNotFound):
        store.get("mak.host")
    with pytest.raises(KeyNotFound):
        store.delete("mak.host")


def test_generated_3des_keys_have_odd_parity(lmk: Lmk) -> None:
    store = KeyStore(lmk)
    info = store.generate("k", "MAK", "3DES")
    _, key = store.unwrap("k")
    assert all(bin(b).count("1") % 2 == 1 for b in key)
    assert info.kcv == DES3.kcv(key)


def test_same_label_other_type_or_suite_is_refused(lmk: Lmk) -> None:
    store = KeyStore(lmk)
    store.generate("k", "MAK", "3DES")
    with pytest.raises(KeyExists):
        store.generate("k", "PIK", "3DES")
    with pytest.raises(KeyExists):
        store.generate("k", "MAK", "SM4")


@pytest.mark.parametrize(
    ("label", "kt", "suite", "rule"),
    [("bad label", "MAK", "SM4", ""), ("k", "XYZ", "SM4", ""), ("k", "MAK", "AES", ""),
     ("k", "MAK", "SM4", "last8"), ("k", "MK", "SM4", "middle4"), ("k", "MK", "SM4", "offset:9")],
)
def test_bad_generate_arguments(lmk: Lmk, label: str, kt: str, suite: str, rule: str) -> None:
    with pytest.raises(InvalidInput):
        KeyStore(lmk).generate(label, kt, suite, rule)


@pytest.mark.parametrize("ref", ["", "a@", "a@0", "a@x", "@1", "-a", "a b", "x" * 65])
def test_bad_refs(ref: str) -> None:
    with pytest.raises(InvalidInput):
        parse_ref(ref)


def test_import_under_kek_checks_kcv_type_and_suite(lmk: Lmk) -> None:
    store = store_with_kek(lmk)
    encrypted = DES3.encrypt(KEK, CLEAR)
    info = store.import_under_kek("mak.in", "MAK", "3DES", "kek", encrypted, DES3.kcv(CLEAR))
    assert info.kcv == DES3.kcv(CLEAR) and info.key_type is KeyType.MAK
    with pytest.raises(KcvMismatch):
        store.import_under_kek("mak.in2", "MAK", "3DES", "kek", encrypted, h("000000"))
    with pytest.raises(WrongSuite):
        store.import_under_kek("mak.in3", "MAK", "SM4", "kek", SM4_SUITE.encrypt(KEK, CLEAR), h("000000"))
    with pytest.raises(WrongKeyType):  # a MAK is not a KEK
        store.import_under_kek("mak.in4", "MAK", "3DES", "mak.in", encrypted, DES3.kcv(CLEAR))
    with pytest.raises(KeyNotFound):
        store.import_under_kek("mak.in5", "MAK", "3DES", "nokek", encrypted, DES3.kcv(CLEAR))
    assert [i.label for i in store.list()] == ["kek", "mak.in"]


def test_components_are_xored(lmk: Lmk) -> None:
    store = KeyStore(lmk)
    c1 = h("0F" * 16)
    c2 = bytes(a ^ b for a, b in zip(CLEAR, c1, strict=True))
    info = store.load_components("k", "PVK", "SM4", [c1, c2], SM4_SUITE.kcv(CLEAR))
    assert store.unwrap("k")[1] == CLEAR and info.kcv == SM4_SUITE.kcv(CLEAR)
    with pytest.raises(KcvMismatch):
        store.load_components("k", "PVK", "SM4", [c1], SM4_SUITE.kcv(CLEAR))


def test_unwrap_checks_type(lmk: Lmk) -> None:
    store = store_with_kek(lmk)
    with pytest.raises(WrongKeyType):
        store.unwrap("kek", KeyType.MAK, KeyType.MK)


def test_persisted_file_holds_no_clear_key(lmk: Lmk, tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    store = store_with_kek(lmk, path)
    store.import_under_kek("mak.in", "MAK", "3DES", "kek", DES3.encrypt(KEK, CLEAR), DES3.kcv(CLEAR))
    generated = store.generate("gen", "MK", "SM4")
    _, gen_key = store.unwrap("gen")
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())  # the db and any WAL file
    for secret in (CLEAR, KEK, gen_key):
        for form in (secret, secret.hex().encode(), secret.hex().upper().encode()):
            assert form not in raw
    # ... and it reopens under the same LMK with the same keys.
    again = KeyStore(lmk, path)
    assert again.get("gen") == generated
    assert again.unwrap("mak.in")[1] == CLEAR
    again.close()


def test_other_lmk_cannot_open_the_store(lmk: Lmk, tmp_path: Path) -> None:
    store_with_kek(lmk, tmp_path / "k.db").close()
    with pytest.raises(LmkError):
        KeyStore(Lmk.ephemeral(), tmp_path / "k.db")


def test_wrapped_blob_is_bound_to_its_metadata(lmk: Lmk, tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    store = KeyStore(lmk, path)
    store.generate("mak", "MAK", "3DES")
    store.generate("pik", "PIK", "3DES")
    store.close()
    db = sqlite3.connect(path)  # an attacker with the file swaps the blobs: neither key opens any more
    mak_blob = db.execute("SELECT blob FROM keys WHERE label = 'mak'").fetchone()[0]
    db.execute("UPDATE keys SET blob = ? WHERE label = 'pik'", (mak_blob,))
    db.commit()
    db.close()
    with pytest.raises(LmkError):
        KeyStore(lmk, path).unwrap("pik")


def test_lmk_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hexkey = "11" * 32
    f = tmp_path / "lmk"
    f.write_text(hexkey + "\n")
    assert Lmk.from_file(f).check_value == Lmk.from_hex(hexkey).check_value
    assert Lmk.from_env({LMK_ENV: hexkey}).check_value == Lmk.from_hex(hexkey).check_value
    assert Lmk.from_env({LMK_FILE_ENV: str(f)}).check_value == Lmk.from_hex(hexkey).check_value
    monkeypatch.setenv(LMK_ENV, hexkey)
    assert Lmk.from_env().check_value == Lmk.from_hex(hexkey).check_value
    (tmp_path / "raw").write_bytes(bytes(range(32)))
    assert Lmk.from_file(tmp_path / "raw").check_value == Lmk(bytes(range(32))).check_value
    for bad in ({}, {LMK_ENV: "xyz"}, {LMK_ENV: "00" * 16}, {LMK_FILE_ENV: str(tmp_path / "none")}):
        with pytest.raises(LmkError):
            Lmk.from_env(bad)
    assert hexkey not in repr(Lmk.from_hex(hexkey))


def test_loaded_key_is_dropped_with_the_key(lmk: Lmk) -> None:
    store = KeyStore(lmk)
    store.generate("mak", "MAK", "SM4")
    old = store.handle("mak", KeyType.MAK)[1].mac(b"data")
    store.delete("mak")
    with pytest.raises(KeyNotFound):
        store.handle("mak")
    store.generate("mak", "MAK", "SM4")  # same label and version, new key
    info, handle = store.handle("mak", KeyType.MAK)
    assert info.version == 1 and handle.mac(b"data") != old
    assert repr(handle) == "KeyHandle(SM4)"
