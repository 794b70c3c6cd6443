"""Reader transports. `open_reader(spec)` turns a reader name from a command line or a config file into one.

A spec is `SCHEME:REST` for a registered scheme (`serial:URL` is built in; a composition root registers
others with `register_scheme`, e.g. `memory:` for in-process simulated cards in demos and tests), otherwise
a PC/SC reader name (`pcsc:` prefix optional).
"""

from __future__ import annotations

from collections.abc import Callable

from cardlib.readers.base import Reader

Opener = Callable[[str], Reader]
"""Opens a reader from what follows `SCHEME:` in a spec."""


def _open_serial(url: str) -> Reader:
    from cardlib.readers.serial import SerialReader

    return SerialReader(url)


_SCHEMES: dict[str, Opener] = {"serial": _open_serial}


def register_scheme(scheme: str, opener: Opener) -> None:
    """Let `open_reader("SCHEME:REST")` open readers with `opener(REST)` (registering again replaces it)."""
    if not scheme.isidentifier() or scheme == "pcsc":
        raise ValueError(f"not a reader scheme name: {scheme!r}")
    _SCHEMES[scheme] = opener


def open_reader(spec: str | None, *, resolve: bool = False) -> Reader:
    """A Reader for `spec`: a registered `SCHEME:REST`, or else a PC/SC reader. With `resolve`, a unique part
    of a PC/SC name will do (and None means the first reader): that asks pcscd now."""
    scheme, sep, rest = (spec or "").partition(":")
    opener = _SCHEMES.get(scheme) if sep else None
    if opener is not None:
        return opener(rest)
    from cardlib.readers.pcsc import PcscReader, resolve_reader

    name = spec.removeprefix("pcsc:") if spec else None
    if resolve or name is None:
        name = resolve_reader(name)
    return PcscReader(name)
