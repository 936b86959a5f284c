"""Builders for the Segment messages the analytics tests send, and a poster."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

UA = {
    "iphone": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15"
        " (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1"
    ),
    "android": (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/124.0.6367.82 Mobile Safari/537.36"
    ),
    "android_reduced": (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/124.0.0.0 Mobile Safari/537.36"
    ),
    "ipad": (
        "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
        " Version/16.6 Mobile/15E148 Safari/604.1"
    ),
    "edge": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51"
    ),
    "firefox_mac": (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0"
    ),
    "chrome_windows": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/124.0.0.0 Safari/537.36"
    ),
    "googlebot": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "headless": (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
        " HeadlessChrome/124.0.6367.60 Safari/537.36"
    ),
}

# A fixed past day, so nothing is clamped to the time of receipt.
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def message(kind: str, **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, "messageId": str(uuid.uuid4())}
    context = fields.pop("context", {})
    session = fields.pop("session", None)
    ua = fields.pop("ua", None)
    if session is not None:
        context["sessionId"] = session
    if ua is not None:
        context["userAgent"] = UA.get(ua, ua)
    if context:
        out["context"] = context
    minutes = fields.pop("minutes", None)
    if minutes is not None:
        out["timestamp"] = at(minutes)
    out.update({k: v for k, v in fields.items() if v is not None})
    return out


def page(anon: str | None, path: str = "/", **fields: Any) -> dict[str, Any]:
    fields.setdefault("properties", {"path": path, "url": "https://example.com" + path})
    return message("page", anonymousId=anon, **fields)


def track(anon: str | None, event: str, properties: dict[str, Any] | None = None, **fields: Any):
    return message("track", anonymousId=anon, event=event, properties=properties or {}, **fields)


def identify(anon: str | None, user: str, **fields: Any) -> dict[str, Any]:
    return message("identify", anonymousId=anon, userId=user, **fields)


def alias(user: str, previous: str, anon: str | None = None, **fields: Any) -> dict[str, Any]:
    return message("alias", userId=user, previousId=previous, anonymousId=anon, **fields)


def post(
    base_url: str,
    write_key: str,
    batch: Sequence[dict[str, Any]],
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """POST /v1/batch; the parsed 200 answer (fails the test otherwise)."""
    response = httpx.post(
        base_url + "/v1/batch",
        json={"batch": list(batch)},
        auth=(write_key, ""),
        headers=headers or {},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json()
