"""Draft schemas from examples (footfall schemas infer): types, required, small enums."""

from __future__ import annotations

from footfall.schemas.infer import infer_schema
from footfall.schemas.registry import Validator


def test_types_required_and_nested() -> None:
    examples = [
        {
            "plan": "pro",
            "seats": 3,
            "price": 9.5,
            "trial": True,
            "tags": ["a"],
            "addr": {"cc": "FR"},
        },
        {
            "plan": "free",
            "seats": 1,
            "price": 0,
            "coupon": None,
            "tags": [],
            "addr": {"cc": "DE", "zip": "1"},
        },
    ]
    schema = infer_schema("Signed Up", examples)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "Signed Up" and schema["type"] == "object"
    props = schema["properties"]
    assert props["plan"] == {"type": "string"}  # two examples: too few for an enum
    assert props["seats"] == {"type": "integer"}
    assert props["price"] == {"type": "number"}  # 9.5 and 0: one type covers both
    assert props["trial"] == {"type": "boolean"}
    assert props["coupon"] == {"type": "null"}
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert props["addr"]["required"] == ["cc"]
    assert props["addr"]["properties"]["zip"] == {"type": "string"}
    assert schema["required"] == ["addr", "plan", "price", "seats", "tags"]
    validator = Validator(schema)
    assert all(validator.errors(e) == [] for e in examples)
    assert validator.errors({"plan": 7, "seats": 1, "price": 1, "tags": [], "addr": {"cc": "x"}})


def test_enum_only_for_a_few_values_seen_often() -> None:
    few = [{"plan": p} for p in ["free", "pro", "team"] * 10]
    assert infer_schema("E", few)["properties"]["plan"]["enum"] == ["free", "pro", "team"]
    many = [{"email_hash": f"h{i}"} for i in range(30)]
    assert "enum" not in infer_schema("E", many)["properties"]["email_hash"]
    mixed = [{"v": "a"}] * 20 + [{"v": 1}]
    assert infer_schema("E", mixed)["properties"]["v"] == {"type": ["integer", "string"]}


def test_no_examples_give_an_open_object() -> None:
    schema = infer_schema("E", [{}, "not an object"])
    assert schema["properties"] == {} and "required" not in schema
