"""The daemon's HTTP API, one router per resource (the OpenAPI at /openapi.json is the contract)."""

from terminal.routers import history, identity, pension, readers, service, settlements, visits

ALL = (service.router, readers.router, identity.router, visits.router, settlements.router, pension.router,
       history.router)
