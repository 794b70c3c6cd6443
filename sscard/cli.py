"""The `sscard` command line: one Typer app with a sub-app per layer."""

from __future__ import annotations

import typer

from sscard import card_cmd, centre_cmd, hsm_cmd, ops_cmd, settlement_cmd, sim_cmd, terminal_cmd

app = typer.Typer(help="sscard: social security cards, terminals and settlement.", no_args_is_help=True)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"sscard {version('sscard')}")
        raise typer.Exit()


@app.callback()
def main(_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """sscard: social security cards, terminals and settlement."""


app.command("readers", help="List the PC/SC readers and whether a card is present.")(card_cmd.list_readers)
app.add_typer(card_cmd.app, name="card")
app.add_typer(sim_cmd.app, name="sim")
app.add_typer(hsm_cmd.app, name="hsm")
app.add_typer(settlement_cmd.app, name="settlement")
app.add_typer(terminal_cmd.app, name="terminal")
app.add_typer(centre_cmd.app, name="centre")
ops_cmd.register(app)  # reconcile, clear, load

if __name__ == "__main__":  # pragma: no cover
    app()
