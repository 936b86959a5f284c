"""The ingest endpoints' bodies and answers as OpenAPI, for users and fuzzers.

The ingest routes read their bodies themselves (size limits, gzip, text/plain
JSON from sendBeacon), so FastAPI cannot infer them; this module describes the
Segment envelope they accept. The description is deliberately what a correct
client sends: the collector takes anything and answers each message's outcome
(stored, duplicate, failed with a reason, refused), see docs/http-api.md.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

_ID = {"type": ["string", "number", "null"], "maxLength": 255}
_TIME = {"type": "string", "format": "date-time", "maxLength": 64}

SEGMENT_CONTEXT: dict[str, Any] = {
    "type": "object",
    "description": "Where and how the message was sent (Segment's context object).",
    "properties": {
        "ip": {"type": "string", "maxLength": 64},
        "userAgent": {"type": "string", "maxLength": 1024},
        "locale": {"type": "string", "maxLength": 64, "description": "a BCP 47 tag"},
        "timezone": {"type": "string", "maxLength": 64, "description": "an IANA zone name"},
        "sessionId": {"type": ["string", "number"], "maxLength": 128},
        "page": {
            "type": "object",
            "properties": {
                k: {"type": "string"} for k in ("url", "path", "referrer", "title", "search")
            },
        },
        "campaign": {"type": "object"},
        "library": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "version": {"type": "string"}},
        },
        "consent": {"type": "object", "description": 'e.g. {"analytics": true}'},
        "schema": {"type": "string", "pattern": "^[0-9]+-[0-9]+-[0-9]+$"},
    },
}

SEGMENT_MESSAGE: dict[str, Any] = {
    "type": "object",
    "title": "Segment message",
    "description": (
        "One message of the Segment HTTP Tracking API spec. At least one of anonymousId"
        " and userId. On /v1/track, /v1/page ... `type` defaults to the path's."
    ),
    "properties": {
        "type": {"enum": ["track", "page", "screen", "identify", "alias", "group"]},
        "messageId": {
            "type": "string",
            "minLength": 1,
            "maxLength": 128,
            "description": "the deduplication key (with the site); a content hash if absent",
        },
        "anonymousId": _ID,
        "userId": _ID,
        "event": {"type": "string", "maxLength": 200, "description": "track: the event name"},
        "name": {"type": "string", "maxLength": 200, "description": "page / screen: its name"},
        "previousId": {"type": "string", "maxLength": 255, "description": "alias"},
        "groupId": {"type": ["string", "number"], "maxLength": 255, "description": "group"},
        "timestamp": _TIME,
        "originalTimestamp": _TIME,
        "sentAt": _TIME,
        "context": SEGMENT_CONTEXT,
        "properties": {"type": "object"},
        "traits": {"type": "object"},
        "integrations": {"type": "object"},
        "writeKey": {"type": "string", "maxLength": 200},
    },
}

SEGMENT_BATCH: dict[str, Any] = {
    "type": "object",
    "title": "Segment batch",
    "required": ["batch"],
    "properties": {
        "batch": {"type": "array", "items": SEGMENT_MESSAGE, "maxItems": 2500},
        "context": {**SEGMENT_CONTEXT, "description": "merged under each message's own"},
        "sentAt": _TIME,
        "writeKey": {"type": "string", "maxLength": 200},
    },
}

_BODY = {"oneOf": [SEGMENT_BATCH, SEGMENT_MESSAGE]}

INGEST_RESULT: dict[str, Any] = {
    "type": "object",
    "required": ["success", "accepted", "duplicates", "failed", "refused"],
    "properties": {
        "success": {"type": "boolean"},
        "accepted": {"type": "integer", "description": "new rows committed"},
        "duplicates": {"type": "integer", "description": "already stored, not stored again"},
        "failed": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "messageId": {"type": "string"},
                    "reason": {"type": "string"},
                    "errors": {"type": "array", "items": {"type": "object"}},
                },
            },
        },
        "refused": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
}

ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR}}}


ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("malformed body"),
    401: _error("missing, unknown or malformed write key"),
    403: _error("origin not allowed for the site"),
    413: _error("body or batch over the limits"),
    415: _error("unsupported Content-Encoding"),
    429: _error("rate limited; retry after Retry-After"),
    503: _error("storage unavailable, nothing stored; retry after Retry-After"),
}

INGEST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "every message has an outcome",
        "content": {"application/json": {"schema": INGEST_RESULT}},
    },
    **ERRORS,
}

INGEST_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": (
            "A batch ({batch: [...]}) on /v1/batch, /v1/b, /v1/import; one message elsewhere."
            " Also accepted as text/plain (sendBeacon) and with Content-Encoding gzip."
        ),
        "content": {"application/json": {"schema": _BODY}},
    },
    "security": [{"writeKeyBasic": []}, {"writeKeyHeader": []}, {}],
}

SECURITY_SCHEMES: dict[str, Any] = {
    "writeKeyBasic": {
        "type": "http",
        "scheme": "basic",
        "description": "the site's write key as the user name, empty password (Segment SDKs)",
    },
    "writeKeyHeader": {"type": "apiKey", "in": "header", "name": "X-Write-Key"},
}


def add_security_schemes(schema: dict[str, Any]) -> dict[str, Any]:
    """The write-key schemes the ingest operations name, in ``components``."""
    schema.setdefault("components", {}).setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    return schema


def describe_openapi(app: FastAPI) -> None:
    """Serve the generated document with the write-key security schemes added."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_security_schemes(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
