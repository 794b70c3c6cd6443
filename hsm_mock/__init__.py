"""The mock HSM: keys wrapped under a local master key, card-key diversification, authentication
cryptograms, MACs and PIN blocks, in-process (`LocalHsm`) or over TCP (`HsmClient` / `hsm_mock.server`).

It imports nothing from cardlib, settlement, sim or terminal, and never hands out a clear key or PIN.
"""

from hsm_mock.api import DiversifiedKey, HsmApi, KeyInfo, KeyType
from hsm_mock.audit import AuditEntry, AuditLog
from hsm_mock.client import HsmClient
from hsm_mock.commands import LocalHsm
from hsm_mock.errors import HsmError
from hsm_mock.keystore import KeyStore, Lmk
from hsm_mock.suites import Suite

__all__ = [
    "AuditEntry",
    "AuditLog",
    "DiversifiedKey",
    "HsmApi",
    "HsmClient",
    "HsmError",
    "KeyInfo",
    "KeyStore",
    "KeyType",
    "Lmk",
    "LocalHsm",
    "Suite",
]
