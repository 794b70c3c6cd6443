"""Assemble and run the terminal daemon from its configuration.

`build_terminal()` opens the journal, the readers (user card; PSAM when configured), the security module
(the PSAM first, the centre's HSM when the PSAM cannot serve a card), and the settlement client; it then
resolves whatever the journal left in flight before the API accepts a request. `serve()` runs it under
uvicorn with the journal forwarder in the background.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

from cardlib.errors import CardError, SecurityModuleError
from cardlib.layout import KeyType
from cardlib.psam import Psam, PsamSecurity
from cardlib.readers import open_reader
from cardlib.security import SecurityModule
from settlement.api.client import SettlementClient
from terminal.config import TerminalConfig
from terminal.flows import CrashPoints, Terminal
from terminal.journal import Journal
from terminal.recovery import Forwarder, recover
from terminal.session import ReaderSession

log = logging.getLogger(__name__)


@dataclass
class FallbackSecurity:
    """The PSAM, and the HSM for cards the PSAM has no keys for (another province's cards)."""

    primary: SecurityModule
    fallback: SecurityModule

    def _try(self, name: str, *args):
        try:
            return getattr(self.primary, name)(*args)
        except SecurityModuleError:
            return getattr(self.fallback, name)(*args)

    def external_auth_cryptogram(self, card_id: bytes, suite: str, challenge: bytes) -> bytes:
        return self._try("external_auth_cryptogram", card_id, suite, challenge)

    def terminal_random(self, suite: str) -> bytes:
        return self.primary.terminal_random(suite)

    def verify_internal_auth(self, card_id: bytes, suite: str, random: bytes, response: bytes) -> bool:
        return self._try("verify_internal_auth", card_id, suite, random, response)

    def command_mac(self, key: KeyType, card_id: bytes, suite: str, challenge: bytes, header: bytes,
                    data: bytes) -> bytes:
        return self._try("command_mac", key, card_id, suite, challenge, header, data)

    def pin_block(self, pin: str, pan: str) -> bytes:
        return self._try("pin_block", pin, pan)


def build_security(cfg: TerminalConfig) -> tuple[SecurityModule | None, str]:
    """(security module, PSAM terminal number or '')."""
    psam_sm: SecurityModule | None = None
    terminal_number = ""
    if cfg.readers.psam:
        psam = Psam(open_reader(cfg.readers.psam, timeout=cfg.readers.timeout))
        try:
            terminal_number = psam.terminal_number()
        except CardError as e:
            log.warning("PSAM in %s not usable: %s", cfg.readers.psam, e)
        regions = set(cfg.readers.psam_regions) if cfg.readers.psam_regions is not None else None
        psam_sm = PsamSecurity(psam, regions=regions, pin_suite=cfg.policy.pin_suite)
    hsm_sm: SecurityModule | None = None
    if cfg.hsm.host:
        from hsm_client.client import HsmClient
        from terminal.security import HsmSecurity

        hsm_sm = HsmSecurity(HsmClient(cfg.hsm.host, cfg.hsm.port, timeout=cfg.hsm.timeout), cfg.hsm.prefix,
                             pin_suite=cfg.policy.pin_suite)
    if psam_sm and hsm_sm:
        return FallbackSecurity(psam_sm, hsm_sm), terminal_number
    return psam_sm or hsm_sm, terminal_number


def build_terminal(cfg: TerminalConfig, *, centre: SettlementClient | None = None,
                   security: SecurityModule | None = None, terminal_number: str | None = None) -> Terminal:
    journal = Journal(cfg.terminal.journal, cfg.terminal.id)
    user_card = open_reader(cfg.readers.user_card, timeout=cfg.readers.timeout)
    sessions = {cfg.readers.user_card: ReaderSession(cfg.readers.user_card, user_card)}
    if security is None:
        security, number = build_security(cfg)
        terminal_number = terminal_number or number
    if centre is None:
        centre = SettlementClient(cfg.settlement.url, cfg.settlement.api_key(), timeout=cfg.settlement.timeout)
    t = Terminal(cfg, journal, sessions, security, centre, terminal_number or "", CrashPoints.from_env())
    report = recover(t)
    if not report.clean:
        log.warning("journal: %d entries still in flight after recovery; the forwarder keeps trying",
                    len(report.still_pending))
    return t


def serve(cfg: TerminalConfig, sock: socket.socket | None = None) -> None:
    """Run the daemon on [terminal] bind:port, or on `sock`, a listening socket bound for it (inherited)."""
    import uvicorn

    from terminal.app import create_app

    t = build_terminal(cfg)
    for s in t.sessions.values():
        s.watch()
    forwarder = Forwarder(t).start()
    try:
        if sock is None:
            uvicorn.run(create_app(t), host=cfg.terminal.bind, port=cfg.terminal.port, log_level="warning")
        else:
            uvicorn.Server(uvicorn.Config(create_app(t), log_level="warning")).run(sockets=[sock])
    finally:
        forwarder.stop()
        for s in t.sessions.values():
            s.close()
        t.centre.close()
        t.journal.close()
