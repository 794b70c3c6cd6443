"""PIN encryption (BA) is not an oracle (issue 12, finding 4: "a PIN was recovered from its block in 1,903
tries, 0.2 s"). The attack: take a PIN block off the wire, then ask the HSM to encrypt guesses 000000,
000001, ... for the same PAN until one gives the same block. Each client has a token bucket per limited
command (default for encrypt_pin: 0.1/s, burst 10, see hsm_mock/access.py); beyond it the HSM answers 42
(RateLimited) and raises an alarm (audit entry "alarm", WARNING log line), at most once a minute.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from hsm_client.client import HsmClient
from hsm_client.errors import RateLimited
from hsm_mock.access import DEFAULT_LIMITS
from hsm_mock.commands import LocalHsm
from tests.security.conftest import PAN, FakeClock

PIN = "001902"  # the 1,903rd guess
LIMIT = DEFAULT_LIMITS["encrypt_pin"]


def attack(client: HsmClient, captured: bytes, guesses: range) -> tuple[int, int, str | None]:
    """(answered, refused, PIN found or None)."""
    answered = refused = 0
    for guess in guesses:
        try:
            block = client.encrypt_pin("SSSE-SM4-PIK", f"{guess:06d}", PAN)
        except RateLimited:
            refused += 1
            continue
        answered += 1
        if block == captured:
            return answered, refused, f"{guess:06d}"
    return answered, refused, None


def test_the_pin_oracle_is_throttled_and_alarmed(hsm: LocalHsm, connect: Callable[..., HsmClient],
                                                 clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    captured = hsm.encrypt_pin("SSSE-SM4-PIK", PIN, PAN)  # the block a counter sent for this holder
    attacker = connect("T0001")
    # At once, as in the finding: the first `burst` guesses are answered, the 1,893 after them refused.
    answered, refused, found = attack(attacker, captured, range(0, 1903))
    assert (answered, refused, found) == (LIMIT.burst, 1903 - LIMIT.burst, None)
    # Kept up for ten minutes of the server's clock, ten guesses a second: 0.1 answered a second.
    for second in range(600):
        clock.advance(1.0)
        a, r, found = attack(attacker, captured, range(1903 + 10 * second, 1903 + 10 * second + 10))
        answered, refused = answered + a, refused + r
        assert found is None
    assert answered <= LIMIT.burst + 600 * LIMIT.rate + 1
    days_for_all_pins = 10**6 / LIMIT.rate / 86400
    print(f"answered {answered} of {answered + refused} guesses; all 10^6 PINs would take {days_for_all_pins:.0f} days")
    assert days_for_all_pins > 100
    # Alarmed: once when it began, then once a minute while it went on; in the audit and the log.
    alarms = hsm.audit.entries(command="alarm")
    assert 1 <= len(alarms) <= 600 // 60 + 1
    assert {(a.client, a.labels, a.result) for a in alarms} == {("T0001", ("rate:encrypt_pin",), "42")}
    warnings = [r.getMessage() for r in caplog.records if "ALARM" in r.getMessage()]
    assert len(warnings) == len(alarms)
    assert "client T0001 exceeded its encrypt_pin limit (0.1/s, burst 10)" in warnings[0]
    assert [e.result for e in hsm.audit.entries(command="encrypt_pin", client="T0001")].count("42") == refused
    # Another terminal's bucket is its own: the attack does not lock it out.
    assert connect("T0002").encrypt_pin("SSSE-SM4-PIK", "123456", PAN)


def test_the_limit_holds_across_connections(hsm: LocalHsm, connect: Callable[..., HsmClient]) -> None:
    """Opening more connections (or clients objects) with the same credential does not buy more guesses."""
    clients = [connect("T0001", pool_size=1) for _ in range(4)]
    answered = sum(attack(c, b"", range(i * 10, i * 10 + 10))[0] for i, c in enumerate(clients))
    assert answered == LIMIT.burst
