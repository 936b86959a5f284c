"""Who is sending: the site's write key (Basic auth, header or body) and the origin (CORS)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request

from footfall.errors import Forbidden, Unauthorized
from footfall.pipeline.identifiers import MAX_WRITE_KEY_LENGTH, storable_text
from footfall.pipeline.types import Site
from footfall.storage.sites import SiteCache, site_by_secret_key

CORS_ALLOW_HEADERS = "Authorization, Content-Type, Content-Encoding, X-Write-Key"


def write_key_from(request: Request, body: Any) -> str | None:
    """HTTP Basic username (Segment SDKs), ``X-Write-Key`` header, body or query ``writeKey``."""
    auth = request.headers.get("authorization")
    if auth and auth[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(auth[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("malformed Basic authorization header") from None
        username = decoded.split(":", 1)[0]
        if username:
            return username
    header = request.headers.get("x-write-key")
    if header:
        return header
    if isinstance(body, dict) and isinstance(body.get("writeKey"), str):
        return str(body["writeKey"])
    return request.query_params.get("writeKey")


async def authenticate(
    request: Request, body: Any, sites: SiteCache, public_url: str | None = None
) -> Site:
    """The site the request is for, or 401/403.

    A browser request from ``public_url`` (the collector's own configured origin:
    the demo page, a first-party setup) passes any site's origin check; the
    ``Host`` header is never trusted for that, a client chooses it.
    """
    key = write_key_from(request, body)
    if not key:
        raise Unauthorized("write key missing (HTTP Basic username, X-Write-Key or writeKey)")
    # Checked before the look-up: a NUL, a lone surrogate or a huge key never reaches SQL.
    if not storable_text(key, MAX_WRITE_KEY_LENGTH):
        raise Unauthorized("malformed write key")
    site = await sites.by_write_key(key)
    if site is None:
        raise Unauthorized("unknown write key")
    origin = request.headers.get("origin")
    if origin:
        if not (site.allows_origin(origin) or (public_url is not None and origin == public_url)):
            raise Forbidden(f"origin {origin} is not allowed for this site")
        request.state.cors_origin = origin
    return site


class InvalidSecretKey(Unauthorized):
    code = "invalid_secret_key"


async def authenticate_secret(request: Request, pool: AsyncConnectionPool) -> Site:
    """Server-side APIs: ``Authorization: Bearer <the site's secret key>``, or 401.

    Never a write key: write keys are public (they are in every page).
    """
    auth = request.headers.get("authorization") or ""
    if auth[:7].lower() != "bearer " or not auth[7:].strip():
        raise InvalidSecretKey("secret key missing (Authorization: Bearer <secret key>)")
    key = auth[7:].strip()
    # Checked before the look-up, as write keys are: nothing unstorable reaches SQL.
    site = await site_by_secret_key(pool, key) if storable_text(key, MAX_WRITE_KEY_LENGTH) else None
    if site is None:
        raise InvalidSecretKey("unknown secret key")
    return site


def cors_headers(origin: str, *, credentials: bool = False) -> dict[str, str]:
    """CORS headers for an allowed origin.

    ``credentials``: only for a route whose response depends on cookies (none
    does today; a first-party cookie would turn it on for the routes reading it),
    so an allowed origin never gets credentialed access by default.
    """
    headers = {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Expose-Headers": "Retry-After",
        "Vary": "Origin",
    }
    if credentials:
        headers["Access-Control-Allow-Credentials"] = "true"
    return headers


# Refusals a browser script must be able to read from any origin, so a wrong write
# key or origin shows as what it is instead of a CORS error (and is not retried).
# Their bodies carry only the error code and text, never data.
READABLE_ERRORS = frozenset({400, 401, 403, 413, 415})


def preflight_headers(origin: str, *, credentials: bool = False) -> dict[str, str]:
    return {
        **cors_headers(origin, credentials=credentials),
        "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
        "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
        "Access-Control-Max-Age": "86400",
    }
