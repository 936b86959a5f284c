"""Admin API for privacy requests: export, erase, record a consent decision.

Every route needs ``Authorization: Bearer $FOOTFALL_ADMIN_TOKEN``; while that
setting is unset the routes answer 404 (the API is off). The work runs on a
connection of its own in a thread, one transaction per request.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

import psycopg
from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, model_validator
from starlette.requests import Request
from starlette.responses import JSONResponse

from footfall.errors import FootfallError
from footfall.pipeline.privacy import Keyring, keyring_of
from footfall.settings import Settings
from footfall.state import app_state
from footfall.storage.consent import record_decision
from footfall.storage.privacy import erase_subject, export_subject


class AdminDisabled(FootfallError):
    status, code = 404, "admin_api_disabled"


class AdminUnauthorized(FootfallError):
    status, code = 401, "invalid_admin_token"


class UnknownSite(FootfallError):
    status, code = 404, "unknown_site"


class SubjectRequest(BaseModel):
    """Who: exactly one of user_id, anonymous_id or person, on one site (by name)."""

    site: str
    user_id: str | None = None
    anonymous_id: str | None = None
    person: str | None = None

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
    site: str
    anonymous_id: str | None = None
    user_id: str | None = None
    purposes: dict[str, bool] = Field(description='e.g. {"analytics": false}')
    policy_version: str | None = Field(default=None, max_length=64)


async def require_admin(request: Request) -> None:
    """Checked before the body is even parsed."""
    settings = app_state(request).settings
    if not settings.admin_token:
        raise AdminDisabled("the admin API is off: set FOOTFALL_ADMIN_TOKEN")
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), settings.admin_token.encode()
    ):
        raise AdminUnauthorized("Authorization: Bearer <FOOTFALL_ADMIN_TOKEN> required")


router = APIRouter(prefix="/admin/privacy", tags=["privacy"], dependencies=[Depends(require_admin)])


def _site_id(conn: psycopg.Connection[Any], name: str) -> int:
    row = conn.execute("SELECT id FROM sites WHERE name = %s", (name,)).fetchone()
    if row is None:
        raise UnknownSite(f"no site named {name!r}")
    return int(row[0])


async def _in_transaction(request: Request, work: Any, *, read_only: bool = False) -> Any:
    """``work`` in one transaction; read-only work on the read replica if one is configured."""
    state = app_state(request)
    dsn = state.reader_dsn if read_only else state.dsn

    def run() -> Any:
        with psycopg.connect(dsn) as conn, conn.transaction():
            return work(conn, state.settings)

    return await asyncio.to_thread(run)


def _keyring(settings: Settings) -> Keyring:
    return keyring_of(settings.pii_key_id, settings.pii_key, settings.previous_pii_keys)


@router.post("/export")
async def export(body: SubjectRequest, request: Request) -> JSONResponse:
    """Everything held about one person, by table (GDPR Art. 15)."""
    kind, value = body.subject

    def work(conn: psycopg.Connection[Any], settings: Settings) -> dict[str, Any]:
        return export_subject(conn, _site_id(conn, body.site), kind, value, _keyring(settings))

    return JSONResponse(await _in_transaction(request, work, read_only=True))


@router.post("/erase")
async def erase(body: EraseRequest, request: Request) -> JSONResponse:
    """Delete everything held about one person in one transaction (GDPR Art. 17)."""
    kind, value = body.subject

    def work(conn: psycopg.Connection[Any], settings: Settings) -> dict[str, Any]:
        return erase_subject(
            conn,
            _site_id(conn, body.site),
            kind,
            value,
            _keyring(settings),
            suppress=body.suppress,
            requested_via="api",
        )

    return JSONResponse(await _in_transaction(request, work))


@router.post("/consent")
async def consent(body: ConsentRequest, request: Request) -> JSONResponse:
    """Append a decision to the consent ledger (source ``api``), e.g. from a CRM opt-out."""
    if not body.anonymous_id and not body.user_id:
        raise FootfallError("give anonymous_id or user_id")

    def work(conn: psycopg.Connection[Any], settings: Settings) -> dict[str, Any]:
        return record_decision(
            conn,
            _site_id(conn, body.site),
            _keyring(settings).current,
            anonymous_id=body.anonymous_id,
            user_id=body.user_id,
            purposes=body.purposes,
            policy_version=body.policy_version,
            source="api",
        )

    return JSONResponse(await _in_transaction(request, work))
