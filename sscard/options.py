"""Command-line option values shared by the sscard sub-apps."""

from __future__ import annotations

import typer


def host_port(text: str, option: str, example: str = "127.0.0.1:1500") -> tuple[str, int]:
    """HOST:PORT from an option value; a BadParameter naming the option otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter(f"{option} takes HOST:PORT, e.g. {example}")
    return host, int(port)
