"""The FastAPI application, built by :func:`create_app`; nothing happens at import time.

Several engineers edit this file concurrently: read DEVELOPING.md at the repository root
(rules, extension points, migration ids) before changing it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from footfall import __version__
from footfall.api import health, ingest, site_assets
from footfall.api.auth import cors_headers
from footfall.errors import FootfallError
from footfall.pipeline.privacy import PiiKey
from footfall.pipeline.process import Limits, Pipeline, privacy_step
from footfall.schemas.registry import SchemaRegistry
from footfall.settings import Settings
from footfall.state import AppState
from footfall.storage import migrate
from footfall.storage.engine import create_pool, resolve_database_url
from footfall.storage.sites import SiteCache, ensure_demo_site
from footfall.storage.writer import TxStep, Writer

log = logging.getLogger("footfall")


def build_pipeline(settings: Settings) -> Pipeline:
    """The pipeline as configured (shared by the app and ``footfall failed replay``)."""
    pii_key = PiiKey(settings.pii_key_id, settings.pii_key.encode())
    return Pipeline(
        registry=SchemaRegistry(settings.schema_dir, settings.schema_reload_s),
        pii_key=pii_key,
        limits=Limits(
            max_message_bytes=settings.max_message_bytes,
            max_json_depth=settings.max_json_depth,
            max_string_length=settings.max_string_length,
        ),
        steps=[privacy_step(pii_key)],
    )


def build_tx_steps(settings: Settings) -> list[TxStep]:
    """What the writer does in its transaction for new rows (also used by replay)."""
    return []


def create_app(settings: Settings | None = None, *, migrate_on_start: bool = True) -> FastAPI:
    """Build the collector app; the lifespan opens the pool, writer and registry."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        dsn = await asyncio.to_thread(resolve_database_url, settings)
        if migrate_on_start:
            await asyncio.to_thread(migrate.upgrade, dsn)
        pool = create_pool(dsn, settings)
        await pool.open(wait=True, timeout=30)
        writer = Writer(
            pool,
            max_batch=settings.writer_max_batch,
            linger_ms=settings.writer_linger_ms,
            queue_max=settings.writer_queue_max,
            steps=build_tx_steps(settings),
        )
        writer.start()
        state = AppState(
            settings=settings,
            dsn=dsn,
            pool=pool,
            writer=writer,
            sites=SiteCache(pool),
            pipeline=build_pipeline(settings),
            head_revision=migrate.head_revision(),
        )
        if settings.demo_enabled:
            state.demo_write_key = await ensure_demo_site(pool)
        app.state.footfall = state
        try:
            yield
        finally:
            await writer.close()  # commits and answers what is in flight
            await pool.close()

    app = FastAPI(
        title="Footfall collector",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs/api",
        redoc_url=None,
    )

    @app.exception_handler(FootfallError)
    async def footfall_error(request: Request, exc: FootfallError) -> Response:
        headers = dict(exc.headers)
        origin = getattr(request.state, "cors_origin", None)
        if origin:
            headers.update(cors_headers(origin))
        return JSONResponse(
            {"error": exc.code, "detail": exc.detail}, status_code=exc.status, headers=headers
        )

    app.include_router(ingest.router)
    app.include_router(health.router)
    app.include_router(site_assets.router)
    app.add_api_route(
        settings.tracker_path, site_assets.tracker_script, methods=["GET"], include_in_schema=False
    )
    return app
