"""Segments over HTTP: the browser's own segments, and the admin API for definitions.

``GET /v1/segments?writeKey=…&anonymousId=…`` answers the browser-exposed segments
of that visitor only (never rules, never another exposure). The ingest response of
a browser request carries the same list (:func:`response_segments`).

The admin routes (``/admin/segments``, ``Authorization: Bearer
$FOOTFALL_ADMIN_TOKEN``) call the same storage functions as ``footfall segments``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import orjson
import psycopg
from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam
from psycopg_pool import PoolTimeout
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from footfall.api.admin import require_admin
from footfall.api.auth import authenticate, cors_headers
from footfall.api.client_ip import client_ip, trusted_networks
from footfall.errors import BadRequest, FootfallError, Unavailable
from footfall.operations import site_id, site_id_async
from footfall.pipeline.consent import subject_ids
from footfall.pipeline.privacy import stored_anonymous_id
from footfall.pipeline.segments.rules import RuleError, parse_rule
from footfall.pipeline.types import Site
from footfall.state import AppState, app_state
from footfall.storage import segments as store
from footfall.storage.segments import SEGMENTS_EXTRA
from footfall.storage.writer import WriteOutcome

router = APIRouter(tags=["segments"])

MAX_ANONYMOUS_ID = 255
MAX_TEST_DAYS = 90


class SegmentConflict(FootfallError):
    status, code = 409, "segment_exists"


class SegmentNotFound(FootfallError):
    status, code = 404, "unknown_segment"


def _stored_ids(state: AppState, raw: str) -> list[str]:
    if state.keyring is None:
        return [raw]
    return sorted({stored_anonymous_id(raw, key) for key in state.keyring.keys})


async def response_segments(
    state: AppState, site: Site, messages: list[Any], outcome: WriteOutcome
) -> list[str] | None:
    """What a browser ingest response says under ``segments`` (None: leave it out).

    The writer's step already put the list on every new row of a site that has
    browser-exposed segments (same transaction, so it is what was committed); a
    request that stored nothing new asks the database.
    """
    for row in reversed(outcome.inserted):
        if SEGMENTS_EXTRA in row.extras:
            return list(row.extras[SEGMENTS_EXTRA])
    if state.segments is None:
        return None
    anonymous_id = None
    for message in reversed(messages):
        if isinstance(message, dict):
            anonymous_id = subject_ids(message)[0]
            if anonymous_id is not None:
                break
    if anonymous_id is None or len(anonymous_id) > MAX_ANONYMOUS_ID or "\x00" in anonymous_id:
        return None
    try:
        return await store.exposed_segments(
            state.pool, state.segments.definitions, site.id, _stored_ids(state, anonymous_id)
        )
    except (psycopg.Error, PoolTimeout, OSError):
        return None  # the events are committed; the list is a courtesy, not worth an error


@router.get("/v1/segments")
async def visitor_segments(
    request: Request, anonymousId: str = Query(default="", max_length=MAX_ANONYMOUS_ID)
) -> Response:
    """The browser-exposed segments of one visitor (write key + anonymousId)."""
    state = app_state(request)
    site = await authenticate(request, None, state.sites)
    ip = client_ip(
        request.client.host if request.client else None,
        request.headers,
        trusted_networks(state.settings.trusted_proxies),
    )
    state.rate_limiter.check(site, ip, 1)
    if not anonymousId:
        raise BadRequest("anonymousId is required")
    if "\x00" in anonymousId:
        raise BadRequest("anonymousId must not contain NUL characters")
    if state.segments is None:
        found: list[str] | None = None
    else:
        try:
            found = await store.exposed_segments(
                state.pool, state.segments.definitions, site.id, _stored_ids(state, anonymousId)
            )
        except (psycopg.OperationalError, PoolTimeout, OSError) as exc:
            raise Unavailable(
                "storage unavailable, retry later",
                headers={"Retry-After": str(state.settings.retry_after_s)},
            ) from exc
    headers = {"Cache-Control": "no-store"}
    origin = getattr(request.state, "cors_origin", None)
    if origin:
        headers.update(cors_headers(origin))
    return JSONResponse({"segments": found or []}, headers=headers)


# --- admin -------------------------------------------------------------------------------

# Bounded, NUL-free parameters: PostgreSQL text cannot hold NUL, and keys have a pattern.
Site_ = Annotated[str, Query(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]
Key = Annotated[str, PathParam(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]

admin_router = APIRouter(
    prefix="/admin/segments", tags=["segments"], dependencies=[Depends(require_admin)]
)


def _invalid(exc: RuleError) -> JSONResponse:
    """422 with every problem's JSON pointer."""
    return JSONResponse(
        {"error": "invalid_rule", "detail": str(exc), "errors": exc.errors}, status_code=422
    )


