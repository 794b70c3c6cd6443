"""The schemes: policy, medical visits, pensions, identity, fraud, the registry, wired by `engine.Engine`.

They use the ledger through its public API (`settlement.ledger`) and reach each other only through the
engine's wiring.
"""
