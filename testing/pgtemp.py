"""A throwaway PostgreSQL server for tests and benchmarks (never used in production).

`TempCluster()` finds initdb/postgres under /usr/lib/postgresql/*/bin (or $PG_BINDIR), creates a cluster
in a temp dir, starts `postgres` listening only on its unix socket in that private dir (no TCP port, so
nothing to pick or race for), and `stop()` ends it by PID (SIGINT = fast shutdown, then SIGQUIT/SIGKILL)
and removes the dir. PostgreSQL refuses to run as root: when we are root, initdb and the server run as the
`postgres` system user, with the temp dir chowned to it. The server gets PR_SET_PDEATHSIG, so it dies
with the process that started it even if that process is SIGKILLed.

`TempCluster(tcp=True)` listens on 127.0.0.1 instead, as a server store is reached in production (the
benchmarks): PostgreSQL cannot take a socket bound for it, so the port is one the OS just assigned, and a
start that loses it to another process ("could not bind") is retried on a new one.
"""

from __future__ import annotations

import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

PR_SET_PDEATHSIG = 1


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries, or the server would not start."""


def find_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/*/bin holding initdb and postgres (or $PG_BINDIR)."""
    env = os.environ.get("PG_BINDIR")
    candidates = (
        [env]
        if env
        else sorted(
            glob.glob("/usr/lib/postgresql/*/bin"),
            key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0,
        )
    )
    for d in reversed(candidates):
        if d and os.access(Path(d) / "initdb", os.X_OK) and os.access(Path(d) / "postgres", os.X_OK):
            return Path(d)
    return None


def _os_assigned_port() -> int:
    """A port the OS picks as free now (PostgreSQL binds it itself, so it is not held until then)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _demote(uid: int | None, gid: int | None, parent: int) -> None:
    """preexec_fn: drop to the postgres user, then ask for SIGTERM when our parent dies."""
    if gid is not None:
        os.setgroups([])
        os.setgid(gid)
    if uid is not None:
        os.setuid(uid)
    # after setuid: credential changes clear the parent-death signal
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # parent already gone
        os._exit(1)


class TempCluster:
    """A PostgreSQL server in a temp dir. `durable=False` turns fsync off (tests only); `tcp=True` listens on
    127.0.0.1 rather than only on the unix socket."""

    def __init__(
        self, *, durable: bool = True, bindir: Path | None = None, max_connections: int = 100, tcp: bool = False
    ) -> None:
        self.bindir = bindir or find_bindir()
        if self.bindir is None:
            raise PostgresUnavailable("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
        self.durable = durable
        self.max_connections = max_connections
        self.tcp = tcp
        self.dir = Path(tempfile.mkdtemp(prefix="sscard-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.uid: int | None = None
        self.gid: int | None = None
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("running as root and there is no 'postgres' user") from None
            self.uid, self.gid = pw.pw_uid, pw.pw_gid
            os.chown(self.dir, self.uid, self.gid)

    def _popen(self, args: list[str], **kw: object) -> subprocess.Popen[bytes]:
        parent = os.getpid()
        return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
            args, preexec_fn=lambda: _demote(self.uid, self.gid, parent), cwd=self.dir, **kw
        )

    def start(self, timeout: float = 60.0) -> TempCluster:
        """initdb, start the server, and wait until it accepts connections."""
        assert self.bindir is not None
        init = self._popen(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        out, _ = init.communicate(timeout=timeout)
        if init.returncode != 0:
            raise PostgresUnavailable(f"initdb failed:\n{out.decode(errors='replace')}")
        settings = {
            "listen_addresses": "127.0.0.1" if self.tcp else "",
            "unix_socket_directories": str(self.dir),
            "max_connections": str(self.max_connections),
            "shared_buffers": "128MB",
            "fsync": "on" if self.durable else "off",
            "synchronous_commit": "on" if self.durable else "off",
            "full_page_writes": "on" if self.durable else "off",
            "logging_collector": "off",
        }
        for attempt in range(5):
            self.port = _os_assigned_port() if self.tcp else 5432  # without TCP it only names the socket file
            args = [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port)]
            for k, v in settings.items():
                args += ["-c", f"{k}={v}"]
            with open(self.log, "ab") as log:
                self.proc = self._popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            if self._wait_ready(timeout):
                return self
            self._kill()
            if not self.tcp or attempt == 4 or "could not bind" not in self.log.read_text(errors="replace"):
                break
        raise PostgresUnavailable(
            f"postgres did not start; log:\n{self.log.read_text(errors='replace')[-3000:]}"
        )

    def _wait_ready(self, timeout: float) -> bool:
        import psycopg

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                psycopg.connect(self.dsn(), connect_timeout=2).close()
                return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        return False

    def dsn(self, dbname: str = "postgres", **options: str) -> str:
        """A libpq conninfo string for this server (its unix socket, or TCP on 127.0.0.1)."""
        host = "127.0.0.1" if self.tcp else str(self.dir)
        parts = [f"host={host} port={self.port} user=postgres dbname={dbname}"]
        if options:
            parts.append("options='" + " ".join(f"-c {k}={v}" for k, v in options.items()) + "'")
        return " ".join(parts)

    def new_schema(self, prefix: str = "t") -> str:
        """Create an empty schema and return a conninfo whose search_path is that schema."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        return self.dsn(search_path=name)

    def new_database(self, prefix: str = "db") -> str:
        """Create an empty database and return a conninfo for it."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def _kill(self) -> None:
        """Immediate shutdown (SIGQUIT: no shutdown checkpoint, the files are thrown away), then SIGKILL."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGQUIT, 10.0), (signal.SIGKILL, 10.0)):
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def stop(self) -> None:
        """Stop the server by PID and remove the temp dir."""
        self._kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> TempCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
