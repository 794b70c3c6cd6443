"""Liveness and metrics: no token needed (an operator's probe and Prometheus call them)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from terminal import metrics
from terminal.health import health as check_health
from terminal.models import Health
from terminal.routers.deps import TerminalDep, answers

router = APIRouter(tags=["service"])


@router.get("/health", operation_id="getHealth", response_model=Health, responses=answers(Health, errors=()))
def health(t: TerminalDep) -> Health:
    """Each part of the counter on its own (readers, PSAM or HSM, the centre, the journal) and the whole:
    `ok`, `degraded` (the counter works in part: the centre unreachable, a reader missing), or `down`."""
    return check_health(t)


@router.get("/metrics", operation_id="getMetrics", response_class=PlainTextResponse,
            responses=answers(media="text/plain", example="sscard_terminal_transactions_total{...} 3.0\n", errors=()))
def prometheus() -> Response:
    """Prometheus metrics: transactions by outcome, flow latency, HTTP requests, reader errors."""
    return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)
