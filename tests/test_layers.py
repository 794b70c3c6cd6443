"""The layer rules of ARCHITECTURE.md, checked on every module's imports (lazy imports included).

cardlib knows no money; settlement knows no cards, HTTP clients of other layers, or the HSM (adapters
such as sscard/hsm_pin.py live with the composition); hsm_mock knows neither; sim is the card side and
may seed the engine (sim/world.py, sim/load.py); terminal composes; sscard (CLI, stack, demo) may use all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"cardlib", "settlement", "hsm_mock", "sim", "terminal", "sscard"}
ALLOWED = {
    "cardlib": {"cardlib"},
    "settlement": {"settlement"},
    "hsm_mock": {"hsm_mock"},
    "sim": {"sim", "cardlib", "settlement"},
    "terminal": {"terminal", "cardlib", "settlement", "hsm_mock", "sim"},
}


def imported_packages(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_the_right_way(package: str) -> None:
    wrong = {
        str(p.relative_to(ROOT)): sorted(imported_packages(p) - ALLOWED[package])
        for p in sorted((ROOT / package).rglob("*.py"))
    }
    assert {k: v for k, v in wrong.items() if v} == {}


def test_settlement_service_uses_no_hsm_client() -> None:
    """The centre's HSM adapter is composition code, not part of settlement."""
    assert "hsm_mock" not in imported_packages(ROOT / "settlement" / "service.py")
    assert imported_packages(ROOT / "sscard" / "hsm_pin.py") == {"hsm_mock", "settlement"}
