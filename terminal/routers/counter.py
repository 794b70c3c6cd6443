"""The counter itself: who it is (`GET /v1/counter`) and its page for the clerk (`GET /`).

The page is plain HTML, CSS and JavaScript in `terminal/static/counter/`, served by the daemon with every
asset (no CDN: it works offline); it signs in with a front-end bearer token like any other client.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from terminal.health import VERSION
from terminal.models import CounterInfo
from terminal.routers.deps import READ, TerminalDep, answers

router = APIRouter(tags=["counter"])
PAGE = Path(__file__).resolve().parents[1] / "static" / "counter" / "index.html"


@router.get("/v1/counter", operation_id="getCounter", dependencies=READ, response_model=CounterInfo,
            responses=answers(CounterInfo))
def counter(t: TerminalDep) -> CounterInfo:
    """This counter: terminal, institution, readers, version (what the counter page shows in its header)."""
    c = t.config.terminal
    return CounterInfo(terminal_id=c.id, terminal_number=t.terminal_number, institution=c.institution,
                       institution_name=c.institution_name or c.institution, readers=list(t.sessions),
                       version=VERSION)


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(PAGE, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})
