"""Who may use the HSM, for what, and how much: the client list, roles, rate limits and connection limits.

The client list is a TOML file (`sscard hsm serve --clients FILE`); every section but `[clients.*]` is
optional, and the values shown are the defaults:

    [server]
    max_connections = 256             # open connections in all
    max_connections_per_client = 16
    idle_timeout = 60.0               # seconds without a frame before the HSM closes a connection
    frame_timeout = 5.0               # seconds to finish a frame once begun, and to open a session

    [limits]                          # token bucket per client and command: rate per second, burst
    encrypt_pin = { rate = 0.1, burst = 10 }

    [clients.T0001]
    role = "terminal"                 # or roles = ["terminal", "settlement"]
    [clients.centre]
    role = "settlement"
    [clients.ops]
    role = "console"
    generation = 2                    # bump to revoke the client's key (then issue a new credential)
    limits = { list_keys = { rate = 5, burst = 20 } }   # this client's own limits, over [limits]

Client keys are not in the file: each is derived from the LMK (`Lmk.client_key(id, generation)`), so the
HSM stores none and `sscard hsm clients issue ID` writes one client's credential from the LMK.

`Gate` applies a policy while the server runs: connections per client, the role of every command, and a
token bucket per client and limited command, shared by all of that client's connections. The first
refusal by a bucket raises an alarm (an audit entry "alarm" and a WARNING log line), then at most one a
minute per client and command while the client keeps exceeding it.
"""

from __future__ import annotations

import logging
import math
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hsm_client.auth import CLIENT_ID, Credential
from hsm_client.errors import ConnectionLimit, NotAuthorised, RateLimited
from hsm_client.wire import BY_METHOD
from hsm_mock.audit import AuditLog
from hsm_mock.keystore import Lmk

log = logging.getLogger(__name__)

# Which commands each role may run (by HsmApi method). Terminals compute what a counter needs for a card
# (cryptograms, MACs, PIN blocks from a PIN pad stand-in); the settlement service checks PIN blocks; only the
# console manages keys (and exports diversified card keys under a KEK, for personalisation).
ROLES: dict[str, frozenset[str]] = {
    "terminal": frozenset({"ping", "ext_auth_cryptogram", "verify_ext_auth", "verify_int_auth", "session_mac",
                           "verify_session_mac", "generate_mac", "verify_mac", "encrypt_pin"}),
    "settlement": frozenset({"ping", "verify_pin", "pin_reference", "translate_pin", "generate_mac",
                             "verify_mac"}),
    "console": frozenset({"ping", "generate_key", "import_key", "list_keys", "delete_key", "diversify",
                          "pin_reference"}),
}
assert all(m in BY_METHOD for methods in ROLES.values() for m in methods)
ALARM_INTERVAL = 60.0  # seconds between two alarms for the same client and command


