"""Fixtures the scheme tests share."""

from __future__ import annotations

import pytest

from tests.settlement.flows_helpers import Clock


@pytest.fixture
def clock() -> Clock:
    """A fresh test clock for each test (tests/settlement/flows_helpers.Clock)."""
    return Clock()
