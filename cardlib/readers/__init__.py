"""Reader transports. `open_reader(spec)` turns a reader name from a command line or a config file into one."""

from __future__ import annotations

from cardlib.readers.base import Reader


def open_reader(spec: str | None, *, resolve: bool = False) -> Reader:
    """`serial:URL` -> SerialReader; otherwise a PC/SC reader (`pcsc:` prefix optional). With `resolve`, a
    unique part of a PC/SC name will do (and None means the first reader): that asks pcscd now."""
    if spec and spec.startswith("serial:"):
        from cardlib.readers.serial import SerialReader

        return SerialReader(spec.removeprefix("serial:"))
    from cardlib.readers.pcsc import PcscReader, resolve_reader

    name = spec.removeprefix("pcsc:") if spec else None
    if resolve or name is None:
        name = resolve_reader(name)
    return PcscReader(name)
