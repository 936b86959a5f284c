"""Validation step: input limits, the message-type schema, then the event's schema."""

from __future__ import annotations

from collections.abc import Callable
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


# What each JSON Schema keyword demands, worded from the schema alone: the stored
# error names the rule broken and where (the JSON Pointer), never the value sent,
# which may be an e-mail or an IP (docs/http-api.md, "Errors").
_RULES: dict[str, Callable[[Any], str]] = {
    "type": lambda v: "must be of type " + " or ".join(map(str, v if isinstance(v, list) else [v])),
    "enum": lambda v: "is not one of the allowed values",
    "const": lambda v: "is not the allowed value",
    "maxLength": lambda v: f"is longer than {v} characters",
    "minLength": lambda v: f"is shorter than {v} characters",
    "pattern": lambda v: f"does not match the pattern {v}",
    "format": lambda v: f"is not a valid {v}",
    "minimum": lambda v: f"must be >= {v}",
    "maximum": lambda v: f"must be <= {v}",
    "exclusiveMinimum": lambda v: f"must be > {v}",
    "exclusiveMaximum": lambda v: f"must be < {v}",
    "multipleOf": lambda v: f"must be a multiple of {v}",
    "minItems": lambda v: f"has fewer than {v} items",
    "maxItems": lambda v: f"has more than {v} items",
    "uniqueItems": lambda v: "has repeated items",
    "minProperties": lambda v: f"has fewer than {v} properties",
    "maxProperties": lambda v: f"has more than {v} properties",
    "additionalProperties": lambda v: "has a property the schema does not allow",
    "unevaluatedProperties": lambda v: "has a property the schema does not allow",
    "additionalItems": lambda v: "has more items than the schema allows",
    "unevaluatedItems": lambda v: "has more items than the schema allows",
    "propertyNames": lambda v: "has a property name the schema does not allow",
    "anyOf": lambda v: "matches none of the allowed forms",
    "oneOf": lambda v: "does not match exactly one of the allowed forms",
    "not": lambda v: "matches a form the schema forbids",
    "contains": lambda v: "contains no item of the required form",
    "minContains": lambda v: f"contains fewer than {v} items of the required form",
    "maxContains": lambda v: f"contains more than {v} items of the required form",
    "dependentRequired": lambda v: "lacks a property another property requires",
    "dependentSchemas": lambda v: "does not match what one of its properties requires",
}


def _rule_text(error: ValidationError) -> str:
    keyword = str(error.validator)
    if keyword == "required":
        # The names come from the schema; only those missing from the object are named.
        present = error.instance if isinstance(error.instance, dict) else {}
        missing = [str(n) for n in error.validator_value if n not in present]
        return "required property missing: " + ", ".join(missing or ["?"])
    rule = _RULES.get(keyword)
    if rule is None:  # a keyword without its own wording (false schema, if/then, $ref …)
        return f"does not satisfy the schema's {keyword!r} rule"
    return rule(error.validator_value)


def _describe(error: ValidationError, prefix: tuple[Any, ...]) -> dict[str, str]:
    if error.validator == "anyOf" and not error.absolute_path:
        text = "anonymousId or userId is required"
    else:
        text = f"{_rule_text(error)} ({error.validator})"
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
    """Raise :class:`Invalid` unless ``message`` passes; return the event schema used.

    None for messages other than ``track`` and for an undeclared ``track`` event
    on a site that is not strict (its envelope was validated all the same).
    """
    message_type = message.get("type")
    validator = registry.message_validator(message_type) if isinstance(message_type, str) else None
    if validator is None:
        raise Invalid(
            reasons.INVALID_MESSAGE,
            [{"path": "/type", "message": "unknown message type (enum)"}],
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
        if not site.strict:
            return None  # undeclared: stored and marked so (pipeline/process.py)
        raise Invalid(
            reasons.UNKNOWN_EVENT,
            # The name is quoted: failure texts are scrubbed like the stored name is.
            [{"path": "/event", "message": f"no schema registered for {message['event']!r}"}],
        )
    properties = message.get("properties")
    errors = _errors(
        event_schema.validator, {} if properties is None else properties, ("properties",)
    )
    if errors:
        raise Invalid(reasons.INVALID_PROPERTIES, errors, event_schema.key)
    return event_schema
