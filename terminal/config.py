"""Terminal configuration: one TOML file per counter.

```toml
Relative paths (journal, key_file, log file, HSM credential) are relative to the directory of this file,
not to where the daemon was started.

[terminal]
id = "T0001"                 # the terminal id the centre knows (bound to its API key)
institution = "H11000101"    # designated institution code (fixmedins_code)
institution_name = "北京市第一人民医院"   # printed on receipts
institution_level = "3"
region = "110100"
journal = "var/T0001-journal.db"
bind = "127.0.0.1"           # 127.0.0.1 unless you mean to expose the daemon
port = 8600

[readers]
user_card = "sscard Virtual 00 00"   # PC/SC name, serial:URL, or memory:SAMPLE (demo/tests); or a list of
                                     # them: one card session per reader, the API names the reader

psam = "sscard Virtual 00 01"        # "" = no PSAM: the HSM does the cryptography
psam_regions = ["11"]                # the PSAM's issuer keys cover Beijing cards; others go to the HSM
timeout = 5.0                        # seconds a card may take to answer one command (then CARD_TIMEOUT)

[settlement]
url = "http://127.0.0.1:8700"
key_env = "SSCARD_TERMINAL_KEY"      # the terminal's API key comes from this variable (or key_file)
timeout = 5.0

[centre]
dialect = "native"                   # "native": sscard's API; "national": the national medical security
                                     # platform's interface at the same URL (terminal/centre.py, national.py)
others = "native"                    # national: what the platform has no transaction for (refunds, pensions,
                                     # certification, cards) goes to the native API; "none": refused
path = "/fsi/api/rsfComIfsService/callService"   # national: the platform's transaction endpoint
opter = "counter"                    # national: the envelope's operator (经办人) and its name
opter_name = "收费员"
dept_code = "MZ"                     # national: the department, 科别 and doctor a counter registers visits
dept_name = "门诊"                   # and bills fee lines with (2201/2401/2204)
caty = "A03"
doctor = "counter"
doctor_name = "收费员"

[log]
file = "var/T0001.log"               # JSON lines, rotated; "" = standard error (journald under systemd)
level = "info"
max_bytes = 10000000
backups = 5

[hsm]
host = "127.0.0.1"                   # host = "" : no HSM
port = 1500
timeout = 2.0
credential = "T0001-hsm.cred"        # this terminal's HSM credential (`sscard hsm clients issue T0001`)

[auth]
# SHA-256 of each front end's bearer token (`sscard terminal hash-token`); never the tokens themselves
tokens_sha256 = ["..."]
events_token_ttl = 60                # seconds a page's events-stream token (put in the URL) stays valid
max_event_streams = 8                # event streams open at once per token (a page holds one per reader): 429 beyond

[cors]
# pages on these origins may call the daemon from a browser (the counter page at / needs nothing here)
allow_origins = ["https://his.example.org"]
allow_private_network = true         # answer Private Network Access preflights (a public page -> localhost)

[reader_bridge]
# the national reader interface for pages (iReadCardBas ...: terminal/reader_bridge.py); a page calls it with
# one of these tokens in the URL (?access_token=), good for the reader functions only, or a bearer token
tokens_sha256 = ["..."]
hsm_step_ttl = 60                    # seconds an iReadCardBas_HSM_Step1 holds its reader waiting for Step2
max_message = 4096                   # bytes in one call
allow_remote = false                 # true: also answer clients that are not on this machine (loopback)

[policy]
biometric_threshold = 0.80
pin_suite = "SM4"                    # PIN blocks for the centre under the SM4 (16 bytes) or 3DES (8) PIN key

[blacklist]
interval = 300                       # seconds between fetches of the centre's card blacklist (and one at start)
block_application = "DF04"           # APPLICATION BLOCK of this application on a blacklisted card (MAC from the
                                     # PSAM or HSM); "" = refuse the card only
```
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cardlib.readers.base import DEFAULT_TIMEOUT

M = TypeVar("M", bound=BaseModel)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TerminalSection(_Section):
    id: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,32}$")
    institution: str
    institution_name: str = ""
    institution_level: str = "3"
    region: str = Field(pattern=r"^\d{6}$")
    journal: str = "var/terminal-journal.db"
    bind: str = "127.0.0.1"
    port: int = Field(8600, ge=1, le=65535)


class ReadersSection(_Section):
    user_card: str | list[str]
    psam: str = ""
    psam_regions: list[str] | None = None  # region-code prefixes the PSAM has keys for; other cards go to the HSM
    timeout: float = Field(DEFAULT_TIMEOUT, gt=0, le=60)  # per-command deadline of both readers, seconds

    @field_validator("user_card")
    @classmethod
    def _readers(cls, v: str | list[str]) -> str | list[str]:
        names = [v] if isinstance(v, str) else v
        if not names or any(not n for n in names) or len(set(names)) != len(names):
            raise ValueError("one reader name, or a list of distinct names")
        return v

    @property
    def user_cards(self) -> list[str]:
        """The counter's user-card readers, in the configured order (the first is the default)."""
        return [self.user_card] if isinstance(self.user_card, str) else list(self.user_card)


