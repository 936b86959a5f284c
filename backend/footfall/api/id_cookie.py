"""The ``Set-Cookie`` header of the first-party id cookie (see pipeline/id_cookie.py)."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request

from footfall.pipeline.id_cookie import COOKIE_NAME, EXPIRE
from footfall.settings import Settings


def _within(host: str, domain: str) -> bool:
    return host == domain or host.endswith("." + domain)


def first_party(
    request: Request, origin: str, cookie_domain: str | None, public_url: str | None
) -> bool:
    """The page and the collector share the cookie's site: the same host, or both
    inside ``FOOTFALL_ID_COOKIE_DOMAIN``. A cookie for any other page would be a
    third-party cookie: never set. The collector's host is ``FOOTFALL_PUBLIC_URL``'s
    when set (behind a proxy the request's may differ), else the request's: a client
    that names another host there only spoils its own cookie."""
    page_host = urlsplit(origin).hostname or ""
    collector_host = urlsplit(public_url).hostname if public_url else request.url.hostname
    collector_host = collector_host or ""
    if cookie_domain:
        domain = cookie_domain.lstrip(".").lower()
        return _within(page_host, domain) and _within(collector_host, domain)
    return page_host == collector_host


def id_cookie_header(request: Request, settings: Settings, anonymous_id: str | None) -> str | None:
    """The ``Set-Cookie`` value for a browser ingest request, or None."""
    origin = request.headers.get("origin")
    if not settings.id_cookie or anonymous_id is None or not origin:
        return None
    if not first_party(request, origin, settings.id_cookie_domain, settings.public_url):
        return None
    parts = [f"{COOKIE_NAME}={anonymous_id}", "Path=/", "SameSite=Lax"]
    if anonymous_id == EXPIRE:
        parts.append("Max-Age=0")
    else:
        parts.append(f"Max-Age={settings.id_cookie_max_age_days * 86400}")
    if settings.id_cookie_domain:
        parts.append(f"Domain={settings.id_cookie_domain.lstrip('.')}")
    if origin.startswith("https:") or request.url.scheme == "https":
        parts.append("Secure")
    return "; ".join(parts)
