"""Reader transports. `open_reader(spec)` turns a reader name from a command line or a config file into one.

A spec is `SCHEME:REST` for a registered scheme (`serial:URL` is built in; a composition root registers
others with `register_scheme`, e.g. `memory:` for in-process simulated cards in demos and tests), otherwise
a PC/SC reader name (`pcsc:` prefix optional).
"""

from __future__ import annotations

from collections.abc import Callable

from cardlib.errors import ReaderNotFound
from cardlib.readers.base import DEFAULT_TIMEOUT, Reader

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


def looks_like_serial(spec: str) -> bool:
    """A device path or a pyserial URL (socket://, rfc2217://, loop://...), not a PC/SC reader name."""
    return "://" in spec or spec.startswith("/dev/")


def open_reader(spec: str | None, *, resolve: bool = False, timeout: float = DEFAULT_TIMEOUT) -> Reader:
    """A Reader for `spec`: a registered `SCHEME:REST`, or else a PC/SC reader. With `resolve`, a unique part
    of a PC/SC name will do (and None means the first reader): that asks pcscd now. `timeout` is the
    reader's per-command deadline in seconds. A serial port or URL without `serial:` is refused, naming it."""
    scheme, sep, rest = (spec or "").partition(":")
    opener = _SCHEMES.get(scheme) if sep else None
    if opener is not None:
        reader = opener(rest)
        reader.timeout = timeout
        return reader
    if spec and looks_like_serial(spec):
        raise ReaderNotFound(f"{spec!r} is a serial port or URL, not a PC/SC reader name: write serial:{spec}")
    from cardlib.readers.pcsc import PcscReader, resolve_reader

    name = spec.removeprefix("pcsc:") if spec else None
    if resolve or name is None:
        name = resolve_reader(name)
    return PcscReader(name, timeout=timeout)
