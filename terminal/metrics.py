"""Prometheus metrics of the terminal daemon (served at /metrics)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from terminal.logs import event

REGISTRY = CollectorRegistry(auto_describe=True)

transactions = Counter(
    "sscard_terminal_transactions", "Transactions by kind and outcome", ["kind", "outcome"], registry=REGISTRY
)
latency = Histogram(
    "sscard_terminal_request_seconds", "Latency of API requests, by route", ["route"], registry=REGISTRY,
    buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
requests = Counter(
    "sscard_terminal_http_requests", "HTTP requests by route and status", ["route", "status"], registry=REGISTRY
)
blacklisted = Counter(
    "sscard_terminal_blacklisted_cards", "Cards refused by the blacklist, by status", ["status"], registry=REGISTRY
)
reader_errors = Counter(
    "sscard_terminal_reader_errors", "Card and reader errors by reader and type", ["reader", "error"],
    registry=REGISTRY,
)

time_spent = Counter(
    "sscard_terminal_time_spent_seconds", "Time spent in card I/O, the centre, the security module and the journal",
    ["part"], registry=REGISTRY,
)

#: the methods `instrument()` times, by part of a terminal
TIMED_METHODS = {
    "card": ("transmit",),
    "centre": ("visit", "settle", "register_visit", "refund", "void", "settlement_outcome", "collection_outcome",
               "certify", "collect_pension", "void_collection", "presettle"),
    "security": ("external_auth_cryptogram", "verify_internal_auth", "command_mac", "terminal_random", "pin_block"),
    "journal": ("begin", "confirm", "fail", "set_card_record", "mark_reversed"),
}


def instrument(obj: object, part: str) -> None:
    """Count the time spent in `obj`'s methods of `part` (instance attributes wrap the bound methods, so
    the object keeps its type)."""
    counter = time_spent.labels(part)
    for name in TIMED_METHODS[part]:
        fn = getattr(obj, name, None)
        if fn is None:
            continue

        def timed(*args, _fn=fn, **kwargs):
            t0 = time.perf_counter()
            try:
                return _fn(*args, **kwargs)
            finally:
                counter.inc(time.perf_counter() - t0)

        setattr(obj, name, timed)


class HttpMetrics:
    """Requests by route and status, and their latency (event streams, which stay open, are only counted)."""

    STREAMS = ("/v1/readers/events",)

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def seen(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, seen)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            spent = time.perf_counter() - t0
            requests.labels(path, str(status)).inc()
            if path not in self.STREAMS:
                latency.labels(path).observe(spent)
            event("http.request", method=scope["method"], route=path, status=status, ms=round(spent * 1000, 1))
