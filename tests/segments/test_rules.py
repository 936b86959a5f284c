"""The rule format: the examples in docs compile; bad rules are refused with a JSON pointer."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from footfall.pipeline.segments.rules import (
    Aggregate,
    RuleError,
    bucket_width_s,
    glob_regex,
    parse_rule,
    rule_schema,
)

EXAMPLES = Path(__file__).parents[2] / "docs" / "segments-examples"


def example(name: str) -> dict:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


def test_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(rule_schema())


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.stem)
def test_documented_examples_compile(path: Path) -> None:
    document = json.loads(path.read_text())
    segment = parse_rule(document, 3)
    assert segment.key == path.stem
    assert segment.version == 3
    assert segment.leaves


def errors_of(document: dict) -> list[dict[str, str]]:
    with pytest.raises(RuleError) as caught:
        parse_rule(document, 1)
    return caught.value.errors


def pointers(document: dict) -> list[str]:
    return [e["pointer"] for e in errors_of(document)]


COUNT = {"count": {"type": "page"}, "within": "10m", "gte": 1}


@pytest.mark.parametrize(
    ("when", "pointer", "words"),
    [
        ({"count": {"type": "page"}, "within": "10m"}, "/when", "comparison"),
        ({"all": [COUNT, {**COUNT, "within": "91d"}]}, "/when/all/1/within", "90 days"),
        ({"all": [{**COUNT, "within": 0}]}, "/when/all/0/within", "duration"),
        ({"any": [{"count": {"type": "page", "colour": 1}, "within": 5, "gte": 1}]},
         "/when/any/0/count", "colour"),
        ({"not": {"count": {"where": {"pagepath": {"eq": "/"}}}, "within": 5, "gte": 1}},
         "/when/not/count/where/pagepath", "unknown event field"),
        ({"sum": {"field": "colour", "event": "X"}, "within": "1h", "gte": 1},
         "/when/sum/field", "unknown event field"),
        ({"profile": {"sessions": {"glob": "x*"}}}, "/when/profile/sessions/glob", "number"),
        ({"profile": {"shoe_size": {"eq": 44}}}, "/when/profile/shoe_size", "unknown profile"),
        ({"after": {"event": "A"}, "absent": {"event": "B"}, "for": "2x"}, "/when/for", "duration"),
        ({"sequence": [{"event": "A"}], "within": "1m"}, "/when/sequence", "too short"),
        ({"bogus": 1}, "/when", "a condition is"),
        ({"count": {"where": {"page_path": {"between": [1, 2]}}}, "within": 5, "gte": 1},
         "/when/count/where/page_path", "between"),
    ],
)  # fmt: skip
def test_bad_rules_name_the_pointer(when: dict, pointer: str, words: str) -> None:
    errors = errors_of({"key": "k", "when": when})
    assert pointer in [e["pointer"] for e in errors], errors
    assert any(words in e["message"] for e in errors if e["pointer"] == pointer), errors


def test_bad_top_level_fields() -> None:
    assert pointers({"key": "Not A Key", "when": COUNT}) == ["/key"]
    assert pointers({"key": "k", "when": COUNT, "expose": "everyone"}) == ["/expose"]
    assert "/" in [e["pointer"] or "/" for e in errors_of({"key": "k"})]


def test_too_many_leaves_and_too_deep() -> None:
    many = {"all": [{**COUNT, "within": i + 1} for i in range(20)]}
    assert pointers({"key": "k", "when": {"any": [many, {**COUNT, "within": 99}]}}) == ["/when"]
    deep: dict = COUNT
    for _ in range(9):
        deep = {"not": deep}
    assert errors_of({"key": "k", "when": deep})[0]["message"].startswith("nested deeper")


def test_shared_leaves_keep_their_own_thresholds() -> None:
    segment = parse_rule({"key": "k", "when": {"all": [COUNT, {"not": {**COUNT, "gte": 3}}]}}, 1)
    assert len(segment.leaves) == 1  # one state for the same filter and window


def test_bucket_widths_give_at_least_60_buckets() -> None:
    assert bucket_width_s(2) == 1
    assert bucket_width_s(600) == 10
    assert bucket_width_s(86400) == 600
    assert bucket_width_s(90 * 86400) == 86400
    for window in (1, 59, 60, 61, 3599, 3600, 7 * 86400, 90 * 86400):
        width = bucket_width_s(window)
        assert width == 1 or window / width >= 60


def test_glob_dialect() -> None:
    assert glob_regex("/articles/*").match("/articles/a")
    assert not glob_regex("/articles/*").match("/articles/a/b")
    assert glob_regex("/articles/**").match("/articles/a/b")
    assert glob_regex("/p?ge").match("/page")
    assert not glob_regex("/a.b").match("/axb")


def test_aggregate_signature_ignores_threshold_but_not_window() -> None:
    a = parse_rule({"key": "a", "when": {**COUNT, "gte": 5}}, 1).leaves[0]
    b = parse_rule({"key": "b", "when": COUNT}, 1).leaves[0]
    c = parse_rule({"key": "c", "when": {**COUNT, "within": "11m"}}, 1).leaves[0]
    assert isinstance(a, Aggregate)
    assert a.sig == b.sig != c.sig


def test_rules_in_the_docs_compile_and_match_the_example_files() -> None:
    import re

    text = (EXAMPLES.parent / "segments.md").read_text()
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", text, flags=re.DOTALL)]
    documented = {b["key"]: parse_rule(b, 1) for b in blocks if "key" in b}
    assert len(documented) == 5
    for key, segment in documented.items():
        stored = parse_rule(example(key), 1)
        assert segment.when == stored.when and segment.expose == stored.expose, key
