"""Ingest endpoints speaking the Segment HTTP Tracking API, plus the GET pixel."""

from __future__ import annotations

import asyncio
import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path
from starlette.requests import Request
from starlette.responses import Response

from footfall.api import metrics, segments
from footfall.api.auth import authenticate, cors_headers, preflight_headers
from footfall.api.body import parse_json, read_body
from footfall.api.client_ip import client_ip, trusted_networks
from footfall.api.id_cookie import id_cookie_header
from footfall.api.openapi import INGEST_OPENAPI, INGEST_RESPONSES
from footfall.errors import BadRequest, Forbidden, PayloadTooLarge, Unavailable
from footfall.observability import stage_timer
from footfall.pipeline.consent import LedgerView
from footfall.pipeline.id_cookie import cookie_anonymous_id
from footfall.pipeline.types import BatchPlan, Failure, RequestContext
from footfall.state import AppState, app_state
from footfall.storage.consent import load_ledger
from footfall.storage.writer import StorageUnavailable, WriteOutcome

router = APIRouter()

# Segment's long paths and the short ones its browser library (analytics-next) uses.
SINGLE_PATHS = {
    "track": "track", "t": "track",
    "page": "page", "p": "page",
    "screen": "screen", "s": "screen",
    "identify": "identify", "i": "identify",
    "alias": "alias", "a": "alias",
    "group": "group", "g": "group",
}  # fmt: skip
BATCH_PATHS = ("batch", "b", "import")

GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


# The pipeline runs this many messages at a time, letting the event loop (other
# requests, the writer) run in between: a 2,500-message batch would hold it for
# a third of a second in one go.
PIPELINE_CHUNK = 100


def _response_body(plan: BatchPlan, outcome: WriteOutcome) -> dict[str, Any]:
    failures = sorted([*plan.failures, *outcome.rejected], key=_by_index)
    return {
        "success": True,
        "accepted": len(outcome.inserted),
        "duplicates": len(outcome.duplicates),
        "failed": [
            {
                "index": f.index,
                "messageId": f.message_id,
                "reason": f.reason,
                "errors": f.errors,
            }
            for f in failures
        ],
        "refused": plan.refused,
    }


def _by_index(failure: Failure) -> int:
    return failure.index


async def _run_pipeline(state: AppState, messages: list[Any], ctx: RequestContext) -> BatchPlan:
    """The pipeline over the batch, :data:`PIPELINE_CHUNK` messages between two yields."""
    if len(messages) <= PIPELINE_CHUNK:
        return state.pipeline.run(messages, ctx)
    plan = BatchPlan()
    for start in range(0, len(messages), PIPELINE_CHUNK):
        if start:
            await asyncio.sleep(0)
        part = state.pipeline.run(messages[start : start + PIPELINE_CHUNK], ctx, first_index=start)
        plan.rows += part.rows
        plan.failures += part.failures
        for reason, count in part.refused.items():
            plan.refused[reason] = plan.refused.get(reason, 0) + count
    return plan


async def _ingest(
    request: Request, state: AppState, body: Any, default_type: str | None
) -> dict[str, Any]:
    """Authenticate, run the pipeline, hand the result to the writer, await the commit."""
    timer = stage_timer()
    timer.lap("read")
    received_at = datetime.now(UTC)
    ip = client_ip(
        request.client.host if request.client else None,
        request.headers,
        trusted_networks(state.settings.trusted_proxies),
    )
    # Before authentication: an unknown write key costs a query, so a client
    # trying keys is slowed down by its IP's bucket first.
    state.rate_limiter.check_ip(ip)
    site = await authenticate(request, body, state.sites, state.settings.public_url)
    if default_type is None:
        if isinstance(body, list):
            messages, batch_context, sent_at = body, None, None
        elif isinstance(body, dict) and isinstance(body.get("batch"), list):
            messages = body["batch"]
            batch_context, sent_at = body.get("context"), body.get("sentAt")
        else:
            raise BadRequest('a batch body is {"batch": [messages, ...]}')
        if len(messages) > state.settings.max_batch_messages:
            raise PayloadTooLarge(f"more than {state.settings.max_batch_messages} messages")
    else:
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object (one message)")
        messages = [{k: v for k, v in body.items() if k != "writeKey"}]
        batch_context, sent_at = None, None
    state.rate_limiter.check(site, ip, len(messages))  # 429 with Retry-After
    browser = bool(request.headers.get("origin")) or request.method == "GET"
    timer.lap("auth")
    ctx = RequestContext(
        site=site,
        received_at=received_at,
        ip=ip,
        user_agent=request.headers.get("user-agent") if browser else None,
        batch_context=batch_context if isinstance(batch_context, dict) else None,
        batch_sent_at=sent_at,
        default_type=default_type,
        headers=request.headers,
        ledger=await _privacy_inputs(state, site.id, messages, received_at),
    )
    timer.lap("privacy_inputs")
    await state.pipeline.registry.prepare(site.schema_dir)  # file I/O in a thread, once
    plan = await _run_pipeline(state, messages, ctx)
    timer.lap("pipeline")
    try:
        outcome = await state.writer.write(plan.rows, plan.failures)
        # The commit of our own group (others may be in flight): the rest was the queue.
        timer.lap_split("writer_queue", "commit", outcome.commit_s)
    except StorageUnavailable as exc:
        metrics.count_unavailable(len(messages))
        raise Unavailable.retry_after(state.settings.retry_after_s) from exc
    if browser and state.settings.id_cookie and (outcome.inserted or outcome.duplicates):
        request.state.id_cookie = id_cookie_header(
            request, state.settings, cookie_anonymous_id(messages, ctx)
        )
    metrics.count_batch(
        plan,
        len(outcome.inserted),
        len(outcome.duplicates),
        len(messages),
        outcome.rejected,
        undeclared=sum(row.undeclared for row in outcome.inserted),
    )
    body = _response_body(plan, outcome)
    if browser:  # the visitor's browser-exposed segments after this commit (docs/segments.md)
        found = await segments.response_segments(state, site, messages, outcome)
        if found is not None:
            body["segments"] = found
    timer.lap("response")
    return body


