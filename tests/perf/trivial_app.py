"""The FastAPI ceiling: one POST endpoint that reads and parses the JSON body, nothing else.

Served by uvicorn with the same worker count, event loop and HTTP parser as the
collector, so ``collector req/s / this req/s`` tells how much of the HTTP
framework's budget the collector's own work (auth, validation, pseudonymization,
the group-commit write) takes.
"""

from __future__ import annotations

import orjson
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

app = FastAPI()

_OK = orjson.dumps({"ok": True})


@app.post("/v1/{kind}")
async def ingest(kind: str, request: Request) -> Response:
    orjson.loads(await request.body())
    return Response(_OK, media_type="application/json")


@app.get("/readyz")
async def readyz() -> Response:
    return Response(_OK, media_type="application/json")
