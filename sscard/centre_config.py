"""The settlement service's configuration file (`sscard settlement serve --config centre.toml`).

Every setting is an option of `sscard settlement serve`; an option given on the command line (or by its
environment variable) overrides the file. Relative paths are relative to the directory of the file. Unknown
sections or keys are refused, naming them. Example: deploy/centre.toml.example.

```toml
[store]
postgres = "host=/run/postgresql dbname=sscard user=sscard"   # or: db = "var/settlement.db"
init = false                     # create the ledger when missing (SQLite) / its tables (PostgreSQL)

[service]
bind = "127.0.0.1"               # 127.0.0.1 unless you mean to expose it
port = 8700
workers = 1                      # service processes (PostgreSQL: several settle in parallel)
max_backlog = 2000               # write requests waiting beyond which new ones get 503 OVERLOADED
log_level = "info"
log_file = ""                    # JSON-lines log file; "" = standard error (journald)
access_log = false

[terminals]
keys = "terminal-keys.toml"      # `sscard settlement new-key T0001 --institution H1`

[policies]
dir = ""                         # extra policy TOML files ("" = the shipped policies)

[identity]
biometric_threshold = 0.80

[hsm]
address = ""                     # e.g. "10.0.0.5:1500"; "" = no HSM: PIN blocks get PIN_CHECK_UNAVAILABLE
#credential = "centre-hsm.cred"  # `sscard hsm clients issue centre` (role settlement), with an address
prefix = "SSSE"
timeout = 2.0

[national]
catalogue = ""                   # the national interface's medical list ("" = the shipped one)
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from terminal.config import ConfigError, read_model


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StoreSection(_Section):
    db: str = ""
    postgres: str = ""
    init: bool = False


class ServiceSection(_Section):
    bind: str = "127.0.0.1"
    port: int = Field(8700, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=256)
    max_backlog: int = Field(2000, ge=1)
    log_level: str = Field("info", pattern=r"^(critical|error|warning|info|debug|trace)$")
    log_file: str = ""
    access_log: bool = False


class TerminalsSection(_Section):
    keys: str = ""


class PoliciesSection(_Section):
    dir: str = ""


class IdentitySection(_Section):
    biometric_threshold: float = Field(0.80, ge=0.0, le=1.0)


class HsmSection(_Section):
    address: str = Field("", pattern=r"^$|^[^:\s]+:\d{1,5}$")
    credential: str = ""
    prefix: str = "SSSE"
    timeout: float = Field(2.0, ge=0.1)


class NationalSection(_Section):
    catalogue: str = ""


class CentreConfig(_Section):
    store: StoreSection = StoreSection()
    service: ServiceSection = ServiceSection()
    terminals: TerminalsSection = TerminalsSection()
    policies: PoliciesSection = PoliciesSection()
    identity: IdentitySection = IdentitySection()
    hsm: HsmSection = HsmSection()
    national: NationalSection = NationalSection()


# option of `sscard settlement serve` <- (section, key, is a path)
OPTIONS = {
    "db": ("store", "db", True), "postgres": ("store", "postgres", False), "init": ("store", "init", False),
    "host": ("service", "bind", False), "port": ("service", "port", False),
    "workers": ("service", "workers", False), "max_backlog": ("service", "max_backlog", False),
    "log_level": ("service", "log_level", False), "log_file": ("service", "log_file", True),
    "access_log": ("service", "access_log", False), "keys": ("terminals", "keys", True),
    "policies": ("policies", "dir", True), "biometric_threshold": ("identity", "biometric_threshold", False),
    "hsm": ("hsm", "address", False), "hsm_credential": ("hsm", "credential", True),
    "hsm_prefix": ("hsm", "prefix", False), "hsm_timeout": ("hsm", "timeout", False),
    "national_catalogue": ("national", "catalogue", True),
}


def load_centre_config(path: str | Path) -> CentreConfig:
    cfg = read_model(path, CentreConfig)
    if cfg.store.db and cfg.store.postgres:
        raise ConfigError(f"{path}: store: give db or postgres, not both")
    return cfg


def options(path: str | Path) -> dict[str, Any]:
    """The serve options the file sets (those it leaves at their default are left out, so a section's
    defaults never override an option's own), paths made absolute from the file's directory."""
    p = Path(path)
    cfg, base = load_centre_config(p), p.resolve().parent
    out: dict[str, Any] = {}
    for name, (section, key, is_path) in OPTIONS.items():
        sec = getattr(cfg, section)
        if key not in sec.model_fields_set:
            continue
        value = getattr(sec, key)
        if is_path:
            if not value:
                continue
            value = Path(value) if Path(value).is_absolute() else base / value
        elif value == "":
            continue
        out[name] = value
    return out