async def _privacy_inputs(
    state: AppState, site_id: int, messages: list[Any], received_at: datetime
) -> LedgerView | None:
    """What the consent and privacy steps read but cannot fetch: today's visitor salt
    (loaded once a day) and the consent ledger's entries for the batch (from the
    process's view of the ledger, storage/consent_view.py; else one query)."""
    if state.keyring is None or state.salts is None:
        return None
    # An outage here is answered 503 by the app's storage error handler.
    await state.salts.ensure(received_at.date())
    if state.consent is not None:
        return await state.consent.ledger(site_id, messages)
    return await load_ledger(state.pool, site_id, messages, state.keyring)


def _json_response(request: Request, payload: dict[str, Any]) -> Response:
    headers = {}
    state = app_state(request)
    origin = getattr(request.state, "cors_origin", None)
    if origin:
        # Credentials only with the id cookie: its answers set a cookie.
        headers = cors_headers(origin, credentials=state.settings.id_cookie)
    cookie = getattr(request.state, "id_cookie", None)
    if cookie:
        headers["Set-Cookie"] = cookie
    return Response(orjson.dumps(payload), media_type="application/json", headers=headers)


async def _read(request: Request, state: AppState) -> Any:
    length = request.headers.get("content-length")
    limit = state.settings.max_request_bytes
    if length and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    raw = await read_body(request.stream(), request.headers.get("content-encoding"), limit)
    return parse_json(raw)


_KINDS = [*BATCH_PATHS, *SINGLE_PATHS]


@router.post(
    "/v1/{kind}",
    openapi_extra=INGEST_OPENAPI,
    responses=INGEST_RESPONSES,
    response_class=Response,
    summary="Ingest Segment messages",
)
async def ingest(
    request: Request,
    kind: Annotated[
        str,
        Path(
            description="batch, b, import: a batch; track, page, … and t, p, …: one message",
            json_schema_extra={"enum": _KINDS},
        ),
    ],
) -> Response:
    """``/v1/batch`` (``/v1/b``, ``/v1/import``) or one message at ``/v1/{track,page,…}``."""
    state = app_state(request)
    if kind in BATCH_PATHS:
        default_type = None
    elif kind in SINGLE_PATHS:
        default_type = SINGLE_PATHS[kind]
    else:
        return Response(status_code=404)
    body = await _read(request, state)
    return _json_response(request, await _ingest(request, state, body, default_type))


@router.options("/v1/{path:path}")
async def preflight(path: str, request: Request) -> Response:
    """CORS preflight: it carries no write key, so any site's allowed origins qualify."""
    origin = request.headers.get("origin")
    state = app_state(request)
    if origin and await state.sites.any_site_allows(origin):
        return Response(status_code=204, headers=preflight_headers(origin))
    raise Forbidden(f"origin {origin} is not allowed")


def _decode_pixel_data(data: str) -> Any:
    padded = data + "=" * (-len(data) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
    except (binascii.Error, ValueError) as exc:
        raise BadRequest("data is not base64") from exc
    return parse_json(raw)


@router.get("/v1/pixel/{kind}")
async def pixel(kind: str, request: Request, data: str = "") -> Response:
    """One message as base64 JSON in ``?data=`` (GTM ``sendPixel``); answers a 1x1 GIF."""
    state = app_state(request)
    if kind not in SINGLE_PATHS:
        raise BadRequest(f"unknown message type {kind!r}")
    if len(data) > state.settings.max_message_bytes * 4 // 3 + 4:
        raise PayloadTooLarge("pixel data over the message size limit")
    body = _decode_pixel_data(data) if data else {}
    await _ingest(request, state, body, SINGLE_PATHS[kind])
    return Response(
        GIF,
        media_type="image/gif",
        headers={"Cache-Control": "no-store, max-age=0"},
    )
