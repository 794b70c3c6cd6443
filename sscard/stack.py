"""The embedded default, in one process: mock HSM, settlement service on SQLite, terminal daemon.

Used by `make demo`, the end-to-end tests and the benchmarks. Every server binds 127.0.0.1 on a free port;
`Stack.stop()` stops them all. Cards come from the simulator: behind our own pcscd when asked for (`pcsc=True`)
or straight in-process (`memory:` readers).
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from hsm_mock import KeyStore, Lmk, LocalHsm
from hsm_mock.access import AccessPolicy
from hsm_mock.server import ServerThread
from settlement.api.auth import TerminalKey, hash_key
from settlement.api.client import SettlementClient
from settlement.api.service import create_app as create_settlement_app
from settlement.ledger.store.sqlite import SqliteStore
from settlement.schemes.engine import Engine
from sim.issuer import DEFAULT_ISSUER, Issuer, install_into_hsm
from sscard import sim_readers
from sscard.hsm_pin import HsmPinVerifier
from sscard.world import seed
from terminal.app import close_app
from terminal.app import create_app as create_terminal_app
from terminal.centre import open_centre
from terminal.clock import Clock
from terminal.config import TerminalConfig, hash_token
from terminal.daemon import build_terminal
from terminal.flows import Terminal
from terminal.recovery import Forwarder

INSTITUTION = "H11000301"
INSTITUTION_NAME = "北京示例第三医院"
TERMINAL_ID = "T0001"
HSM_SETTLEMENT = "centre"  # the settlement service's HSM client id
HSM_CONSOLE = "console"


def listening_socket(port: int = 0, host: str = "127.0.0.1") -> socket.socket:
    """A TCP socket bound and listening on `port` (0: a port the OS assigns), held until a server uses it:
    pass it to uvicorn (`sockets=[...]`), or to a child process (`pass_fds`, `serve --fd N`)."""
    # proto IPPROTO_TCP (not 0): asyncio sets TCP_NODELAY only on sockets that say they are TCP, and without
    # it Nagle's algorithm and delayed ACKs hold small answers back ~40 ms
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


class UvicornThread:
    """An ASGI app served by uvicorn from a background thread on 127.0.0.1, on a port the OS assigns (or
    `port`), bound before the server starts and held by it."""

    def __init__(self, app: Any, port: int = 0) -> None:
        self.sock = listening_socket(port)
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name=f"uvicorn:{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> UvicornThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"uvicorn on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@dataclass
class Centre:
    """HSM + settlement service, as the social-security centre runs them."""

    workdir: Path
    issuer: Issuer
    hsm: LocalHsm
    hsm_server: ServerThread
    hsm_access: AccessPolicy
    store: SqliteStore
    engine: Engine
    service: UvicornThread
    terminal_keys: dict[str, str] = field(default_factory=dict)  # terminal id -> API key (clear, test only)

    @property
    def hsm_address(self) -> tuple[str, int]:
        return self.hsm_server.address

    def hsm_credential(self, client: str) -> Path:
        """The credential file of one of the HSM's clients (a terminal id, HSM_SETTLEMENT or HSM_CONSOLE)."""
        return self.workdir / "hsm-credentials" / f"{client}.cred"

    def client(self, terminal_id: str = TERMINAL_ID, timeout: float = 5.0) -> SettlementClient:
        return SettlementClient(self.service.url, self.terminal_keys[terminal_id], timeout=timeout)

    def stop(self) -> None:
        self.service.stop()
        self.hsm_server.stop()
        self.store.close()
        self.hsm.close()


