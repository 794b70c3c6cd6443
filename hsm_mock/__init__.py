"""The mock HSM: keys wrapped under a local master key, card-key diversification, authentication
cryptograms, MACs and PIN blocks, in-process (`LocalHsm`) or over TCP (`hsm_mock.server`, reached with
`hsm_client.client.HsmClient`).

It imports nothing from cardlib, settlement, sim or terminal (only the host protocol, `hsm_client`), and
never hands out a clear key or PIN.
"""

from hsm_mock.audit import AuditEntry, AuditLog
from hsm_mock.commands import LocalHsm
from hsm_mock.keystore import KeyStore, Lmk
from hsm_mock.suites import Suite

__all__ = [
    "AuditEntry",
    "AuditLog",
    "KeyStore",
    "Lmk",
    "LocalHsm",
    "Suite",
]
