"""The layer rules of ARCHITECTURE.md, checked on every module's imports (lazy imports included), with no
exceptions.

Between packages, imports point downward: sscard (the composition root) may import every package; terminal
imports cardlib, the settlement contract (`settlement.wire`, `settlement.errors`), `settlement.api.client`, the
dependency-free HTTP gate `settlement.api.guard` (both apps refuse bodies alike) and the HSM client
(`hsm_client`); cardlib, settlement and hsm_mock import none of each other (the mock HSM speaks `hsm_client`'s
host protocol, which imports nothing of ours); sim uses cardlib's layout, profiles (a card's suite follows its
spec version) and codecs only; testing (harnesses for tests and benches) uses settlement; nothing on a
production path imports sim or testing.

Inside settlement: api -> reconcile -> schemes -> ledger, each importing only downward; every layer may use
the dependency-free contract (`settlement.wire`, `settlement.errors`), which imports nothing else of
settlement; above the ledger, the ledger is used through its public API (`settlement.ledger`) and a store
backend (`settlement.ledger.store.sqlite` / `.postgres`) only. The schemes' flows (medical, pension, identity,
fraud, registry, cards, uploads) import none of each other: they share records, policy, chart and the protocols of
`schemes/hooks.py`, and only the engine wires them.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("cardlib", "settlement", "hsm_client", "hsm_mock", "sim", "terminal", "sscard", "testing")
PACKAGES = {
    "cardlib": {"cardlib"},
    "settlement": {"settlement"},
    "hsm_client": {"hsm_client"},
    "hsm_mock": {"hsm_mock", "hsm_client"},
    "sim": {"sim", "cardlib"},
    "terminal": {"terminal", "cardlib", "settlement", "hsm_client"},
    "testing": {"testing", "settlement"},
    "sscard": set(OURS),
}
CONTRACT = {"settlement.wire", "settlement.errors"}
TERMINAL_SETTLEMENT = CONTRACT | {"settlement.api.client", "settlement.api.guard"}
SIM_CARDLIB = {  # the card's layout and profiles (what differs by spec version: the suite) and the codecs a
    # card speaks (APDU, TLV, data formats, suites, frames)
    "cardlib.layout", "cardlib.profiles", "cardlib.fields", "cardlib.tlv", "cardlib.apdu", "cardlib.crypto",
    "cardlib.errors", "cardlib.psam", "cardlib.readers.serial",
    "cardlib.trace",  # the APDU trace format, shared by the CLI that records and the replay card
}
LEDGER_API = {"settlement.ledger", "settlement.ledger.store.sqlite", "settlement.ledger.store.postgres"}
SETTLEMENT_LAYERS = ("ledger", "schemes", "reconcile", "api")  # bottom to top
FLOWS = {f"settlement.schemes.{m}" for m in ("medical", "pension", "identity", "fraud", "registry", "cards",
                                                 "uploads", "engine")}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports(path: Path) -> set[str]:
    """Our modules `path` imports (`from pkg import mod` counts as pkg.mod when mod is a module)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            subs = {f"{node.module}.{a.name}" for a in node.names}
            found = {s for s in subs if is_module(s)}
            out.update(found)
            if found != subs:
                out.add(node.module)
    return {m for m in out if m.split(".")[0] in OURS}


def settlement_layer(name: str) -> int | None:
    """0-based layer of a settlement module (ledger lowest), None for the contract and the package itself."""
    parts = name.split(".")
    return SETTLEMENT_LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in SETTLEMENT_LAYERS else None


