"""`sscard hsm ...`: run the mock HSM's host-command server and manage its keys.

The LMK comes from SSCARD_HSM_LMK (hex, environment only: never a command-line argument, where `ps`
would show it) or from a file (--lmk-file / SSCARD_HSM_LMK_FILE). Keys are never printed in clear.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from hsm_client.errors import HsmError
from hsm_client.wire import DEFAULT_HOST, DEFAULT_PORT
from hsm_mock.audit import AuditLog
from hsm_mock.commands import LocalHsm
from hsm_mock.keystore import LMK_FILE_ENV, KeyStore, Lmk
from hsm_mock.server import serve as serve_forever

app = typer.Typer(help="The mock HSM: host-command server and key store.", no_args_is_help=True)
keys_app = typer.Typer(help="Keys in the HSM key store (shown by label and KCV, never in clear).",
                       no_args_is_help=True)
app.add_typer(keys_app, name="keys")
console = Console()

KeystoreOpt = typer.Option(None, "--keystore", envvar="SSCARD_HSM_KEYSTORE",
                           help="SQLite key store file (wrapped keys only).")
LmkFileOpt = typer.Option(None, "--lmk-file", envvar=LMK_FILE_ENV,
                          help="File with the LMK (64 hex digits); else SSCARD_HSM_LMK in the environment.")


def _lmk(lmk_file: Path | None) -> Lmk:
    return Lmk.from_file(lmk_file) if lmk_file else Lmk.from_env()


def _fail(err: HsmError) -> typer.Exit:
    console.print(f"[red]error {err.code}: {err}[/red]")
    return typer.Exit(1)


def _store(keystore: Path | None, lmk_file: Path | None) -> KeyStore:
    if keystore is None:
        console.print("[red]--keystore (or SSCARD_HSM_KEYSTORE) is required[/red]")
        raise typer.Exit(2)
    try:
        return KeyStore(_lmk(lmk_file), keystore)
    except HsmError as err:
        raise _fail(err) from None


@app.command()
def serve(
    host: str = typer.Option(DEFAULT_HOST, help="Address to bind (loopback unless you mean otherwise)."),
    port: int = typer.Option(DEFAULT_PORT, help="TCP port (0 = any free port)."),
    keystore: Path | None = KeystoreOpt,
    lmk_file: Path | None = LmkFileOpt,
    audit_db: Path | None = typer.Option(None, "--audit-db", help="SQLite file for the audit trail."),
    ephemeral: bool = typer.Option(False, help="Random LMK and an in-memory key store (demos, tests)."),
) -> None:
    """Serve the host-command protocol until SIGINT/SIGTERM."""
    try:
        store = KeyStore(Lmk.ephemeral()) if ephemeral else _store(keystore, lmk_file)
        hsm = LocalHsm(store, AuditLog(audit_db))
    except HsmError as err:
        raise _fail(err) from None
    try:
        serve_forever(hsm, host, port, on_ready=lambda h, p: print(f"listening on {h}:{p}", flush=True))
    finally:
        hsm.close()


@app.command("new-lmk")
def new_lmk(path: Path = typer.Argument(..., help="File to create (mode 0600), never overwritten.")) -> None:
    """Create a random LMK file. Keep it out of the repository and back it up: without it no key opens."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        console.print(f"[red]cannot create {path}: {exc.strerror}[/red]")
        raise typer.Exit(1) from None
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    console.print(f"LMK written to {path} (check value {Lmk.from_file(path).check_value})")


@keys_app.command("list")
def list_keys(
    prefix: str = typer.Option("", help="Only labels starting with this."),
    keystore: Path | None = KeystoreOpt,
    lmk_file: Path | None = LmkFileOpt,
) -> None:
    """List key versions: label, version, type, suite, KCV, diversification rule."""
    store = _store(keystore, lmk_file)
    table = Table("label", "version", "type", "suite", "KCV", "div rule")
    for info in store.list(prefix):
        table.add_row(info.label, str(info.version), info.key_type.value, info.suite.value,
                      info.kcv.hex().upper(), info.div_rule)
    store.close()
    console.print(table)


@keys_app.command("generate")
def generate(
    label: str = typer.Option(..., help="Key label (a new version if it exists)."),
    key_type: str = typer.Option(..., "--type", help="MK, MAK, PIK, PVK or KEK."),
    suite: str = typer.Option(..., help="3DES or SM4."),
    div_rule: str = typer.Option("", help="MK only: last8 (default), first8, xor8, offset:N, raw."),
    keystore: Path | None = KeystoreOpt,
    lmk_file: Path | None = LmkFileOpt,
) -> None:
    """Generate a random key; prints its label, version and KCV."""
    store = _store(keystore, lmk_file)
    try:
        info = store.generate(label, key_type, suite, div_rule)
    except HsmError as err:
        raise _fail(err) from None
    finally:
        store.close()
    console.print(f"{info.ref} {info.key_type.value} {info.suite.value} KCV {info.kcv.hex().upper()}")


@keys_app.command("load")
def load(
    label: str = typer.Option(..., help="Key label."),
    key_type: str = typer.Option(..., "--type", help="MK, MAK, PIK, PVK or KEK."),
    suite: str = typer.Option(..., help="3DES or SM4."),
    components: int = typer.Option(2, min=1, max=9, help="Number of clear components to XOR."),
    div_rule: str = typer.Option("", help="MK only: diversification rule."),
    keystore: Path | None = KeystoreOpt,
    lmk_file: Path | None = LmkFileOpt,
) -> None:
    """Key ceremony: enter clear components (hidden, 32 hex digits each) and the key's KCV."""
    store = _store(keystore, lmk_file)
    try:
        parts = [bytes.fromhex(typer.prompt(f"component {i + 1}", hide_input=True))
                 for i in range(components)]
        kcv = bytes.fromhex(typer.prompt("KCV of the key (6 hex digits)"))
        info = store.load_components(label, key_type, suite, parts, kcv, div_rule)
    except HsmError as err:
        raise _fail(err) from None
    except ValueError:
        console.print("[red]not hex[/red]")
        raise typer.Exit(1) from None
    finally:
        store.close()
    console.print(f"loaded {info.ref} {info.key_type.value} {info.suite.value} KCV {info.kcv.hex().upper()}")


@keys_app.command("delete")
def delete(
    ref: str = typer.Argument(..., help="label@version, or label for all versions."),
    keystore: Path | None = KeystoreOpt,
    lmk_file: Path | None = LmkFileOpt,
) -> None:
    """Delete a key version (or all versions of a label)."""
    store = _store(keystore, lmk_file)
    try:
        n = store.delete(ref)
    except HsmError as err:
        raise _fail(err) from None
    finally:
        store.close()
    console.print(f"deleted {n} key version(s)")


if __name__ == "__main__":  # pragma: no cover - `python -m sscard.hsm_cmd ...`
    app()
