"""Prometheus metrics of the terminal daemon (served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

transactions = Counter(
    "sscard_terminal_transactions", "Transactions by kind and outcome", ["kind", "outcome"], registry=REGISTRY
)
latency = Histogram(
    "sscard_terminal_flow_seconds", "Latency of a whole flow, by kind", ["kind"], registry=REGISTRY,
    buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
requests = Counter(
    "sscard_terminal_http_requests", "HTTP requests by route and status", ["route", "status"], registry=REGISTRY
)
reader_errors = Counter(
    "sscard_terminal_reader_errors", "Card and reader errors by reader and type", ["reader", "error"],
    registry=REGISTRY,
)
