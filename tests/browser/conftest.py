"""A real browser for the counter page: Debian's chromium driven by Playwright (never `playwright install`).

Each test module gets a fresh headless Chromium with its own profile directory, started and stopped here.
Screenshots go to `test-output/counter/` at the repository root (ignored by git) for a reviewer, and the
path is printed. With REQUIRE_PCSC=1 (as `make test` sets; these tests also need pcscd) a missing
chromium fails the tests instead of skipping them; scripts/install-system-deps.sh installs it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "counter"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """A persistent Chromium context (fresh profile) with a 1200x900 window and Chinese as its language."""
    if not os.path.exists(CHROMIUM):
        msg = f"{CHROMIUM} is missing (Debian package chromium; scripts/install-system-deps.sh installs it)"
        if os.environ.get("REQUIRE_PCSC"):
            pytest.fail(msg)
        pytest.skip(msg)
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="sscard-chromium-")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=ARGS, viewport={"width": 1200, "height": 900},
            locale="zh-CN", timezone_id="Asia/Shanghai")
        try:
            yield context
        finally:
            context.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def shots() -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    print(f"\nscreenshots of the counter page: {SHOTS}")
    return SHOTS
