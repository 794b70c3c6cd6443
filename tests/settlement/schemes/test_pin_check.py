"""The centre's online PIN check for card_pin certification: PIN references recorded at issuance, PIN blocks
verified through the HSM, typed failures that change nothing, and no PIN or block kept anywhere."""

from __future__ import annotations

import logging
import warnings

import pytest

from hsm_client.errors import HsmUnavailable
from hsm_mock import KeyStore, Lmk, LocalHsm
from settlement import errors
from settlement.api.auth import TerminalKey, hash_key
from settlement.api.client import SettlementClient
from settlement.api.service import create_app
from settlement.schemes.engine import Engine
from settlement.schemes.identity import PinCheck
from settlement.wire import pin_pan
from sscard.hsm_pin import HsmPinVerifier
from tests.settlement.flows_helpers import Clock, Y, make_engine

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

PID = "11010519500101002X"  # a social security number with an X check character
CARD = "C0000009"
PIN = "90817263"  # 8 digits: a string that appears nowhere else by chance
MONTHLY = 3_000 * Y


@pytest.fixture(scope="module")
def hsm():
    h = LocalHsm(KeyStore(Lmk.ephemeral()))
    h.generate_key("SSSE-SM4-PIK", "PIK", "SM4")
    h.generate_key("SSSE-3DES-PIK", "PIK", "3DES")
    h.generate_key("SSSE-SM4-PVK", "PVK", "SM4")
    yield h
    h.close()


@pytest.fixture
def verifier(hsm):
    return HsmPinVerifier(hsm)


def block(hsm, pin: str = PIN, suite: str = "SM4", person: str = PID) -> bytes:
    return hsm.encrypt_pin(f"SSSE-{suite}-PIK", pin, pin_pan(person))


@pytest.fixture
def eng(store, hsm, verifier):
    e = make_engine(store, Clock(), pin_verifier=verifier)
    e.registry.add_person(PID, "Zhou Min", "110000", "retiree", card_no=CARD)
    e.pensions.enrol(PID, MONTHLY, "2024-01")
    e.registry.set_pin_reference(PID, CARD, verifier.reference(block(hsm), pin_pan(PID)), actor="issuance")
    return e


def rewired(eng: Engine, pin_verifier) -> Engine:
    """The same centre (store, policies, settings, clock) with another PIN verifier."""
    return Engine(eng.store, policies=eng.policies, settings=eng.settings, clock=eng.clock, pin_verifier=pin_verifier)


def certify(eng, serial: str, pin_block, **kw):
    args = {"card_no": CARD, "pin_verified": True} | kw
    if pin_block is not None:
        args["pin_block"] = pin_block
    return eng.identity.certify(f"T1:{serial}", PID, "card_pin", actor="T1", **args)


def snapshot(eng) -> tuple:
    """Everything a failed certification must leave as it was."""
    p = eng.pensions.pensioner(PID)
    return (p.status, p.reason, eng.identity.status(PID).certified, eng.registry.pin_reference(PID),
            len(eng.ledger.postings(limit=100_000)))


def test_pin_pan_is_the_social_security_number():
    assert pin_pan("110105198001010016") == "110105198001010016"
    assert pin_pan(PID) == "110105195001010020"  # X written 0: format 0 drops it anyway
    with pytest.raises(errors.InvalidRequest):
        pin_pan("RET")


@pytest.mark.parametrize("suite", ["SM4", "3DES"])
def test_right_pin_passes_and_resumes_a_lapsed_pension(eng, hsm, suite):
    with pytest.raises(errors.NotCertified):  # suspends for a lapsed certification
        eng.pensions.collect("T1:p1", PID, 100 * Y, "BJHALL")
    ok = certify(eng, "c1", block(hsm, suite=suite).hex())
    assert ok.passed and ok.failure is None and ok.benefit_status == 1
    assert "verified by the centre" in ok.reason
    last = eng.registry.audit_trail(PID)[-2]  # certified, then pension_resumed
    assert (last.event, last.detail["pin_check"]) == ("certified", "online")


