"""Admin API for privacy requests: export, erase, record a consent decision.

Every route needs ``Authorization: Bearer $FOOTFALL_ADMIN_TOKEN``; while that
setting is unset the routes answer 404 (the API is off). The work runs on a
connection of its own in a thread, one transaction per request.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from footfall.errors import FootfallError, PayloadTooLarge
from footfall.operations import MAX_SITE_NAME_LENGTH, keyring, record_consent, site_id
from footfall.pipeline.identifiers import MAX_ID_LENGTH, storable_text
from footfall.settings import Settings
from footfall.state import app_state
from footfall.storage.privacy import erase_subject, export_subject

MAX_BODY_BYTES = 64 * 1024
MAX_PURPOSES = 50


class AdminDisabled(FootfallError):
    status, code = 404, "admin_api_disabled"


class AdminUnauthorized(FootfallError):
    status, code = 401, "invalid_admin_token"


class InvalidAdminRequest(FootfallError):
    status, code = 400, "invalid_request"


def _storable(max_length: int) -> AfterValidator:
    """As identifiers are checked at ingest: no NUL or control character, no lone surrogate."""

    def check(value: str) -> str:
        if not storable_text(value, max_length):
            raise ValueError("must not contain NUL, control characters or lone surrogates")
        return value

    return AfterValidator(check)


# Bounds as the ingest envelope's (pipeline/identifiers.py).
Name = Annotated[str, Field(min_length=1, max_length=MAX_SITE_NAME_LENGTH), _storable(255)]
Identifier = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH), _storable(MAX_ID_LENGTH)]
Purpose = Annotated[str, Field(min_length=1, max_length=64), _storable(64)]


class AdminRoute(APIRoute):
    """Admin bodies are checked like ingest bodies: size first, then a documented 400.

    FastAPI's own answer to a body that fails its model is a 422 in another
    shape; here every problem is ``{"error": "invalid_request", "detail": ...}``.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            await require_admin(request)  # before a byte of the body is read
            if request.method == "POST":
                await _read_bounded(request)
            try:
                return await handler(request)
            except RequestValidationError as exc:
                raise InvalidAdminRequest(_describe(exc)) from None

        return route


async def _read_bounded(request: Request) -> None:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"admin request body over {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"admin request body over {MAX_BODY_BYTES} bytes")
    request._body = bytes(body)  # what request.body() returns from now on


def _describe(exc: RequestValidationError) -> str:
    """Where and what, never the offending value (it may be an e-mail or an id)."""
    parts = []
    for error in exc.errors()[:10]:
        where = "/".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


class SubjectRequest(BaseModel):
    """Who: exactly one of user_id, anonymous_id or person, on one site (by name)."""

    model_config = ConfigDict(extra="forbid")

    site: Name
    user_id: Identifier | None = None
    anonymous_id: Identifier | None = None
    person: Annotated[str, Field(pattern=r"^[0-9]{1,19}$")] | None = None

    @model_validator(mode="after")
    def _one_subject(self) -> SubjectRequest:
        if sum(v is not None for v in (self.user_id, self.anonymous_id, self.person)) != 1:
            raise ValueError("give exactly one of user_id, anonymous_id, person")
        return self

    @property
    def subject(self) -> tuple[str, str]:
        if self.user_id is not None:
            return "user_id", self.user_id
        if self.anonymous_id is not None:
            return "anonymous_id", self.anonymous_id
        assert self.person is not None
        return "person", self.person


class EraseRequest(SubjectRequest):
    suppress: bool = False  # refuse this person's future messages (reason "erased")


class ConsentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    site: Name
    anonymous_id: Identifier | None = None
    user_id: Identifier | None = None
    purposes: dict[Purpose, bool] = Field(
        description='e.g. {"analytics": false}', min_length=1, max_length=MAX_PURPOSES
    )
    policy_version: Annotated[str, Field(max_length=64), _storable(64)] | None = None

    @model_validator(mode="after")
    def _someone(self) -> ConsentRequest:
        if not self.anonymous_id and not self.user_id:
            raise ValueError("give anonymous_id or user_id")
        return self


async def require_admin(request: Request) -> None:
    """Checked by :class:`AdminRoute` before the body is read."""
    settings = app_state(request).settings
    if not settings.admin_token:
        raise AdminDisabled("the admin API is off: set FOOTFALL_ADMIN_TOKEN")
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), settings.admin_token.encode()
    ):
        raise AdminUnauthorized("Authorization: Bearer <FOOTFALL_ADMIN_TOKEN> required")


router = APIRouter(prefix="/admin/privacy", tags=["privacy"], route_class=AdminRoute)


async def _in_transaction(request: Request, work: Any, *, read_only: bool = False) -> Any:
    """``work`` in one transaction; read-only work on the read replica if one is configured."""
    state = app_state(request)
    dsn = state.reader_dsn if read_only else state.dsn

    def run() -> Any:
        with psycopg.connect(dsn) as conn, conn.transaction():
            return work(conn, state.settings)

    return await asyncio.to_thread(run)


@router.post("/export")
async def export(body: SubjectRequest, request: Request) -> JSONResponse:
    """Everything held about one person, by table (GDPR Art. 15)."""
    kind, value = body.subject

    def work(conn: psycopg.Connection[Any], settings: Settings) -> dict[str, Any]:
        return export_subject(conn, site_id(conn, body.site), kind, value, keyring(settings))

    return JSONResponse(await _in_transaction(request, work, read_only=True))


@router.post("/erase")
async def erase(body: EraseRequest, request: Request) -> JSONResponse:
    """Delete everything held about one person in one transaction (GDPR Art. 17)."""
    kind, value = body.subject

    def work(conn: psycopg.Connection[Any], settings: Settings) -> dict[str, Any]:
        return erase_subject(
            conn,
            site_id(conn, body.site),
            kind,
            value,
            keyring(settings),
            suppress=body.suppress,
            requested_via="api",
        )

    return JSONResponse(await _in_transaction(request, work))


@router.post("/consent")
async def consent(body: ConsentRequest, request: Request) -> JSONResponse:
    """Append a decision to the consent ledger (source ``api``), e.g. from a CRM opt-out."""

    def work(conn: psycopg.Connection[Any], settings: Settings) -> dict[str, Any]:
        return record_consent(
            conn,
            settings,
            body.site,
            anonymous_id=body.anonymous_id,
            user_id=body.user_id,
            purposes=body.purposes,
            policy_version=body.policy_version,
            source="api",
        )

    return JSONResponse(await _in_transaction(request, work))
