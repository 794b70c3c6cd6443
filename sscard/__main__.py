"""`python -m sscard` is the `sscard` command."""

from sscard.cli import app

app(prog_name="sscard")
