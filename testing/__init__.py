"""Test and bench harnesses: a throwaway PostgreSQL server (`pgtemp`) and the workload generator (`load`).

Tests and benches use them; the daemon, the service and the libraries never import them.
"""
