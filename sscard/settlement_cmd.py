"""`sscard settlement ...`: run the central settlement service and manage terminal keys."""

from __future__ import annotations

import socket
from pathlib import Path

import typer

from sscard.options import HsmCredentialOption

app = typer.Typer(help="The central settlement service.", no_args_is_help=True)


@app.command()
def serve(
    db: Path = typer.Option(None, "--db", envvar="SSCARD_DB", help="SQLite database file (the default store)."),
    postgres: str = typer.Option(None, "--postgres", envvar="SSCARD_POSTGRES_DSN",
                                 help="PostgreSQL DSN, instead of --db."),
    keys: Path = typer.Option(..., "--keys", exists=True, dir_okay=False, envvar="SSCARD_TERMINAL_KEYS",
                              help="TOML file of terminal keys (see settlement/api/auth.py)."),
    host: str = typer.Option("127.0.0.1", envvar="SSCARD_BIND",
                             help="Address to bind; 127.0.0.1 unless you mean to expose it."),
    port: int = typer.Option(8700, envvar="SSCARD_PORT", help="TCP port."),
    fd: int = typer.Option(None, "--fd", help="Serve on this inherited listening socket instead of binding "
                                              "--host/--port (socket activation; tests)."),
    policies: Path = typer.Option(None, "--policies", file_okay=False, envvar="SSCARD_POLICIES",
                                  help="Directory of policy TOML files."),
    biometric_threshold: float = typer.Option(0.80, min=0.0, max=1.0, help="Biometric match score to pass."),
    hsm: str = typer.Option(None, "--hsm", metavar="HOST:PORT", envvar="SSCARD_HSM",
                            help="The centre's HSM (host-command protocol): card_pin certifications are then "
                                 "checked online against the PIN references recorded at issuance."),
    hsm_credential: Path = HsmCredentialOption,
    hsm_prefix: str = typer.Option("SSSE", help="Label prefix of the issuer's keys in the HSM (<prefix>-SM4-PVK...)."),
    hsm_timeout: float = typer.Option(2.0, min=0.1, help="Seconds per HSM command."),
    national_catalogue: Path = typer.Option(None, "--national-catalogue", exists=True, dir_okay=False,
                                            envvar="SSCARD_NATIONAL_CATALOGUE",
                                            help="Medical list of the national platform interface (TOML, see "
                                                 "settlement/api/national_catalogue.toml)."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
) -> None:
    """Serve the settlement HTTP API (OpenAPI at /docs and /openapi.json) and the national platform
    interface (POST /fsi/api/rsfComIfsService/callService). Each option can also come from the environment
    variable its help names (a systemd EnvironmentFile, a container's environment)."""
    import uvicorn

    from settlement.api.auth import load_terminal_keys
    from settlement.api.service import create_app
    from settlement.schemes.engine import Settings
    from settlement.schemes.policy import PolicyBook
    from sscard.hsm_pin import HsmPinVerifier

    if (db is None) == (postgres is None):
        raise typer.BadParameter("give exactly one of --db PATH or --postgres DSN")
    catalogue = None
    if national_catalogue is not None:
        from settlement.api.national_data import load_catalogue

        try:
            catalogue = load_catalogue(national_catalogue)
        except ValueError as e:  # TOMLDecodeError too
            raise typer.BadParameter(str(e), param_hint="--national-catalogue") from None
    verifier = None
    if hsm:
        from sscard.options import hsm_client

        verifier = HsmPinVerifier(hsm_client(hsm, hsm_credential, hsm_timeout), hsm_prefix)
    if postgres is not None:
        from settlement.ledger.store.postgres import PostgresStore

        store = PostgresStore(postgres)
    else:
        from settlement.ledger.store.sqlite import SqliteStore

        store = SqliteStore(db)
    try:
        book = PolicyBook.load(policies) if policies else None
        app_ = create_app(store, terminals=load_terminal_keys(keys), policies=book,
                          settings=Settings(biometric_threshold=biometric_threshold), pin_verifier=verifier,
                          national_catalogue=catalogue)
        if fd is None:
            uvicorn.run(app_, host=host, port=port, log_level=log_level)
        else:
            uvicorn.Server(uvicorn.Config(app_, log_level=log_level)).run(sockets=[socket.socket(fileno=fd)])
    finally:
        if verifier is not None:
            verifier.hsm.close()
        store.close()


@app.command("new-key")
def new_key(
    terminal_id: str = typer.Argument(..., help="Terminal id, e.g. T0001."),
    institution: str = typer.Option(None, help="Institution the terminal belongs to."),
    operator: bool = typer.Option(False, help="May issue pensions, report deaths, read any balance."),
) -> None:
    """Make a terminal key: prints the key once (give it to the terminal) and the entry for the keys file."""
    from settlement.api.auth import TerminalKey, hash_key
    from settlement.api.auth import new_key as make

    key = make()
    entry = TerminalKey(terminal_id, hash_key(key), institution, operator)
    typer.echo(f"key (shown once): {key}", err=True)
    typer.echo(f"[terminal.{entry.terminal_id}]\nkey_sha256 = \"{entry.key_sha256}\"")
    if institution:
        typer.echo(f"institution = \"{institution}\"")
    typer.echo(f"operator = {'true' if operator else 'false'}")


@app.command("hash-key")
def hash_key_cmd(key: str = typer.Option(..., prompt=True, hide_input=True, help="The terminal key.")) -> None:
    """Print the SHA-256 of a terminal key, for the keys file."""
    from settlement.api.auth import hash_key

    typer.echo(hash_key(key))
