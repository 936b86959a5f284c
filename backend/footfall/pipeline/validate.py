"""Validation step: input limits, the message-type schema, then the event's schema."""

from __future__ import annotations

from typing import Any

from jsonschema.exceptions import ValidationError

from footfall.pipeline import reasons
from footfall.pipeline.types import Site
from footfall.schemas.registry import EventSchema, SchemaRegistry, Validator

MAX_ERRORS = 20


class Invalid(Exception):
    """A message rejected by validation: a reason code and every error found."""

    def __init__(
        self, reason: str, errors: list[dict[str, str]], schema: str | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.errors = errors
        self.schema = schema


def pointer(parts: Any) -> str:
    """A JSON Pointer (RFC 6901) from path parts."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def check_limits(message: Any, max_depth: int, max_string: int) -> list[dict[str, str]]:
    """Nesting depth and string lengths, walked iteratively (no recursion to blow)."""
    errors: list[dict[str, str]] = []
    stack: list[tuple[Any, tuple[Any, ...]]] = [(message, ())]
    while stack and len(errors) < MAX_ERRORS:
        value, path = stack.pop()
        if isinstance(value, str):
            if len(value) > max_string:
                errors.append(
                    {"path": pointer(path), "message": f"string longer than {max_string}"}
                )
            elif "\x00" in value:  # PostgreSQL text and jsonb cannot hold NUL
                errors.append({"path": pointer(path), "message": "string contains NUL (\\u0000)"})
            continue
        if isinstance(value, dict):
            children: Any = value.items()
        elif isinstance(value, list):
            children = enumerate(value)
        else:
            continue
        if len(path) >= max_depth:
            errors.append({"path": pointer(path), "message": f"nested deeper than {max_depth}"})
            continue
        for key, child in children:
            if isinstance(key, str) and (len(key) > max_string or "\x00" in key):
                errors.append({"path": pointer(path), "message": "key too long or contains NUL"})
            stack.append((child, (*path, key)))
    return errors


def limit_errors(
    message: Any, encoded: bytes | None, max_depth: int, max_string: int
) -> list[dict[str, str]]:
    """:func:`check_limits`, skipping the walk when the serialized form proves it unneeded.

    A message whose JSON is shorter than ``max_string`` cannot hold a longer
    string, and one with at most ``max_depth`` brackets cannot nest deeper, so
    the typical message (a few hundred bytes, a handful of objects) costs two
    C-level byte scans instead of a Python walk. ``encoded`` is None when the
    serializer refused (too deep for it): then walk.
    """
    if (
        encoded is not None
        and b"\\u0000" not in encoded
        and len(encoded) <= max_string
        and encoded.count(b"{") + encoded.count(b"[") <= max_depth
    ):
        return []
    return check_limits(message, max_depth, max_string)


def _describe(error: ValidationError, prefix: tuple[Any, ...]) -> dict[str, str]:
    if error.validator == "anyOf" and not error.absolute_path:
        text = "anonymousId or userId is required"
    else:
        text = error.message
        if len(text) > 300:
            text = text[:297] + "..."
    return {"path": pointer((*prefix, *error.absolute_path)), "message": text}


def _errors(
    validator: Validator, instance: Any, prefix: tuple[Any, ...] = ()
) -> list[dict[str, str]]:
    found = validator.errors(instance)
    if not found:
        return []
    found.sort(key=lambda e: list(map(str, e.absolute_path)))
    return [_describe(error, prefix) for error in found[:MAX_ERRORS]]


def validate(message: dict[str, Any], site: Site, registry: SchemaRegistry) -> EventSchema | None:
    """Raise :class:`Invalid` unless ``message`` passes; return the event schema used."""
    message_type = message.get("type")
    validator = registry.message_validator(message_type) if isinstance(message_type, str) else None
    if validator is None:
        raise Invalid(
            reasons.INVALID_MESSAGE,
            [{"path": "/type", "message": f"unknown message type {message_type!r}"}],
            "messages/envelope/1-0-0",
        )
    errors = _errors(validator, message)
    if errors:
        raise Invalid(reasons.INVALID_MESSAGE, errors, f"messages/{message_type}/1-0-0")
    if message_type != "track":
        return None

    context = message.get("context") or {}
    version = context.get("schema")
    event_schema = registry.event_schema(message["event"], version, site.schema_dir)
    if event_schema is None:
        if version is not None:
            raise Invalid(
                reasons.UNKNOWN_SCHEMA_VERSION,
                [{"path": "/context/schema", "message": f"no version {version} of this event"}],
            )
        if site.allow_undeclared_events:
            return None
        raise Invalid(
            reasons.UNKNOWN_EVENT,
            [{"path": "/event", "message": f"no schema registered for {message['event']!r}"}],
        )
    properties = message.get("properties")
    errors = _errors(
        event_schema.validator, {} if properties is None else properties, ("properties",)
    )
    if errors:
        raise Invalid(reasons.INVALID_PROPERTIES, errors, event_schema.key)
    return event_schema
