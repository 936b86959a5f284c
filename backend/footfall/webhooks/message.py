"""What a webhook is on the wire, per the Standard Webhooks spec (standardwebhooks.com).

Pure functions: the secret's format, the checks on what callers enqueue, the JSON
body and the three signed headers. The receiver verifies ``webhook-signature``
= ``v1,`` + base64(HMAC-SHA256(secret, "{webhook-id}.{webhook-timestamp}.{body}"))
with the base64-decoded secret (the part after ``whsec_``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
SECRET_BYTES = 32
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
MAX_DATA_BYTES = 16 * 1024
MAX_URL_LENGTH = 2048

# The webhook-id goes into a header and into the signed text: a plain token.
MESSAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,199}")
EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
ENDPOINT_NAME = re.compile(r"[a-z0-9][a-z0-9_\-]{0,62}")


def generate_secret() -> str:
    """A new endpoint secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret; ValueError names what is wrong (never the value)."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ValueError(
            f"a webhook secret holds {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes"
            f" (this one {len(key)})"
        )
    return key


def check_endpoint(name: str, url: str) -> None:
    """An endpoint's name and URL as the CLI accepts them; ValueError otherwise."""
    if not ENDPOINT_NAME.fullmatch(name):
        raise ValueError(
            "an endpoint name is 1-63 lowercase letters, digits, '-' or '_', starting with"
            " a letter or digit"
        )
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"the URL is longer than {MAX_URL_LENGTH} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the URL must be http:// or https:// with a host")
    if parts.username or parts.password:
        raise ValueError("the URL must not carry credentials (the signature authenticates)")


def check_message(event_type: str, data: dict[str, Any], message_id: str) -> bytes:
    """What ``enqueue`` refuses (a caller's bug, so ValueError); returns ``data`` as JSON."""
    if not MESSAGE_ID.fullmatch(message_id):
        raise ValueError(
            "message_id must be 1-200 characters of letters, digits, '_', '.', ':' or '-'"
        )
    if len(event_type) > 64 or not EVENT_TYPE.fullmatch(event_type):
        raise ValueError("event_type must look like 'segment.entered'")
    if not isinstance(data, dict):
        raise ValueError("data must be a JSON object")
    encoded = orjson.dumps(data)
    if len(encoded) > MAX_DATA_BYTES:
        raise ValueError(f"data is over {MAX_DATA_BYTES} bytes as JSON")
    return encoded


def body(event_type: str, occurred_at: datetime, data: dict[str, Any]) -> bytes:
    """The JSON body: the same bytes on every attempt (the id and timestamp are headers)."""
    return orjson.dumps(
        {"type": event_type, "timestamp": _iso(occurred_at), "data": data},
        option=orjson.OPT_SORT_KEYS,
    )


def signature(key: bytes, message_id: str, timestamp: int, payload: bytes) -> str:
    """``v1,`` + base64 HMAC-SHA256 of ``{id}.{timestamp}.{body}``."""
    signed = f"{message_id}.{timestamp}.".encode() + payload
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def headers(key: bytes, message_id: str, timestamp: int, payload: bytes) -> dict[str, str]:
    """The headers of one attempt (a new timestamp and signature each time, the same id)."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, message_id, timestamp, payload),
        "content-type": "application/json",
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
