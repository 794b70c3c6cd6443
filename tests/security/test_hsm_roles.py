"""Commands by role (issue 12, "What must exist" 2): terminals compute MACs, cryptograms and PIN blocks and
never generate, import, list, export or delete keys; the settlement service checks PIN blocks; only the
console manages keys. A refusal is error 41 (NotAuthorised) naming the command, the roles allowed and the
client's; it is audited under the client's id and leaves the key store as it was.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hsm_client.client import HsmClient
from hsm_client.errors import NotAuthorised
from hsm_mock.commands import LocalHsm
from tests.security.conftest import CARD_ID, PAN, key_versions

KEY_MANAGEMENT = [
    ("generate_key", ("SSSE-SM4-PVK", "PVK", "SM4")),  # a new PVK version: every PIN check fails
    ("import_key", ("SSSE-SM4-EAK", "MK", "SM4", "SSSE-SM4-TRANSPORT-KEK", bytes(16), bytes(3))),
    ("delete_key", ("SSSE-SM4-PVK",)),  # with all its versions
    ("list_keys", ("",)),
    ("diversify", ("SSSE-SM4-EAK", CARD_ID, "SSSE-SM4-TRANSPORT-KEK")),  # a card key out under a KEK
]
CARD_WORK = [
    ("ext_auth_cryptogram", ("SSSE-SM4-EAK", CARD_ID, bytes(16))),
    ("session_mac", ("SSSE-SM4-MAK_DF04", CARD_ID, bytes(8), b"\x04\xdc\x01\x0c\x0b")),
    ("encrypt_pin", ("SSSE-SM4-PIK", "123456", PAN)),
]


@pytest.mark.parametrize("who", ["T0001", "centre"])
@pytest.mark.parametrize("method, args", KEY_MANAGEMENT, ids=[m for m, _ in KEY_MANAGEMENT])
def test_only_the_console_manages_keys(who: str, method: str, args: tuple, hsm: LocalHsm,
                                       connect: Callable[..., HsmClient]) -> None:
    before = key_versions(hsm)
    with pytest.raises(NotAuthorised) as err:
        getattr(connect(who), method)(*args)
    assert err.value.code == "41"
    assert f"{method} is for the console role; client {who} is" in str(err.value)
    assert key_versions(hsm) == before
    assert [(e.command, e.result, e.client) for e in hsm.audit.entries(client=who)] == [(method, "41", who)]


@pytest.mark.parametrize("who", ["centre", "ops"])
@pytest.mark.parametrize("method, args", CARD_WORK, ids=[m for m, _ in CARD_WORK])
def test_only_terminals_compute_for_cards(who: str, method: str, args: tuple, hsm: LocalHsm,
                                          connect: Callable[..., HsmClient]) -> None:
    with pytest.raises(NotAuthorised, match=f"{method} is for the terminal role"):
        getattr(connect(who), method)(*args)
    assert [e.result for e in hsm.audit.entries(client=who)] == ["41"]


def test_each_role_does_its_own_work(hsm: LocalHsm, connect: Callable[..., HsmClient]) -> None:
    terminal, centre, console = connect("T0001"), connect("centre"), connect("ops")
    for method, args in CARD_WORK:
        assert getattr(terminal, method)(*args) == getattr(hsm, method)(*args)
    block = terminal.encrypt_pin("SSSE-SM4-PIK", "123456", PAN)
    reference = centre.pin_reference("SSSE-SM4-PIK", "SSSE-SM4-PVK", block, PAN)
    centre.verify_pin("SSSE-SM4-PIK", "SSSE-SM4-PVK", block, PAN, reference)
    with pytest.raises(NotAuthorised, match="verify_pin is for the settlement role"):
        terminal.verify_pin("SSSE-SM4-PIK", "SSSE-SM4-PVK", block, PAN, reference)
    info = console.generate_key("ops.mak", "MAK", "SM4")
    assert console.list_keys("ops.") == [info]
    terminal.verify_mac("ops.mak", b"data", terminal.generate_mac("ops.mak", b"data"))
    assert console.delete_key("ops.mak") == 1
    assert [(e.command, e.client) for e in hsm.audit.entries(label="ops.mak") if e.command.endswith("_key")] == [
        ("generate_key", "ops"), ("delete_key", "ops")]
