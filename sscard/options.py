"""Command-line option values shared by the sscard sub-apps."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from hsm_client.client import HsmClient


def host_port(text: str, option: str, example: str = "127.0.0.1:1500") -> tuple[str, int]:
    """HOST:PORT from an option value; a BadParameter naming the option otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter(f"{option} takes HOST:PORT, e.g. {example}")
    return host, int(port)


HsmCredentialOption = typer.Option(
    None, "--hsm-credential", metavar="FILE", envvar="SSCARD_HSM_CREDENTIAL", dir_okay=False,
    help="This client's HSM credential file (`sscard hsm clients issue`), for --hsm.")


def hsm_client(address: str, credential: Path | None, timeout: float, option: str = "--hsm") -> HsmClient:
    """An `HsmClient` for HOST:PORT with the client credential file the HSM issued; a BadParameter naming the
    option when either is missing or wrong (the HSM serves no client without a credential)."""
    from hsm_client.auth import Credential, CredentialError
    from hsm_client.client import HsmClient

    host, port = host_port(address, option)
    if credential is None:
        raise typer.BadParameter(f"{option} needs --hsm-credential FILE (the HSM serves only its clients: "
                                 "`sscard hsm clients issue` writes the file)")
    try:
        return HsmClient(host, port, credential=Credential.load(credential), timeout=timeout)
    except CredentialError as e:
        raise typer.BadParameter(str(e)) from None
