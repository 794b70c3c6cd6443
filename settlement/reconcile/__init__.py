"""Day-end reconciliation (journals, statements, comparison, repairs planned then applied) and clearing.

It uses the ledger through its public API and reaches the schemes only where a repair replays one.
"""