def test_wrong_pin_is_a_typed_failure_that_changes_nothing_else(eng, hsm):
    with pytest.raises(errors.NotCertified):
        eng.pensions.collect("T1:p1", PID, 100 * Y, "BJHALL")
    before = snapshot(eng)
    trail = len(eng.registry.audit_trail(PID))
    bad = certify(eng, "c1", block(hsm, "11223344"))
    assert (bad.passed, bad.failure, bad.valid_until) == (False, "pin_wrong", None)
    assert bad.benefit_status == 2 and "does not match" in bad.reason
    assert snapshot(eng) == before
    (entry,) = eng.registry.audit_trail(PID)[trail:]
    assert (entry.event, entry.detail["failure"], entry.detail["method"]) == (
        "certification_failed", "pin_wrong", "card_pin")
    assert "pin_block" not in entry.detail
    # the same serial again replays the failure; then the right PIN passes
    assert certify(eng, "c1", block(hsm, "11223344")).replayed
    assert certify(eng, "c2", block(hsm)).passed


def test_unreadable_block_and_missing_reference(eng, hsm, store):
    before = snapshot(eng)
    garbage = certify(eng, "c1", bytes(16))
    assert (garbage.passed, garbage.failure) == (False, "pin_block_unreadable")
    with pytest.raises(errors.UnknownCard):  # a card the centre does not know: refused before the PIN is checked
        certify(eng, "c2", block(hsm), card_no="C0000099")
    assert snapshot(eng) == before
    eng.registry.add_person("110105194001010011", "Qian Li", "110000", "retiree", card_no="C0000010")
    none = eng.identity.certify("T1:c3", "110105194001010011", "card_pin", actor="T1", card_no="C0000010",
                                pin_block=block(hsm, person="110105194001010011"))
    assert (none.passed, none.failure) == (False, "no_pin_reference")


def test_the_card_refusing_the_pin_fails_whatever_the_block(eng, hsm):
    c = certify(eng, "c1", block(hsm), pin_verified=False)
    assert (c.passed, c.failure) == (False, "pin_not_verified")


def test_without_a_block_only_a_recorded_attempt_is_replayed(eng, hsm):
    with pytest.raises(errors.InvalidRequest, match="needs pin_block"):
        certify(eng, "c1", None)
    assert eng.registry.audit_trail(PID)[-1].event == "pin_reference_set"  # nothing recorded
    first = certify(eng, "c2", block(hsm))
    again = certify(eng, "c2", None)  # a terminal resending after a restart keeps no PIN block
    assert again.replayed and again.model_copy(update={"replayed": False}) == first
    with pytest.raises(errors.InvalidRequest):
        certify(eng, "c3", "not hex")
    with pytest.raises(errors.InvalidRequest):
        certify(eng, "c3", bytes(12))


def test_no_verifier_or_hsm_down_records_nothing(eng, hsm):
    before = (snapshot(eng), len(eng.registry.audit_trail(PID)))

    class Down:
        def verify_pin(self, *a):
            raise HsmUnavailable("no connection")

    with pytest.raises(errors.PinCheckUnavailable) as e:
        certify(rewired(eng, HsmPinVerifier(Down())), "c1", block(hsm))
    assert e.value.http_status == 503
    eng = rewired(eng, None)
    with pytest.raises(errors.PinCheckUnavailable):
        certify(eng, "c1", block(hsm))
    assert (snapshot(eng), len(eng.registry.audit_trail(PID))) == before
    # an engine without a verifier still takes the card's word (load generators, older deployments)
    legacy = certify(eng, "c1", None)
    assert legacy.passed and "by the card" in legacy.reason


def test_pin_reference_changes_are_audited_without_the_reference(eng, hsm, verifier):
    new_ref = verifier.reference(block(hsm, "55667788"), pin_pan(PID))
    eng.registry.set_pin_reference(PID, CARD, new_ref, actor="hall-7", source="pin change")
    eng.registry.set_pin_reference(PID, CARD, new_ref, actor="hall-7", source="pin change")  # no-op
    sets = [a for a in eng.registry.audit_trail(PID) if a.event == "pin_reference_set"]
    assert [a.detail["replaced"] for a in sets] == [False, True]
    assert all(new_ref.hex() not in str(a.detail) for a in sets)
    assert certify(eng, "c1", block(hsm)).failure == "pin_wrong"
    assert certify(eng, "c2", block(hsm, "55667788")).passed
    with pytest.raises(errors.InvalidRequest):
        eng.registry.set_pin_reference(PID, CARD, b"short", actor="x")


