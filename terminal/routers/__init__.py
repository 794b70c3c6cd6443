"""The daemon's HTTP API, one router per resource (the OpenAPI at /openapi.json is the contract)."""

from terminal.routers import (
    bridge,
    counter,
    history,
    identity,
    kiosk,
    pension,
    readers,
    service,
    settlements,
    visits,
)

ALL = (service.router, counter.router, readers.router, identity.router, visits.router, settlements.router,
       pension.router, kiosk.router, history.router, bridge.router)