def wrong_import(src: str, dst: str) -> str | None:
    """Why `src` may not import `dst`, or None."""
    top, dtop = src.split(".")[0], dst.split(".")[0]
    if dtop not in PACKAGES[top]:
        return f"{top} may not import {dtop}"
    if top == "sim" and dtop == "cardlib" and dst not in SIM_CARDLIB:
        return "sim uses cardlib's layout and codecs only"
    if top == "terminal" and dtop == "settlement" and dst not in TERMINAL_SETTLEMENT:
        return "terminal uses settlement.wire, settlement.errors, settlement.api.client and .guard only"
    if top == "settlement" and dtop == "settlement":
        if src in CONTRACT:
            return None if dst == "settlement.errors" and src == "settlement.wire" else "the contract imports nothing"
        if dst in CONTRACT:
            return None
        s, d = settlement_layer(src), settlement_layer(dst)
        if s is None or d is None or d > s:
            return "inside settlement, imports point down: api -> reconcile -> schemes -> ledger"
    if src in FLOWS and dst in FLOWS and src != "settlement.schemes.engine":
        return "a scheme reaches another only through the protocols the engine wires (schemes/hooks.py)"
    if dst.startswith("settlement.ledger.") and not src.startswith("settlement.ledger") and dst not in LEDGER_API:
        return "above the ledger, use its public API (settlement.ledger) or a store backend"
    return None


SOURCES = sorted(p for pkg in OURS for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("package", OURS)
def test_imports_point_downward(package: str) -> None:
    wrong = {
        f"{module_name(p)} -> {dst}": why
        for p in SOURCES if p.is_relative_to(ROOT / package)
        for dst in sorted(imports(p))
        if (why := wrong_import(module_name(p), dst)) is not None
    }
    assert wrong == {}


def test_the_rules_catch_wrong_imports() -> None:
    """The checker itself refuses what the design forbids (so the rules above cannot pass vacuously)."""
    assert wrong_import("terminal.session", "sim.personalize")
    assert wrong_import("terminal.app", "settlement.schemes.medical")
    assert wrong_import("settlement.ledger.ledger", "settlement.schemes.chart")
    assert wrong_import("settlement.schemes.medical", "settlement.reconcile.sql")
    assert wrong_import("settlement.schemes.medical", "settlement.ledger.batch")
    assert wrong_import("settlement.wire", "settlement.ledger")
    assert wrong_import("sim.world", "settlement.wire")
    assert wrong_import("sim.pcsc_stack", "cardlib.readers.pcsc")
    assert wrong_import("hsm_mock.server", "settlement.errors")
    assert wrong_import("settlement.api.service", "testing.pgtemp")
    assert wrong_import("terminal.daemon", "hsm_mock.commands")
    assert wrong_import("settlement.schemes.pension", "settlement.schemes.identity")
    assert wrong_import("settlement.schemes.medical", "settlement.schemes.engine")
    assert wrong_import("settlement.reconcile.repair", "settlement.schemes.engine") is None
    assert wrong_import("terminal.flows", "settlement.wire") is None


def test_settlement_service_uses_no_hsm_client() -> None:
    """The centre's HSM adapter is composition code, not part of settlement."""
    assert not any(m.startswith("hsm_") for m in imports(ROOT / "settlement" / "api" / "service.py"))
    assert {m.split(".")[0] for m in imports(ROOT / "sscard" / "hsm_pin.py")} == {"hsm_client", "settlement"}


def loaded_by(module: str) -> list[str]:
    """Our modules a fresh interpreter has loaded after importing `module`."""
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return [m for m in json.loads(out.stdout) if m.split(".")[0] in OURS]


def test_the_terminal_loads_the_contract_not_the_engine() -> None:
    """Importing the terminal's app loads no ledger, store or scheme module: only the wire contract, the
    errors, the service client and the HTTP gate of settlement; and no simulator, mock HSM or test harness."""
    loaded = loaded_by("terminal.app")
    assert [m for m in loaded if m.startswith("settlement.")] == ["settlement.api", "settlement.api.client",
                                                                   "settlement.api.guard", "settlement.errors",
                                                                   "settlement.wire"]
    assert [m for m in loaded if m.split(".")[0] in ("sim", "hsm_mock", "testing")] == []


@pytest.mark.parametrize("module", ["terminal.daemon", "settlement.api.service"])
def test_production_paths_load_no_simulator_or_harness(module: str) -> None:
    assert [m for m in loaded_by(module) if m.split(".")[0] in ("sim", "hsm_mock", "testing")] == []