def test_a_reference_changed_during_the_check_is_checked_again(eng, hsm, verifier):
    new_ref = verifier.reference(block(hsm, "55667788"), pin_pan(PID))
    calls = []

    class Racing:
        def verify(self, pin_block, pan, reference):
            calls.append(reference)
            if len(calls) == 1:  # a service hall re-enrols the PIN while this check runs
                eng.registry.set_pin_reference(PID, CARD, new_ref, actor="hall")
            return verifier.verify(pin_block, pan, reference)

    c = certify(rewired(eng, Racing()), "c1", block(hsm, "55667788"))
    assert c.passed and len(calls) == 2 and calls[1] == new_ref


def test_verifier_outcomes(hsm, verifier):
    pan = pin_pan(PID)
    ref = verifier.reference(block(hsm), pan)
    assert verifier.verify(block(hsm), pan, ref) is PinCheck.MATCH
    assert verifier.verify(block(hsm, suite="3DES"), pan, ref) is PinCheck.MATCH  # the reference knows no PIK
    assert verifier.verify(block(hsm, "1234"), pan, ref) is PinCheck.WRONG
    assert verifier.verify(bytes(8), pan, ref) is PinCheck.UNREADABLE
    with pytest.raises(errors.PinCheckUnavailable):
        HsmPinVerifier(hsm, prefix="NOKEYS").verify(block(hsm), pan, ref)


def test_over_http_the_block_is_validated_and_never_logged_or_stored(store, hsm, verifier, caplog, tmp_path):
    eng = make_engine(store, Clock(), pin_verifier=verifier)
    eng.registry.add_person(PID, "Zhou Min", "110000", "retiree", card_no=CARD)
    eng.pensions.enrol(PID, MONTHLY, "2024-01")
    eng.registry.set_pin_reference(PID, CARD, verifier.reference(block(hsm), pin_pan(PID)), actor="issuance")
    app = create_app(eng, terminals=[TerminalKey("T1", hash_key("k1"), "BJ3")])
    blocks = [block(hsm).hex().upper(), block(hsm, "11223344").hex()]
    caplog.set_level(logging.DEBUG)
    with TestClient(app) as http:
        svc = SettlementClient("http://test", "k1", http=http)
        ok = svc.certify(serial="c1", person_id=PID, method="card_pin", card_no=CARD,
                         pin_block=bytes.fromhex(blocks[0]))
        assert ok.passed
        bad = svc.certify(serial="c2", person_id=PID, method="card_pin", card_no=CARD, pin_block=blocks[1])
        assert (bad.passed, bad.failure) == (False, "pin_wrong")
        for wrong in ("ZZ" * 8, "00" * 12, "1234"):
            r = http.post("/v1/identity/certify", headers={"X-Terminal-Key": "k1"}, json={
                "terminal_serial": "c3", "person_id": PID, "method": "card_pin", "card_no": CARD, "pin_block": wrong})
            assert r.status_code == 422 and r.json()["code"] == "INVALID_REQUEST"
            assert wrong not in r.text and r.json()["details"]["errors"][0]["field"] == "pin_block"
        schema = http.get("/openapi.json").json()["components"]["schemas"]["CertifyRequest"]
        assert "pin_block" in schema["properties"]
    secrets = [PIN, "11223344", *blocks, *(b.lower() for b in blocks)]
    assert not [s for s in secrets if s in caplog.text]
    dump = store.read(lambda tx: [str(row) for table in _tables(tx) for row in tx.rows(f"SELECT * FROM {table}")])
    assert not [s for s in secrets if any(s in row for row in dump)]


def _tables(tx) -> list[str]:
    if tx.dialect == "sqlite":
        return [n for (n,) in tx.rows("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return [n for (n,) in tx.rows("SELECT table_name FROM information_schema.tables WHERE table_schema = "
                                  "current_schema()")]