async def _run(request: Request, site: str, work: Any) -> Any:
    state = app_state(request)

    def run() -> Any:
        with psycopg.connect(state.dsn) as conn, conn.transaction():
            return work(conn, site_id(conn, site))

    try:
        return await asyncio.to_thread(run)
    except RuleError as exc:
        return _invalid(exc)
    except store.SegmentExists as exc:
        raise SegmentConflict(str(exc)) from exc
    except store.UnknownSegment as exc:
        raise SegmentNotFound(str(exc)) from exc


def _answer(result: Any, status: int = 200) -> Response:
    if isinstance(result, Response):
        return result
    return JSONResponse(result, status_code=status)


async def _document(request: Request) -> Any:
    body = await request.body()
    if len(body) > 64 * 1024:
        raise BadRequest("a rule document is at most 64 KiB")
    try:
        return orjson.loads(body)
    except ValueError as exc:
        raise BadRequest("the body must be a JSON rule document") from exc


@admin_router.get("")
async def list_(request: Request, site: Site_) -> Response:
    """Active segments of a site with their member counts."""
    return _answer(await _run(request, site, lambda c, s: {"segments": store.list_segments(c, s)}))


@admin_router.post("")
async def create(request: Request, site: Site_) -> Response:
    """Create a segment from a rule document (docs/segments.md); 422 names the JSON pointer."""
    document = await _document(request)
    return _answer(
        await _run(request, site, lambda c, s: store.create_segment(c, s, document)), 201
    )


@admin_router.post("/test")
async def test(
    request: Request,
    site: Site_,
    days: int = Query(default=1, ge=1, le=MAX_TEST_DAYS),
    person: int | None = Query(default=None, ge=1, le=2**63 - 1),
) -> Response:
    """Dry run: who the rule would match now, computed from stored events (nothing saved)."""
    document = await _document(request)
    try:
        segment = parse_rule(document, 0)
    except RuleError as exc:
        return _invalid(exc)
    state = app_state(request)
    async with state.pool.connection() as conn:
        found = await site_id_async(conn, site)
        return _answer(await store.dry_run(conn, found, segment, days, person))


@admin_router.get("/{key}")
async def show(request: Request, site: Site_, key: Key) -> Response:
    """One segment: its rule, versions and member count."""
    return _answer(await _run(request, site, lambda c, s: store.show_segment(c, s, key)))


@admin_router.put("/{key}")
async def update(request: Request, site: Site_, key: Key) -> Response:
    """A new version of a segment (the document's key must be the path's)."""
    document = await _document(request)
    if not isinstance(document, dict) or document.get("key") != key:
        raise BadRequest(f"the document's key must be {key!r}")
    return _answer(await _run(request, site, lambda c, s: store.update_segment(c, s, document)))


@admin_router.delete("/{key}")
async def delete(request: Request, site: Site_, key: Key) -> Response:
    """Retire a segment; its open memberships are closed."""
    return _answer(await _run(request, site, lambda c, s: store.delete_segment(c, s, key)))
