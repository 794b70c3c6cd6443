"""Run the real PC/SC stack for simulated cards: our own pcscd with the vpcd driver and our reader config.

pcscd is started in the foreground as our child (`--config` with an ABSOLUTE path to a generated
reader.conf, so /etc stays untouched), dies with its parent (PR_SET_PDEATHSIG), and is stopped by PID.
Only one pcscd can run on a machine (it owns /run/pcscd/pcscd.comm): `start()` refuses to start a second
and says which PID holds it. See design/PCSC.md.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PCSCD = "/usr/sbin/pcscd"
VPCD_SO = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
RUN_DIR = Path("/run/pcscd")
FRIENDLY_NAME = "sscard Virtual"


class PcscStackError(RuntimeError):
    """pcscd or the vpcd driver is missing, or another pcscd holds the socket."""


def available() -> bool:
    return bool(shutil.which(PCSCD) or os.path.exists(PCSCD)) and os.path.exists(VPCD_SO)


def running_pid() -> int | None:
    """PID of a live pcscd that owns /run/pcscd, or None."""
    try:
        pid = int((RUN_DIR / "pcscd.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return None if stat.split(")")[-1].split()[0] == "Z" else pid


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def reader_names(name: str = FRIENDLY_NAME) -> tuple[str, str]:
    """The two vpcd slots' reader names: (user card slot, PSAM slot)."""
    return f"{name} 00 00", f"{name} 00 01"


@dataclass
class Pcscd:
    """Our pcscd: `start()`, `stop()`, or use as a context manager."""

    port: int = 35963
    name: str = FRIENDLY_NAME
    debug: bool = False
    workdir: Path | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)
    log_path: Path | None = None

    def start(self, timeout: float = 10.0) -> Pcscd:
        if not available():
            raise PcscStackError(
                f"pcscd or the vpcd driver is missing ({PCSCD}, {VPCD_SO}); install pcscd and vsmartcard-vpcd"
            )
        other = running_pid()
        if other is not None:
            raise PcscStackError(f"another pcscd (pid {other}) is running and owns {RUN_DIR}/pcscd.comm")
        wd = self.workdir or Path(tempfile.mkdtemp(prefix="sscard-pcscd-"))
        conf = (wd / "reader.conf.d").resolve()
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "vpcd").write_text(
            f'FRIENDLYNAME "{self.name}"\nDEVICENAME /dev/null:{self.port}\nLIBPATH {VPCD_SO}\nCHANNELID {self.port}\n'
        )
        self.log_path = wd / "pcscd.log"
        args = [PCSCD, "--foreground", "--config", str(conf)]
        if self.debug:
            args += ["--debug", "--apdu"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PcscStackError(f"pcscd exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            if (RUN_DIR / "pcscd.comm").exists() and running_pid() == self.proc.pid:
                return self
            time.sleep(0.02)
        self.stop()
        raise PcscStackError(f"pcscd did not come up in {timeout} s (log: {self.log_path})")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL our pcscd by PID, as a crash would end it (its socket and pid files stay behind)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    @property
    def readers(self) -> tuple[str, str]:
        return reader_names(self.name)

    def __enter__(self) -> Pcscd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
