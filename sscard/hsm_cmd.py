"""`sscard hsm ...`: run the mock HSM's host-command server, manage its keys and its clients.

The LMK comes from SSCARD_HSM_LMK (hex, environment only: never a command-line argument, where `ps`
would show it) or from a file (--lmk-file / SSCARD_HSM_LMK_FILE). Keys are never printed in clear.
The server serves only the clients of its client list (`--clients FILE`, see hsm_mock/access.py); each
holds a credential file that `sscard hsm clients issue` writes at the HSM's console, from the LMK.
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
from hsm_mock.access import AccessPolicy, AccessPolicyError
from hsm_mock.audit import AuditLog
from hsm_mock.commands import LocalHsm
from hsm_mock.keystore import LMK_FILE_ENV, KeyStore, Lmk
from hsm_mock.server import serve as serve_forever

app = typer.Typer(help="The mock HSM: host-command server and key store.", no_args_is_help=True)
keys_app = typer.Typer(help="Keys in the HSM key store (shown by label and KCV, never in clear).",
                       no_args_is_help=True)
app.add_typer(keys_app, name="keys")
clients_app = typer.Typer(help="The HSM's clients: who may use it, in which role, with which credential.",
                          no_args_is_help=True)
app.add_typer(clients_app, name="clients")
console = Console()

KeystoreOpt = typer.Option(None, "--keystore", envvar="SSCARD_HSM_KEYSTORE",
                           help="SQLite key store file (wrapped keys only).")
LmkFileOpt = typer.Option(None, "--lmk-file", envvar=LMK_FILE_ENV,
                          help="File with the LMK (64 hex digits); else SSCARD_HSM_LMK in the environment.")
ClientsOpt = typer.Option(None, "--clients", envvar="SSCARD_HSM_CLIENTS",
                          help="The client list (TOML): each client's id and role (terminal, settlement, console), "
                               "rate limits, connection limits and timeouts.")


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


def _policy(clients: Path | None, lmk: Lmk | None) -> AccessPolicy:
    if clients is None:
        console.print("[red]--clients FILE (or SSCARD_HSM_CLIENTS) is required: the list of the HSM's clients "
                      "and their roles (see hsm_mock/README.md)[/red]")
        raise typer.Exit(2)
    try:
        return AccessPolicy.load(clients, lmk)
    except AccessPolicyError as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: str = typer.Option(DEFAULT_HOST, help="Address to bind (loopback unless you mean otherwise)."),
    port: int = typer.Option(DEFAULT_PORT, help="TCP port (0 = any free port)."),
    clients: Path | None = ClientsOpt,
    keystore: Path | None = KeystoreOpt,
    lmk_file: Path | None = LmkFileOpt,
    audit_db: Path | None = typer.Option(None, "--audit-db", help="SQLite file for the audit trail."),
    ephemeral: bool = typer.Option(False, help="Random LMK and an in-memory key store (demos, tests)."),
    credentials_dir: Path | None = typer.Option(
        None, "--credentials-dir", file_okay=False,
        help="With --ephemeral: write each listed client's credential file (CLIENT.cred, mode 0600) here at "
             "start; an ephemeral LMK's clients can get them no other way."),
) -> None:
    """Serve the host-command protocol to the listed clients until SIGINT/SIGTERM."""
    if credentials_dir is not None and not ephemeral:
        console.print("[red]--credentials-dir is for --ephemeral; with a kept LMK issue credentials with "
                      "`sscard hsm clients issue`[/red]")
        raise typer.Exit(2)
    try:
        lmk = Lmk.ephemeral() if ephemeral else _lmk(lmk_file)
        policy = _policy(clients, lmk)
        store = KeyStore(lmk) if ephemeral else _store(keystore, lmk_file)
        hsm = LocalHsm(store, AuditLog(audit_db))
    except HsmError as err:
        raise _fail(err) from None
    if credentials_dir is not None:
        credentials_dir.mkdir(parents=True, exist_ok=True)
        for cid in policy.clients:
            try:
                policy.credential(cid).save(credentials_dir / f"{cid}.cred")
            except OSError as e:
                console.print(f"[red]cannot write {credentials_dir / f'{cid}.cred'}: {e.strerror}[/red]")
                raise typer.Exit(1) from None
    try:
        serve_forever(hsm, host, port, on_ready=lambda h, p: print(f"listening on {h}:{p}", flush=True),
                      access=policy)
    finally:
        hsm.close()


@clients_app.command("issue")
def issue(
    client: str = typer.Argument(..., help="The client's id, as in the client list (e.g. T0001)."),
    out: Path = typer.Option(..., "--out", help="Credential file to create (mode 0600), never overwritten."),
    clients: Path | None = ClientsOpt,
    lmk_file: Path | None = LmkFileOpt,
) -> None:
    """Write one client's credential (its id and its key, derived from the LMK) at the HSM's console.
    Give the file to that client only: to its terminal config ([hsm] credential), or to
    `sscard settlement serve --hsm-credential`. To revoke it, raise the client's generation in the list."""
    try:
        policy = _policy(clients, _lmk(lmk_file))
        cred = policy.credential(client)
        cred.save(out)
    except HsmError as err:
        raise _fail(err) from None
    except AccessPolicyError as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(1) from None
    except OSError as e:
        console.print(f"[red]cannot create {out}: {e.strerror}[/red]")
        raise typer.Exit(1) from None
    roles = " and ".join(policy.clients[client].roles)
    console.print(f"credential of {client} ({roles}) written to {out}: give it to that client only")


@clients_app.command("list")
def list_clients(clients: Path | None = ClientsOpt) -> None:
    """Check the client list and show each client's roles, key generation and rate limits (no LMK needed)."""
    policy = _policy(clients, None)
    table = Table("client", "roles", "generation", "rate limits")
    for c in policy.clients.values():
        table.add_row(c.id, ", ".join(c.roles), str(c.generation),
                      "; ".join(f"{m} {lim}" for m, lim in sorted(c.limits.items())))
    console.print(table)
    lim = policy.limits
    console.print(f"connections: {lim.max_connections} in all, {lim.max_connections_per_client} per client; "
                  f"idle timeout {lim.idle_timeout:g} s, frame timeout {lim.frame_timeout:g} s")


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