def start_centre(workdir: Path, *, issuer: Issuer = DEFAULT_ISSUER, terminals: tuple[str, ...] = (TERMINAL_ID,),
                 port: int = 0) -> Centre:
    """The mock HSM (keys from `issuer`, by key ceremony) on TCP and the settlement service on SQLite, seeded
    with the sample holders and their PIN references; the service checks card_pin certifications online
    with the same HSM (in-process). The HSM serves the `terminals` (role terminal), HSM_SETTLEMENT and
    HSM_CONSOLE; their credential files are in workdir/hsm-credentials (`Centre.hsm_credential`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    lmk = Lmk.ephemeral()
    keystore = KeyStore(lmk, workdir / "hsm-keys.db")
    hsm = LocalHsm(keystore)
    install_into_hsm(issuer, hsm, lambda label, suite, parts, kcv: keystore.load_components(label, "KEK", suite,
                                                                                              parts, kcv))
    access = AccessPolicy.of(lmk, {**dict.fromkeys(terminals, "terminal"), HSM_SETTLEMENT: "settlement",
                                   HSM_CONSOLE: "console"})
    (workdir / "hsm-credentials").mkdir(exist_ok=True)
    for client in access.clients:  # a new LMK each start: the files of an earlier run are worthless
        path = workdir / "hsm-credentials" / f"{client}.cred"
        path.unlink(missing_ok=True)
        access.credential(client).save(path)
    hsm_server = ServerThread(hsm, access=access).start()
    store = SqliteStore(workdir / "settlement.db")
    engine = Engine(store, pin_verifier=HsmPinVerifier(hsm))
    seed(engine, hsm=hsm)  # with the HSM: each sample card's PIN reference, as issuance records it
    keys = {t: secrets.token_urlsafe(24) for t in terminals}
    ring = [TerminalKey(t, hash_key(k), INSTITUTION, False) for t, k in keys.items()]
    service = UvicornThread(create_settlement_app(engine, terminals=ring), port).start()
    return Centre(workdir, issuer, hsm, hsm_server, access, store, engine, service, keys)


@dataclass
class Counter:
    """One terminal daemon (in this process) with its readers."""

    terminal: Terminal
    http: UvicornThread
    token: str
    forwarder: Forwarder

    @property
    def url(self) -> str:
        return self.http.url

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def stop(self) -> None:
        self.forwarder.stop()
        if self.terminal.fetcher is not None:
            self.terminal.fetcher.stop()
        self.http.stop()
        close_app(self.http.server.config.app)
        for s in self.terminal.sessions.values():
            s.close()
        self.terminal.centre.close()
        if self.terminal.blacklist is not None:
            self.terminal.blacklist.close()
        self.terminal.journal.close()


def terminal_config(workdir: Path, user_card: str, psam: str, centre: Centre, token: str,
                    terminal_id: str = TERMINAL_ID, sections: dict[str, dict[str, Any]] | None = None,
                    settlement_timeout: float = 5.0, dialect: str = "native", upstream: dict[str, Any] | None = None,
                    **terminal: Any) -> TerminalConfig:
    """A counter's configuration on `workdir`; `sections` adds or replaces whole sections (e.g. cors);
    `upstream` adds to the [centre] section beside its dialect."""
    return TerminalConfig.model_validate({
        "terminal": {"id": terminal_id, "institution": INSTITUTION, "institution_name": INSTITUTION_NAME,
                     "institution_level": "3", "region": "110000",
                     "journal": str(workdir / f"{terminal_id}-journal.db"), **terminal},
        "readers": {"user_card": user_card, "psam": psam},
        "settlement": {"url": centre.service.url, "timeout": settlement_timeout},
        "centre": {"dialect": dialect, **(upstream or {})},
        "hsm": {"host": centre.hsm_address[0], "port": centre.hsm_address[1],
                "credential": str(centre.hsm_credential(terminal_id))},
        "auth": {"tokens_sha256": [hash_token(token)]},
    } | (sections or {}))


def start_counter(centre: Centre, user_card: str = "memory:zhang_san", psam: str = "memory:psam", *,
                  terminal_id: str = TERMINAL_ID, settlement_timeout: float = 5.0, dialect: str = "native",
                  upstream: dict[str, Any] | None = None, clock: Clock | None = None,
                  **sections: dict[str, Any]) -> Counter:
    """A terminal daemon served on a free port: PSAM first, the centre's HSM as fallback, talking to the
    centre in `dialect` ("native" or "national"; `upstream` adds to its [centre] section). Keyword arguments
    are configuration sections (`cors={"allow_origins": [...]}`); `clock` is the terminal's (default: the
    wall clock)."""
    sim_readers.register()
    token = secrets.token_urlsafe(24)
    cfg = terminal_config(centre.workdir, user_card, psam, centre, token, terminal_id, sections,
                          settlement_timeout, dialect, upstream)
    clock = clock or Clock()
    t = build_terminal(cfg, centre=open_centre(cfg, key=centre.terminal_keys[terminal_id], now=clock.now),
                       clock=clock)
    for s in t.sessions.values():
        s.watch()
    http = UvicornThread(create_terminal_app(t)).start()
    if t.fetcher is not None:
        t.fetcher.start()
    return Counter(t, http, token, Forwarder(t).start())
