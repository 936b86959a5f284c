"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse

from footfall.state import app_state
from footfall.storage.sites import database_revision

router = APIRouter()
log = logging.getLogger("footfall.health")


@router.get("/healthz")
async def healthz() -> JSONResponse:
    """The process is alive and serving."""
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Database reachable, schema at head, writer accepting: else 503 (take out of rotation)."""
    state = app_state(request)
    checks: dict[str, bool] = {"writer": state.writer.accepting}
    try:
        revision = await database_revision(state.pool)
        checks["database"] = True
        checks["schema_at_head"] = revision == state.head_revision
    except Exception as exc:
        # Not ready is the answer; why goes to the log (without the DSN: psycopg's
        # messages name host and database, never the password).
        log.warning(
            "readiness: database check failed: %s",
            type(exc).__name__,
            extra={"error": f"{type(exc).__name__}: {exc}"},
        )
        checks["database"] = False
        checks["schema_at_head"] = False
    ready = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )
