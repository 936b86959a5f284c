"""The compiled validator decides exactly as the reference implementation does."""

from __future__ import annotations

import itertools

import pytest
from jsonschema import Draft202012Validator

from footfall.pipeline.validate import check_limits, limit_errors
from footfall.schemas.registry import MESSAGE_TYPES, SchemaRegistry, Validator
from tests.unit.test_registry import TRACKER_EVENTS

SAMPLES = [
    {},
    {"type": "track", "event": "X", "anonymousId": "a"},
    {"type": "track", "event": "", "anonymousId": "a"},
    {"type": "track", "anonymousId": None, "userId": None, "event": "X"},
    {"type": "page", "userId": 7, "properties": {"url": 1}},
    {"type": "identify", "anonymousId": "a", "traits": {"email": ["x"]}},
    {"type": "alias", "previousId": "p", "userId": "u"},
    {"type": "alias", "previousId": "", "userId": "u"},
    {"type": "group", "anonymousId": "a", "groupId": 3},
    {"type": "screen", "anonymousId": "a" * 300},
    {"type": "track", "event": "X", "anonymousId": "a", "context": {"schema": "1-0"}},
    {"type": "track", "event": "X", "anonymousId": "a", "context": {"sessionId": 12}},
    {"type": "track", "event": "X", "anonymousId": True},
]
PROPERTIES = [
    {},
    {"selector": "a", "tag": "a"},
    {"selector": "a", "tag": 1},
    {"selector": "a", "dwell_ms": -1},
    {"selector": "a", "dwell_ms": 1.0},
    {"selector": "a", "dwell_ms": True},
    {"depth_percent": 101},
    {"depth_percent": 50, "page_height": "tall"},
    {"position": 3.5, "total_length": None, "media_type": "film"},
    {"engaged_ms": 10, "max_scroll_percent": 100},
    {"analytics": "yes"},
    {"classes": ["a"] * 51, "selector": "a", "tag": "a"},
]


def _reference_valid(validator: Validator, instance: object) -> bool:
    return not list(validator._explain.iter_errors(instance))


@pytest.mark.parametrize("message_type", MESSAGE_TYPES)
def test_message_schemas_agree(message_type: str) -> None:
    validator = SchemaRegistry().message_validator(message_type)
    for sample in SAMPLES:
        instance = {**sample, "type": message_type} if sample else sample
        assert validator._decide.is_valid(instance) == _reference_valid(validator, instance), (
            instance
        )


def test_event_schemas_agree() -> None:
    registry = SchemaRegistry()
    for name, properties in itertools.product(TRACKER_EVENTS, PROPERTIES):
        validator = registry.event_schema(name).validator
        agree = validator._decide.is_valid(properties) == _reference_valid(validator, properties)
        assert agree, (name, properties)


def test_errors_come_from_the_reference_implementation() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}}
    errors = Validator(schema).errors({"n": 0})
    assert [e.message for e in errors] == [
        e.message for e in Draft202012Validator(schema).iter_errors({"n": 0})
    ]
    assert Validator(schema).errors({"n": 2}) == []


@pytest.mark.parametrize(
    "message",
    [
        {"a": "x" * 9000},
        {"a\x00": 1},
        {"a": "b\x00"},
        {"a": [[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]},
        {"a": "ok", "b": [1, 2, {"c": "d"}]},
        {"s": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[ in a string"},
    ],
)
def test_fast_limit_check_equals_the_walk(message: dict) -> None:
    import orjson

    assert limit_errors(message, orjson.dumps(message), 20, 8192) == check_limits(message, 20, 8192)
