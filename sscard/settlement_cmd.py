"""`sscard settlement ...`: run the central settlement service and manage terminal keys."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import typer

from sscard.options import HsmCredentialOption

app = typer.Typer(help="The central settlement service.", no_args_is_help=True)


WORKER_OPTIONS = "SSCARD_SERVE_WORKER"  # the options a worker process builds its app from (JSON)


@app.command()
def serve(
    ctx: typer.Context,
    config_file: Path = typer.Option(None, "--config", exists=True, dir_okay=False, envvar="SSCARD_CONFIG",
                                     help="TOML configuration file (sscard/centre_config.py, deploy/centre.toml."
                                          "example); options on the command line or in the environment override it."),
    db: Path = typer.Option(None, "--db", envvar="SSCARD_DB", help="SQLite database file (the default store)."),
    postgres: str = typer.Option(None, "--postgres", envvar="SSCARD_POSTGRES_DSN",
                                 help="PostgreSQL DSN, instead of --db."),
    keys: Path = typer.Option(None, "--keys", exists=True, dir_okay=False, envvar="SSCARD_TERMINAL_KEYS",
                              help="TOML file of terminal keys (see settlement/api/auth.py); required, here or in "
                                   "--config."),
    host: str = typer.Option("127.0.0.1", envvar="SSCARD_BIND",
                             help="Address to bind; 127.0.0.1 unless you mean to expose it."),
    port: int = typer.Option(8700, envvar="SSCARD_PORT", help="TCP port."),
    fd: int = typer.Option(None, "--fd", help="Serve on this inherited listening socket instead of binding "
                                              "--host/--port (socket activation; tests)."),
    workers: int = typer.Option(1, "--workers", min=1, envvar="SSCARD_WORKERS",
                                help="Service processes sharing the socket and the store (PostgreSQL: several "
                                     "processes settle in parallel; each has its own batching writer)."),
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
    max_backlog: int = typer.Option(2000, "--max-backlog", min=1, envvar="SSCARD_MAX_BACKLOG",
                                    help="Write requests waiting for the store (per process) beyond which new ones "
                                         "are refused at once: 503 OVERLOADED with Retry-After."),
    access_log: bool = typer.Option(False, "--access-log/--no-access-log", envvar="SSCARD_ACCESS_LOG",
                                    help="uvicorn's line per request (off: it costs throughput at a region's peak)."),
    log_file: str = typer.Option("", "--log-file", envvar="SSCARD_LOG_FILE",
                                 help="JSON-lines log file (rotated); default: JSON lines on stderr."),
    log_level: str = typer.Option("info", help="Log level."),
    init: bool = typer.Option(False, "--init", help="Create the ledger if it does not exist (an SQLite file; on "
                                                   "PostgreSQL the tables are made in the existing database at "
                                                   "every start)."),
) -> None:
    """Serve the settlement HTTP API (OpenAPI at /docs and /openapi.json) and the national platform
    interface (POST /fsi/api/rsfComIfsService/callService). Each option can also come from the environment
    variable its help names (a systemd EnvironmentFile, a container's environment), or from --config. Logs
    are JSON lines."""
    import uvicorn

    from terminal.logs import setup as setup_logs

    if config_file is not None:
        p = {**ctx.params, **_from_config(ctx, config_file)}
        db, postgres, keys, policies, init = p["db"], p["postgres"], p["keys"], p["policies"], p["init"]
        host, port, workers, log_level = p["host"], p["port"], p["workers"], p["log_level"]
        log_file = str(p["log_file"] or "")
        access_log, max_backlog, biometric_threshold = p["access_log"], p["max_backlog"], p["biometric_threshold"]
        hsm, hsm_credential, hsm_prefix, hsm_timeout = p["hsm"], p["hsm_credential"], p["hsm_prefix"], p["hsm_timeout"]
        national_catalogue = p["national_catalogue"]
    if keys is None:
        raise typer.BadParameter("give the terminal keys file: --keys FILE, or [terminals] keys in --config",
                                 param_hint="--keys")
    if (db is None) == (postgres is None):
        raise typer.BadParameter("give exactly one of --db PATH or --postgres DSN")
    options = {"db": str(db) if db else None, "postgres": postgres, "keys": str(keys),
               "policies": str(policies) if policies else None, "biometric_threshold": biometric_threshold,
               "hsm": hsm, "hsm_credential": str(hsm_credential) if hsm_credential else None,
               "hsm_prefix": hsm_prefix, "hsm_timeout": hsm_timeout,
               "national_catalogue": str(national_catalogue) if national_catalogue else None,
               "max_backlog": max_backlog, "log_file": log_file, "log_level": log_level, "init": init}
    config = {"log_level": log_level, "access_log": access_log, "log_config": None, "http": "httptools",
              "loop": "uvloop", "timeout_keep_alive": 30}
    sock = socket.socket(fileno=fd) if fd is not None else None
    if workers == 1:
        store, verifier, app_ = _build(options)  # a bad option is refused before the logs are set up
        setup_logs(log_file, log_level)
        try:
            server = uvicorn.Server(uvicorn.Config(app_, host=host, port=port, **config))
            server.run(sockets=[sock] if sock is not None else None)
        finally:
            if verifier is not None:
                verifier.hsm.close()
            store.close()
        return
    from uvicorn.supervisors import Multiprocess

    store, verifier, _ = _build(options)  # the tables and accounts exist before the workers start
    store.close()
    if verifier is not None:
        verifier.hsm.close()
    setup_logs(log_file, log_level)
    os.environ[WORKER_OPTIONS] = json.dumps(options)
    cfg = uvicorn.Config("sscard.settlement_cmd:worker_app", factory=True, workers=workers, host=host, port=port,
                         **config)
    if sock is None:
        sock = cfg.bind_socket()
    Multiprocess(cfg, sockets=[sock]).run()


def _from_config(ctx: typer.Context, config_file: Path) -> dict[str, Any]:
    """The options `config_file` sets that were given neither on the command line nor by environment."""
    from sscard.centre_config import ConfigError, options

    def given_here(name: str) -> bool:  # on the command line or by environment (typer's click or click's enum)
        return getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"

    try:
        given = options(config_file)
    except ConfigError as e:
        raise typer.BadParameter(str(e), param_hint="--config") from None
    mine = {k: v for k, v in given.items() if not given_here(k)}
    for name in ("keys", "national_catalogue", "policies", "hsm_credential"):
        if name in mine and not mine[name].exists():
            raise typer.BadParameter(f"{config_file}: {name}: no such file {mine[name]}", param_hint="--config")
    for one, other in (("db", "postgres"), ("postgres", "db")):  # a store given explicitly replaces the file's
        if given_here(one):
            mine.pop(other, None)
    return mine


def _build(options: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(store, PIN verifier or None, app) from the options of `serve`."""
    from settlement.api.auth import load_terminal_keys
    from settlement.api.service import create_app
    from settlement.schemes.engine import Settings
    from settlement.schemes.policy import PolicyBook
    from sscard.hsm_pin import HsmPinVerifier
    from sscard.stores import open_ledger

    catalogue = None
    if options["national_catalogue"] is not None:
        from settlement.api.national_data import load_catalogue

        try:
            catalogue = load_catalogue(options["national_catalogue"])
        except ValueError as e:  # TOMLDecodeError too
            raise typer.BadParameter(str(e), param_hint="--national-catalogue") from None
    verifier = None
    if options["hsm"]:
        from sscard.options import hsm_client

        credential = options["hsm_credential"]
        verifier = HsmPinVerifier(hsm_client(options["hsm"], Path(credential) if credential else None,
                                             options["hsm_timeout"]), options["hsm_prefix"])
    # a database the DBA created (createdb) is the deliberate step on PostgreSQL; a SQLite file needs --init
    store = open_ledger(options["db"], options["postgres"], init=options["init"] or options["postgres"] is not None,
                        can_init=True)
    try:
        book = PolicyBook.load(options["policies"]) if options["policies"] else None
        app_ = create_app(store, terminals=load_terminal_keys(options["keys"]), policies=book,
                          settings=Settings(biometric_threshold=options["biometric_threshold"]),
                          pin_verifier=verifier, national_catalogue=catalogue,
                          max_backlog=options["max_backlog"])
    except BaseException:
        if verifier is not None:
            verifier.hsm.close()
        store.close()
        raise
    return store, verifier, app_


def worker_app() -> Any:
    """The app of one worker process of `serve --workers N` (uvicorn's factory): built from the options the
    parent left in the environment; its store is closed when the worker stops."""
    from contextlib import asynccontextmanager

    from terminal.logs import setup as setup_logs

    options = json.loads(os.environ[WORKER_OPTIONS])
    setup_logs(options["log_file"], options["log_level"])
    store, verifier, app_ = _build(options)
    inner = app_.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> Any:
        try:
            async with inner(a) as state:
                yield state
        finally:
            if verifier is not None:
                verifier.hsm.close()
            store.close()

    app_.router.lifespan_context = lifespan
    return app_


@app.command("new-key")
def new_key(
    terminal_id: str = typer.Argument(..., help="Terminal id, e.g. T0001."),
    institution: str = typer.Option(None, help="Institution the terminal belongs to (it acts for it only; for an "
                                               "operator key, where it sits)."),
    operator: bool = typer.Option(False, help="An operator key: may act for every institution, issue pensions, "
                                              "report deaths, read any balance, void and refund with a reason."),
) -> None:
    """Make a terminal key: prints the key once (give it to the terminal) and the entry for the keys file.

    A terminal key needs --institution; an operator key is asked for with --operator (its --institution, if
    given, only says where it sits)."""
    from settlement.api.auth import TerminalKey, hash_key
    from settlement.api.auth import new_key as make

    if not operator and not institution:
        raise typer.BadParameter("a terminal key acts for one institution: give --institution CODE (or --operator "
                                 "for an operator key)")
    key = make()
    try:
        entry = TerminalKey(terminal_id, hash_key(key), institution, operator)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    typer.echo(f"key (shown once): {key}", err=True)
    typer.echo(f"[terminal.{entry.terminal_id}]\nkey_sha256 = \"{entry.key_sha256}\"")
    if institution:
        typer.echo(f"institution = \"{institution}\"")
    if operator:
        typer.echo("operator = true")


@app.command("hash-key")
def hash_key_cmd(key: str = typer.Option(..., prompt=True, hide_input=True, help="The terminal key.")) -> None:
    """Print the SHA-256 of a terminal key, for the keys file."""
    from settlement.api.auth import hash_key

    typer.echo(hash_key(key))
