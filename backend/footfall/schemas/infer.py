"""A draft event schema from stored examples (``footfall schemas infer``): pure, no I/O.

The draft is deliberately loose where the examples say little: every property
seen gets the JSON types it was seen with, ``required`` lists what every
example carried, and a string property becomes an ``enum`` only when many
examples share a handful of values. It is a starting point to review, not a
contract: whoever turns the site strict reads it first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
FIRST_VERSION = "1-0-0"
ENUM_MAX_VALUES = 5  # at most this many distinct strings ...
ENUM_MIN_EXAMPLES = 20  # ... seen in at least this many examples
MAX_DEPTH = 5  # nested objects below this are left open
_TYPE_ORDER = ("null", "boolean", "integer", "number", "string", "array", "object")


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _infer(values: Sequence[Any], depth: int) -> dict[str, Any]:
    seen = {json_type(v) for v in values}
    if {"integer", "number"} <= seen:
        seen.discard("integer")  # an integer is a number: one type covers both
    types = [t for t in _TYPE_ORDER if t in seen]
    schema: dict[str, Any] = {"type": types[0] if len(types) == 1 else types}
    if "object" in seen and depth < MAX_DEPTH:
        schema.update(_object([v for v in values if isinstance(v, dict)], depth + 1))
    if "array" in seen and depth < MAX_DEPTH:
        items = [item for v in values if isinstance(v, list) for item in v]
        if items:
            schema["items"] = _infer(items, depth + 1)
    strings = [v for v in values if isinstance(v, str)]
    if seen <= {"string", "null"} and strings and len(values) >= ENUM_MIN_EXAMPLES:
        distinct = sorted(set(strings))
        if len(distinct) <= ENUM_MAX_VALUES:
            schema["enum"] = [*distinct, None] if "null" in seen else distinct
    return schema


def _object(objects: Sequence[dict[str, Any]], depth: int) -> dict[str, Any]:
    names = sorted({name for obj in objects for name in obj})
    properties = {
        name: _infer([obj[name] for obj in objects if name in obj], depth) for name in names
    }
    required = [name for name in names if all(name in obj for obj in objects)]
    schema: dict[str, Any] = {"properties": properties}
    if required:
        schema["required"] = required
    return schema


def infer_schema(event: str, examples: Sequence[Any]) -> dict[str, Any]:
    """A draft Draft 2020-12 schema (SchemaVer 1-0-0) of ``event``'s ``properties``."""
    objects = [e for e in examples if isinstance(e, dict)]
    return {
        "$schema": DRAFT_2020_12,
        "title": event,
        "description": (
            f"Draft inferred by `footfall schemas infer` from {len(objects)} stored"
            " examples; review it before making the site strict."
        ),
        "type": "object",
        **_object(objects, 1),
    }
