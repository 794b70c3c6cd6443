"""`sscard terminal ...`: run the counter's terminal daemon."""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path

import typer

app = typer.Typer(help="The terminal daemon at a counter.", no_args_is_help=True)


@app.command()
def serve(
    config: Path = typer.Option(..., "--config", exists=True, dir_okay=False, help="Terminal TOML file."),
    fd: int = typer.Option(None, "--fd", help="Serve on this inherited listening socket instead of binding "
                                              "[terminal] bind:port (socket activation; tests and benches)."),
) -> None:
    """Run the daemon (binds [terminal] bind:port, 127.0.0.1 by default; OpenAPI at /docs)."""
    from sscard import sim_readers
    from terminal.config import ConfigError, load_config
    from terminal.daemon import StartupError
    from terminal.daemon import serve as run

    sim_readers.register()  # memory: readers for demos and tests

    try:
        run(load_config(config), None if fd is None else socket.socket(fileno=fd))
    except (ConfigError, StartupError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    # serve() closed the journal, the readers and the centre link: leave without the interpreter's teardown
    # (a second and more on a busy machine), so that SIGTERM stops the daemon within one
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@app.command("hash-token")
def hash_token(
    token: str = typer.Option(..., prompt=True, hide_input=True, help="A front end's bearer token."),
) -> None:
    """Print the SHA-256 of a front-end bearer token, for [auth] tokens_sha256."""
    from terminal.config import hash_token as h

    typer.echo(h(token))


@app.command("recover")
def recover_cmd(config: Path = typer.Option(..., "--config", exists=True, dir_okay=False)) -> None:
    """Resolve the journal's in-flight entries now (the daemon also does it at start and every few seconds)."""
    from sscard import sim_readers
    from terminal.config import load_config
    from terminal.daemon import build_terminal

    sim_readers.register()
    t = build_terminal(load_config(config))
    counts = t.journal.counts()
    typer.echo(" ".join(f"{k}={v}" for k, v in counts.items()))
    raise typer.Exit(1 if counts.get("pending") else 0)


@app.command("export")
def export(
    config: Path = typer.Option(..., "--config", exists=True, dir_okay=False),
    day: str = typer.Option(None, "--day", help="Business day YYYY-MM-DD (default: today, China time)."),
    out: Path = typer.Option(None, "--out", help="File to write (default: standard output)."),
    jsonl: bool = typer.Option(False, "--jsonl", help="JSON lines instead of CSV."),
) -> None:
    """Export a business day of the journal for day-end reconciliation (`sscard reconcile --journal`)."""
    import datetime as dt
    import sys

    from settlement.wire import write_journal_csv, write_journal_jsonl
    from terminal.config import load_config
    from terminal.export import journal_lines
    from terminal.journal import Journal, business_day_today

    cfg = load_config(config)
    journal = Journal(cfg.terminal.journal, cfg.terminal.id)
    try:
        the_day = dt.date.fromisoformat(day) if day else business_day_today()
    except ValueError:
        raise typer.BadParameter(f"not a date: {day!r} (use YYYY-MM-DD)") from None
    lines = journal_lines(journal, the_day, cfg.terminal.institution, cfg.terminal.region)
    write = write_journal_jsonl if jsonl else write_journal_csv
    n = write(lines, out if out else sys.stdout)
    journal.close()
    typer.echo(f"{n} lines", err=True)
