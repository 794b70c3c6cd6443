"""Assemble and run the terminal daemon from its configuration.

`build_terminal()` opens the journal, the readers (user card; PSAM when configured), the security module
(the PSAM first, the centre's HSM when the PSAM cannot serve a card), and the centre client (the dialect the
configuration names, terminal.centre); it then
resolves whatever the journal left in flight before the API accepts a request. `serve()` runs it under
uvicorn with the journal forwarder in the background.
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
import threading
from dataclasses import dataclass

from cardlib.errors import CardError, SecurityModuleError
from cardlib.layout import KeyType
from cardlib.psam import Psam, PsamSecurity
from cardlib.readers import open_reader
from cardlib.security import SecurityModule
from terminal import logs
from terminal.blacklist import Blacklist, BlacklistFetcher
from terminal.centre import Centre, open_centre, serials_for
from terminal.clock import Clock
from terminal.config import TerminalConfig
from terminal.flows import CrashPoints, Terminal
from terminal.journal import Journal
from terminal.recovery import Forwarder, recover
from terminal.session import ReaderSession

log = logging.getLogger(__name__)
WS_MAX_SIZE = 1 << 16  # bytes in one WebSocket message (the reader bridge's calls are far smaller: 1009 beyond)
SHUTDOWN_GRACE = 10.0  # seconds a request in flight gets to finish after SIGTERM (event streams end at once)


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
    hsm_sm: SecurityModule | None = None
    if cfg.hsm.host:  # first: a missing credential must not leave the PSAM reader open
        from hsm_client.auth import Credential, CredentialError
        from hsm_client.client import HsmClient
        from terminal.security import HsmSecurity

        if not cfg.hsm.credential:
            raise StartupError("[hsm] credential: the HSM serves only its clients; give this terminal's credential "
                               f"file (`sscard hsm clients issue {cfg.terminal.id}` at the HSM)")
        try:
            credential = Credential.load(cfg.hsm.credential)
        except CredentialError as e:
            raise StartupError(f"[hsm] credential: {e}") from e
        if credential.client != cfg.terminal.id:  # another counter's file: its limits and audit are not ours
            raise StartupError(f"[hsm] credential: {cfg.hsm.credential} is the credential of client "
                               f"{credential.client}, not of this terminal {cfg.terminal.id} (`sscard hsm clients "
                               f"issue {cfg.terminal.id}` at the HSM)")
        client = HsmClient(cfg.hsm.host, cfg.hsm.port, credential=credential, timeout=cfg.hsm.timeout)
        hsm_sm = HsmSecurity(client, cfg.hsm.prefix, pin_suite=cfg.policy.pin_suite)
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
    if psam_sm and hsm_sm:
        return FallbackSecurity(psam_sm, hsm_sm), terminal_number
    return psam_sm or hsm_sm, terminal_number


def build_terminal(cfg: TerminalConfig, *, centre: Centre | None = None,
                   security: SecurityModule | None = None, terminal_number: str | None = None,
                   clock: Clock | None = None) -> Terminal:
    """The terminal of `cfg`; `clock` (default: the wall clock) is the one source of its time."""
    clock = clock or Clock()
    journal = Journal(cfg.terminal.journal, cfg.terminal.id, serials_for(cfg, clock.now), clock=clock)
    try:
        sessions = {name: ReaderSession(name, open_reader(name, timeout=cfg.readers.timeout))
                    for name in cfg.readers.user_cards}
    except (CardError, ValueError) as e:  # a reader spec that names nothing (a PC/SC reader is looked up later)
        journal.close()
        raise StartupError(f"user-card reader: {e}") from e
    if security is None:
        try:
            security, number = build_security(cfg)
        except StartupError:
            journal.close()
            raise
        except (CardError, ValueError) as e:
            journal.close()
            raise StartupError(f"PSAM reader: {e}") from e
        terminal_number = terminal_number or number
    if centre is None:
        centre = open_centre(cfg, now=clock.now)
    t = Terminal(cfg, journal, sessions, security, centre, terminal_number or "", CrashPoints.from_env())
    t.blacklist = Blacklist(cfg.terminal.journal, now=clock.now)
    t.fetcher = BlacklistFetcher(t.blacklist, centre, cfg.blacklist.interval)
    report = recover(t)
    if not report.clean:
        log.warning("journal: %d entries still in flight after recovery; the forwarder keeps trying",
                    len(report.still_pending))
    if t.fetcher.step(force=True) is None:  # the copy kept from before serves until the centre answers
        log.warning("card blacklist not updated at start (%s); using the copy from %s", t.fetcher.last_error,
                    t.blacklist.state()["fetched_at"] or "never")
    return t


class StartupError(RuntimeError):
    """What keeps the daemon from starting, in one line for the operator."""


def listen(bind: str, port: int) -> socket.socket:
    """The daemon's listening socket, or a StartupError saying why not (a port already taken, first)."""
    sock = socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((bind, port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise StartupError(f"{bind}:{port} is already in use (another daemon? set [terminal] port)") from e
        raise StartupError(f"cannot listen on {bind}:{port}: {e.strerror}") from e
    return sock


def serve(cfg: TerminalConfig, sock: socket.socket | None = None) -> None:
    """Run the daemon on [terminal] bind:port, or on `sock`, a listening socket bound for it (inherited).
    Logs go to [log] file as JSON lines. A configuration or start-up problem raises ConfigError or
    StartupError (one line each) before anything is served."""
    import uvicorn

    from terminal.app import close_app, create_app
    from terminal.health import VERSION

    logs.setup(cfg.log.file, cfg.log.level, cfg.log.max_bytes, cfg.log.backups)
    cfg.settlement.api_key()  # a missing key is said now, not after the readers are opened
    if sock is None:
        sock = listen(cfg.terminal.bind, cfg.terminal.port)
    t = build_terminal(cfg)
    for s in t.sessions.values():
        s.watch()
    forwarder = Forwarder(t).start()
    fetcher = t.fetcher.start() if t.fetcher is not None else None
    host, port = sock.getsockname()[:2]
    logs.event("daemon.start", version=VERSION, terminal_id=cfg.terminal.id, listen=f"{host}:{port}",
               readers=list(t.sessions), security=type(t.security).__name__ if t.security else None,
               centre=cfg.settlement.url, dialect=cfg.centre.dialect, journal=cfg.terminal.journal)
    if threading.current_thread() is threading.main_thread():
        # uvicorn stops on SIGTERM/SIGINT, then raises the signal again under the handlers it found: these
        # let it return, so the readers and the journal are closed and the stop is logged
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
    app = create_app(t)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: object) -> None:  # told to stop: end the event streams first
            app.state.event_streams.close()
            super().handle_exit(sig, frame)  # type: ignore[arg-type]

    try:
        Server(uvicorn.Config(app, log_level=cfg.log.level, log_config=None, access_log=False,
                              ws_max_size=WS_MAX_SIZE, timeout_graceful_shutdown=SHUTDOWN_GRACE)).run(sockets=[sock])
    finally:
        forwarder.stop()
        if fetcher is not None:
            fetcher.stop()
        close_app(app)
        for s in t.sessions.values():
            s.close()
        t.centre.close()
        if t.blacklist is not None:
            t.blacklist.close()
        t.journal.close()
        logs.event("daemon.stop", terminal_id=cfg.terminal.id)