class SettlementSection(_Section):
    url: str = "http://127.0.0.1:8700"
    key_env: str = "SSCARD_TERMINAL_KEY"
    key_file: str = ""
    timeout: float = Field(5.0, gt=0)

    def api_key(self) -> str:
        if self.key_file:
            try:
                key = Path(self.key_file).read_text().strip()
            except OSError as e:
                raise ConfigError(f"cannot read the settlement API key file {self.key_file}: {e.strerror}") from e
            if not key:
                raise ConfigError(f"the settlement API key file {self.key_file} is empty")
            return key
        key = os.environ.get(self.key_env, "")
        if not key:
            raise ConfigError(f"no settlement API key: set {self.key_env} or [settlement] key_file")
        return key


class CentreSection(_Section):
    dialect: Literal["native", "national"] = "native"
    others: Literal["native", "none"] = "native"
    path: str = "/fsi/api/rsfComIfsService/callService"
    opter: str = Field("counter", min_length=1, max_length=30)
    opter_name: str = Field("收费员", min_length=1, max_length=50)
    dept_code: str = Field("MZ", min_length=1, max_length=30)
    dept_name: str = Field("门诊", min_length=1, max_length=100)
    caty: str = Field("A03", min_length=1, max_length=6)
    doctor: str = Field("counter", min_length=1, max_length=30)
    doctor_name: str = Field("收费员", min_length=1, max_length=50)


class HsmSection(_Section):
    host: str = ""
    port: int = Field(1500, ge=1, le=65535)
    timeout: float = Field(2.0, gt=0)
    prefix: str = "SSSE"
    credential: str = ""  # this terminal's own credential file (issued to its id): required with a host


class LogSection(_Section):
    file: str = ""
    level: Literal["debug", "info", "warning", "error"] = "info"
    max_bytes: int = Field(10_000_000, ge=10_000)
    backups: int = Field(5, ge=0, le=100)


class AuthSection(_Section):
    tokens_sha256: list[str] = Field(default_factory=list)
    events_token_ttl: int = Field(60, ge=5, le=3600)
    max_event_streams: int = Field(8, ge=1, le=1000)


class CorsSection(_Section):
    allow_origins: list[str] = Field(default_factory=list)
    allow_private_network: bool = True
    max_age: int = Field(600, ge=0, le=86400)

    @field_validator("allow_origins")
    @classmethod
    def _origins(cls, v: list[str]) -> list[str]:
        for o in v:
            if o != "*" and not re.fullmatch(r"(https?)://[^/\s]+", o):
                raise ValueError(f"{o!r} is not an origin (scheme://host[:port], no path), nor '*'")
        return v


class ReaderBridgeSection(_Section):
    tokens_sha256: list[str] = Field(default_factory=list)
    hsm_step_ttl: float = Field(60.0, gt=0, le=600)
    max_message: int = Field(4096, ge=256, le=65536)
    allow_remote: bool = False


class PolicySection(_Section):
    biometric_threshold: float = Field(0.80, ge=0, le=1)
    require_card_auth: bool = True
    pin_suite: Literal["SM4", "3DES"] = "SM4"  # the terminal PIN key (PSAM/HSM) the centre's PIN blocks use


class BlacklistSection(_Section):
    interval: float = Field(300.0, gt=0, le=86_400)
    block_application: Literal["", "DF01", "DF02", "DF03", "DF04"] = ""


class TerminalConfig(_Section):
    terminal: TerminalSection
    readers: ReadersSection
    settlement: SettlementSection = SettlementSection()
    centre: CentreSection = CentreSection()
    hsm: HsmSection = HsmSection()
    auth: AuthSection = AuthSection()
    cors: CorsSection = CorsSection()
    log: LogSection = LogSection()
    reader_bridge: ReaderBridgeSection = ReaderBridgeSection()
    policy: PolicySection = PolicySection()
    blacklist: BlacklistSection = BlacklistSection()

    def token_ok(self, token: str) -> bool:
        return hash_token(token) in self.auth.tokens_sha256

    def bridge_token_ok(self, token: str) -> bool:
        """A page's token for the reader bridge (and nothing else)."""
        return hash_token(token) in self.reader_bridge.tokens_sha256

    def relative_to(self, base: Path) -> TerminalConfig:
        """A copy with relative file paths taken from `base` (the configuration file's directory)."""

        def at(path: str) -> str:
            return path if not path or path == ":memory:" or Path(path).is_absolute() else str(base / path)

        return self.model_copy(update={
            "terminal": self.terminal.model_copy(update={"journal": at(self.terminal.journal)}),
            "settlement": self.settlement.model_copy(update={"key_file": at(self.settlement.key_file)}),
            "hsm": self.hsm.model_copy(update={"credential": at(self.hsm.credential)}),
            "log": self.log.model_copy(update={"file": at(self.log.file)}),
        })


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or wrong; the message names the field."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def read_model(path: str | Path, model: type[M]) -> M:
    """A TOML file validated as `model`; ConfigError names the file and the first wrong field."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read {p}: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from e
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"{p}: {where}: {first['msg']}") from e


def load_config(path: str | Path) -> TerminalConfig:
    return read_model(path, TerminalConfig).relative_to(Path(path).resolve().parent)