class AccessPolicyError(ValueError):
    """A client list that does not hold together; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    rate: float  # tokens per second
    burst: int  # bucket size

    def __str__(self) -> str:
        return f"{self.rate:g}/s, burst {self.burst}"


DEFAULT_LIMITS: dict[str, RateLimit] = {
    # A counter takes a PIN every half minute at most; a PIN guessed against a captured block would need up to
    # 10^6 tries: at 0.1/s that is 116 days, and the first refusal raises an alarm.
    "encrypt_pin": RateLimit(0.1, 10),
}


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_connections: int = 256
    max_connections_per_client: int = 16
    idle_timeout: float = 60.0
    frame_timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class Client:
    id: str
    roles: tuple[str, ...]
    allowed: frozenset[str]
    limits: Mapping[str, RateLimit]
    generation: int
    key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """The clients of one HSM (keys derived from its LMK) and its limits."""

    clients: Mapping[str, Client]
    limits: ServerLimits = ServerLimits()

    @classmethod
    def load(cls, path: str | Path, lmk: Lmk | None) -> AccessPolicy:
        """From a client list file; without an LMK the clients have no keys (checking or listing the file)."""
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except OSError as e:
            raise AccessPolicyError(f"cannot read the client list {p}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise AccessPolicyError(f"{p}: not valid TOML: {e}") from None
        return cls.from_dict(data, lmk, str(p))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], lmk: Lmk | None, source: str = "client list") -> AccessPolicy:
        def fail(where: str, why: str) -> AccessPolicyError:
            return AccessPolicyError(f"{source}: {where}: {why}")

        _only(data, {"server", "limits", "clients"}, "", fail)
        server = data.get("server", {})
        names = [f.name for f in fields(ServerLimits)]
        _only(server, set(names), "server", fail)
        defaults = ServerLimits()
        values = {}
        for name in names:
            v = server.get(name, getattr(defaults, name))
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < math.inf:
                raise fail(f"server.{name}", "a positive number")
            values[name] = int(v) if name.startswith("max_") else float(v)
        limits = DEFAULT_LIMITS | _limits(data.get("limits", {}), "limits", fail)
        clients: dict[str, Client] = {}
        table = data.get("clients")
        if not isinstance(table, dict) or not table:
            raise fail("clients", "list at least one client ([clients.ID] with a role)")
        for cid, spec in table.items():
            where = f"clients.{cid}"
            if not CLIENT_ID.fullmatch(cid):
                raise fail(where, "a client id is letters, digits and ._:- (at most 64)")
            if not isinstance(spec, dict):
                raise fail(where, "a table with role")
            _only(spec, {"role", "roles", "generation", "limits"}, where, fail)
            roles = spec.get("roles", [spec["role"]] if "role" in spec else [])
            if not roles or not isinstance(roles, list) or ("role" in spec and "roles" in spec):
                raise fail(where, f"give role = one of {', '.join(ROLES)} (or roles = [...])")
            for role in roles:
                if role not in ROLES:
                    raise fail(f"{where}.role", f"unknown role {role!r} (one of {', '.join(ROLES)})")
            generation = spec.get("generation", 1)
            if isinstance(generation, bool) or not isinstance(generation, int) or generation < 1:
                raise fail(f"{where}.generation", "a whole number from 1")
            own = limits | _limits(spec.get("limits", {}), f"{where}.limits", fail)
            clients[cid] = Client(cid, tuple(roles), frozenset().union(*(ROLES[r] for r in roles)), own,
                                  generation, lmk.client_key(cid, generation) if lmk is not None else b"")
        return cls(clients, ServerLimits(**values))

    @classmethod
    def of(cls, lmk: Lmk, roles: Mapping[str, str], **server: Any) -> AccessPolicy:
        """A policy from {client id: role} (demos, tests, benches)."""
        clients = {cid: {"role": role} for cid, role in roles.items()}
        return cls.from_dict({"clients": clients, "server": server}, lmk)

    def credential(self, client_id: str) -> Credential:
        """The credential to hand to a listed client (its key, derived from the LMK)."""
        client = self.clients.get(client_id)
        if client is None:
            raise AccessPolicyError(f"{client_id!r} is not in the client list (add [clients.{client_id}] first)")
        if not client.key:
            raise AccessPolicyError("a credential needs the HSM's LMK")
        return Credential(client.id, client.key)


def _only(table: object, allowed: set[str], where: str, fail: Callable[[str, str], Exception]) -> None:
    if not isinstance(table, dict):
        raise fail(where or "file", "a table")
    extra = sorted(set(table) - allowed)
    if extra:
        raise fail(f"{where}.{extra[0]}" if where else extra[0],
                   f"unknown setting (known: {', '.join(sorted(allowed))})")


def _limits(table: object, where: str, fail: Callable[[str, str], Exception]) -> dict[str, RateLimit]:
    if not isinstance(table, dict):
        raise fail(where, "a table of command = { rate = N, burst = N }")
    out = {}
    for method, spec in table.items():
        if method not in BY_METHOD:
            raise fail(f"{where}.{method}", "not a command (encrypt_pin, verify_pin, ...)")
        _only(spec, {"rate", "burst"}, f"{where}.{method}", fail)
        rate, burst = spec.get("rate"), spec.get("burst")
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate < math.inf:
            raise fail(f"{where}.{method}.rate", "commands per second, above 0")
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise fail(f"{where}.{method}.burst", "a whole number from 1")
        out[method] = RateLimit(float(rate), burst)
    return out


class TokenBucket:
    __slots__ = ("limit", "tokens", "stamp")

    def __init__(self, limit: RateLimit, now: float) -> None:
        self.limit, self.tokens, self.stamp = limit, float(limit.burst), now

    def take(self, now: float) -> bool:
        self.tokens = min(float(self.limit.burst), self.tokens + (now - self.stamp) * self.limit.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class ClientState:
    """A client at work: its open (authenticated) connections, its buckets, its last alarms."""

    __slots__ = ("client", "connections", "buckets", "alarms")

    def __init__(self, client: Client, now: float) -> None:
        self.client = client
        self.connections = 0
        self.buckets = {m: TokenBucket(lim, now) for m, lim in client.limits.items()}
        self.alarms: dict[str, float] = {}


class Gate:
    """The policy applied: admits connections per client, authorises every command, raises alarms."""

    def __init__(self, policy: AccessPolicy, audit: AuditLog, clock: Callable[[], float]) -> None:
        self.policy, self.audit, self.clock = policy, audit, clock
        self._states: dict[str, ClientState] = {}

    def state(self, client: Client) -> ClientState:
        st = self._states.get(client.id)
        if st is None:
            st = self._states[client.id] = ClientState(client, self.clock())
        return st

    def admit(self, st: ClientState) -> None:
        cap = self.policy.limits.max_connections_per_client
        if st.connections >= cap:
            raise ConnectionLimit(f"client {st.client.id} already has {cap} connections (max_connections_per_client)")
        st.connections += 1

    def leave(self, st: ClientState) -> None:
        st.connections -= 1

    def authorise(self, st: ClientState, method: str) -> None:
        """NotAuthorised if the client's role may not run `method`, RateLimited if it runs it too fast."""
        client = st.client
        if method not in client.allowed:
            allowed_to = [r for r, methods in ROLES.items() if method in methods]
            raise NotAuthorised(f"{method} is for the {' or '.join(allowed_to) or 'no'} role; client {client.id} "
                                f"is {' and '.join(client.roles)}")
        bucket = st.buckets.get(method)
        if bucket is not None:
            now = self.clock()
            if not bucket.take(now):
                self._alarm(st, method, now)
                raise RateLimited(f"client {client.id} exceeded its {method} limit ({bucket.limit})")

    def _alarm(self, st: ClientState, method: str, now: float) -> None:
        last = st.alarms.get(method)
        if last is not None and now - last < ALARM_INTERVAL:
            return
        st.alarms[method] = now
        limit = st.buckets[method].limit
        self.audit.record("alarm", (f"rate:{method}",), RateLimited.code, time.time(), 0.0, st.client.id)
        log.warning("HSM ALARM: client %s exceeded its %s limit (%s); refused until it slows down",
                    st.client.id, method, limit)
