"""The FastAPI application, built by :func:`create_app`; nothing happens at import time.

The pipeline steps and the writer's transaction steps are assembled here, in
one place each (:func:`build_pipeline`, :func:`build_tx_steps`), for the app
and for ``footfall failed replay`` alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from fastapi import FastAPI
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from footfall import __version__
from footfall.api import admin, health, ingest, metrics, profiles, segments, site_assets
from footfall.api.auth import READABLE_ERRORS, cors_headers
from footfall.api.openapi import describe_openapi
from footfall.api.ratelimit import RateLimiter
from footfall.errors import FootfallError, RejectedByDatabase, Unavailable
from footfall.observability import RequestMiddleware
from footfall.operations import keyring
from footfall.pipeline.consent import consent_step
from footfall.pipeline.device import device_step
from footfall.pipeline.geo import GeoLookup, GeoStep, open_geo
from footfall.pipeline.identity import IdentityHygiene
from footfall.pipeline.privacy import PrivacyPolicy, SaltRing, privacy_step
from footfall.pipeline.process import Limits, Pipeline
from footfall.schemas.registry import SchemaRegistry
from footfall.settings import Settings
from footfall.state import AppState
from footfall.storage import migrate, partitions
from footfall.storage.consent import record_consent
from footfall.storage.consent_view import ConsentView
from footfall.storage.engine import create_pool, resolve_database_url
from footfall.storage.identity import identity_step
from footfall.storage.outage import StorageUnavailable, is_bad_value, is_outage
from footfall.storage.profiles import profiles_step
from footfall.storage.salts import SaltStore, continue_visitors
from footfall.storage.segments import SegmentsStep, Sweeper
from footfall.storage.sessions import sessions_step
from footfall.storage.sites import SiteCache, demo_write_key, ensure_demo_site
from footfall.storage.writer import TxStep, Writer, copy_events
from footfall.webhooks.dispatcher import DispatchConfig, Dispatcher

log = logging.getLogger("footfall")

CLIENT_CLOSED_REQUEST = 499


def build_pipeline(
    settings: Settings, *, salts: SaltRing | None = None, geo: GeoLookup | None = None
) -> Pipeline:
    """The pipeline as configured (shared by the app and ``footfall failed replay``).

    ``salts``: the daily visitor salts the app keeps loaded (storage/salts.py);
    without them (replay) no cookieless visitor hash is computed. ``geo``: the
    GeoIP readers the lifespan opened; without them no geo columns.
    """
    pii_key = keyring(settings).current
    policy = PrivacyPolicy(settings.extra_sensitive_params)
    return Pipeline(
        registry=SchemaRegistry(settings.schema_dir, settings.schema_reload_s),
        pii_key=pii_key,
        limits=Limits(
            max_message_bytes=settings.max_message_bytes,
            max_json_depth=settings.max_json_depth,
            max_string_length=settings.max_string_length,
        ),
        steps=[
            consent_step(pii_key),
            IdentityHygiene(pii_key),  # before privacy: sees ids before they are hashed
            privacy_step(pii_key, policy, salts=salts),
            device_step,
            GeoStep(geo),
        ],
        privacy=policy,
    )


def build_tx_steps(settings: Settings, segments_step: SegmentsStep | None = None) -> list[TxStep]:
    """What the writer does in its transaction for new rows (also used by replay).

    The steps before ``copy_events`` decide what the new rows are written with
    (visitor hash, session id); the steps after it may read them from ``events``
    (the phases: storage/writer.py).
    """
    return [
        record_consent,
        continue_visitors,
        identity_step,
        sessions_step,
        copy_events,
        profiles_step,
        segments_step or SegmentsStep(),
    ]


def prepare_database(settings: Settings, dsn: str) -> str | None:
    """What runs once before serving: migrations, partitions ahead, the demo site.

    ``footfall serve`` runs it in the parent process before any worker starts
    (workers then skip it); an app built with ``migrate_on_start`` runs it in
    its lifespan. Returns the demo site's write key when the demo is on.
    """
    migrate.upgrade(dsn)
    partitions.ensure(dsn, settings.partition_months_ahead)
    if not settings.demo_enabled:
        return None
    with psycopg.connect(dsn) as conn, conn.transaction():
        return ensure_demo_site(conn)


def create_worker_app(settings: Settings) -> FastAPI:
    """The app of a ``footfall serve`` worker: the parent already ran :func:`prepare_database`.

    ``settings`` are the parent's, with the database URL it resolved (so a worker
    never starts an embedded server of its own) and the demo decided.
    """
    return create_app(settings, migrate_on_start=False)


def create_app(settings: Settings | None = None, *, migrate_on_start: bool = True) -> FastAPI:
    """Build the collector app; the lifespan opens the pool, writer and registry.

    ``migrate_on_start``: run :func:`prepare_database` first (a standalone app);
    off for ``footfall serve``'s workers and for tests on a migrated database.
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        dsn = await asyncio.to_thread(resolve_database_url, settings)
        if migrate_on_start:
            await asyncio.to_thread(prepare_database, settings, dsn)
        pool = create_pool(dsn, settings)
        await pool.open(wait=True, timeout=30)
        geo = await asyncio.to_thread(open_geo, settings.geoip_city_db, settings.geoip_asn_db)
        segments_step = SegmentsStep()
        writer = Writer(
            pool,
            max_batch=settings.writer_max_batch,
            linger_ms=settings.writer_linger_ms,
            queue_max=settings.writer_queue_max,
            concurrency=settings.writer_concurrency,
            steps=build_tx_steps(settings, segments_step),
            on_commit=metrics.observe_commit,
        )
        writer.start()
        salt_ring = SaltRing()
        state = AppState(
            settings=settings,
            dsn=dsn,
            read_dsn=settings.read_database_url,
            pool=pool,
            writer=writer,
            sites=SiteCache(
                pool,
                settings.site_cache_ttl_s,
                negative_ttl_s=settings.site_cache_negative_ttl_s,
                max_keys=settings.site_cache_max_keys,
            ),
            pipeline=build_pipeline(settings, salts=salt_ring, geo=geo),
            salts=SaltStore(pool, salt_ring),
            keyring=keyring(settings),
            head_revision=migrate.head_revision(),
            rate_limiter=RateLimiter.from_settings(settings, metrics.count_rate_limited),
            segments=segments_step,
        )
        assert state.keyring is not None
        consent = state.consent = ConsentView(pool, dsn, state.keyring)
        consent.start()
        if settings.demo_enabled:
            state.demo_write_key = await demo_write_key(pool)
        if settings.webhook_dispatcher:
            state.webhooks = Dispatcher(
                pool, dsn, state.keyring, DispatchConfig.from_settings(settings)
            )
            state.webhooks.start()
        app.state.footfall = state
        sampler = asyncio.create_task(metrics.sample_forever(state), name="footfall-metrics")
        schemas = asyncio.create_task(state.pipeline.registry.watch(), name="footfall-schemas")
        sweeper = None
        if settings.segments_sweeper:
            sweeper = asyncio.create_task(
                Sweeper(
                    pool,
                    segments_step.definitions,
                    interval_s=settings.segments_sweep_interval_s,
                    on_sweep=metrics.observe_sweep,
                ).run_forever(),
                name="footfall-segments-sweeper",
            )
        try:
            yield
        finally:
            sampler.cancel()
            schemas.cancel()
            if sweeper is not None:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            if state.webhooks is not None:
                await state.webhooks.close()
            await writer.close()  # commits and answers what is in flight
            await consent.close()
            await pool.close()
            if geo is not None:
                geo.close()
            metrics.process_exited()

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
            headers.update(cors_headers(origin, credentials=settings.id_cookie))
        elif (
            request.headers.get("origin")
            and exc.status in READABLE_ERRORS
            and request.method != "OPTIONS"  # a refused preflight stays a plain refusal
        ):
            # Any origin: the tracker must see a wrong key as such, and not retry it.
            headers.update(cors_headers(request.headers["origin"], credentials=settings.id_cookie))
        return JSONResponse(
            {"error": exc.code, "detail": exc.detail}, status_code=exc.status, headers=headers
        )

    # The one place where "the database is unavailable" becomes 503 + Retry-After,
    # whichever path met it (site cache, consent ledger, writer, admin API ...).
    async def storage_error(request: Request, exc: Exception) -> Response:
        if is_outage(exc):
            log.warning("database unavailable: %s", type(exc).__name__)
            return await footfall_error(request, Unavailable.retry_after(settings.retry_after_s))
        if is_bad_value(exc):
            log.warning("the database refused a value: %s", type(exc).__name__)
            return await footfall_error(
                request, RejectedByDatabase("the database refused a value of this request")
            )
        raise exc  # a bug: ServerErrorMiddleware logs it and answers 500

    for outage in (psycopg.Error, StorageUnavailable, ConnectionError, TimeoutError):
        app.add_exception_handler(outage, storage_error)

    @app.exception_handler(ClientDisconnect)
    async def client_disconnected(request: Request, exc: ClientDisconnect) -> Response:
        # Nobody reads this answer; 499 (nginx's "client closed request") is what
        # the access log and the request metrics count it as.
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    app.add_middleware(
        RequestMiddleware, log_requests=settings.access_log, on_response=metrics.observe_request
    )
    app.include_router(ingest.router)
    if settings.metrics_enabled:
        app.include_router(metrics.router)
    app.include_router(health.router)
    app.include_router(admin.router)
    app.include_router(profiles.router)
    app.include_router(segments.router)
    app.include_router(segments.admin_router)
    app.include_router(site_assets.router)
    describe_openapi(app)
    app.add_api_route(
        settings.tracker_path, site_assets.tracker_script, methods=["GET"], include_in_schema=False
    )
    return app
