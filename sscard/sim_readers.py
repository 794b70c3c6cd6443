"""`memory:` readers: a simulated card in-process behind a MemoryReader, for the demo and tests.

`memory:SAMPLE` holds a sample holder's card (`sscard sim holders`), `memory:FILE.toml` a card image
(sim.images, e.g. tests/cards/v3_auth_before_ef06.toml), `memory:psam` a simulated PSAM. The
composition root registers the scheme (`register()`), so the terminal opens these like any reader and
never imports the simulator itself.
"""

from __future__ import annotations

from cardlib import readers
from cardlib.readers.base import Reader
from cardlib.readers.memory import MemoryReader


def open_memory(what: str) -> Reader:
    """A MemoryReader holding the simulated PSAM (`psam`), a card image (`FILE.toml`) or a sample holder's card."""
    if what == "psam":
        from sim.psam import SimPsam

        return MemoryReader(SimPsam(), name=f"memory:{what}")
    if what.endswith(".toml"):
        from sim.images import issue_image, load_image

        return MemoryReader(issue_image(load_image(what)), name=f"memory:{what}")
    from sim.personalize import issue_sample

    return MemoryReader(issue_sample(what), name=f"memory:{what}")


def register() -> None:
    """Make `memory:` reader specs open simulated cards (idempotent)."""
    readers.register_scheme("memory", open_memory)
