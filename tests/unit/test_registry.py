"""Schema registry: slugs, SchemaVer ordering, layering, and `schemas check`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from footfall.schemas.registry import BUILTIN_DIR, SchemaRegistry, check_dir, schemaver, slugify

TRACKER_EVENTS = [
    "Element Clicked",
    "Scroll Depth Reached",
    "Element Hovered",
    "Video Playback Started",
    "Video Playback Paused",
    "Video Playback Resumed",
    "Video Playback Seek Completed",
    "Video Playback Completed",
    "Video Progress",
    "Page Engaged",
    "Consent Updated",
]


def test_slugify() -> None:
    assert slugify("Element Clicked") == "element_clicked"
    assert slugify("  Order--Completed!! ") == "order_completed"


def test_schemaver_orders_numerically() -> None:
    assert max(["1-0-9", "1-0-10", "1-0-2"], key=schemaver) == "1-0-10"
    assert schemaver("2-0-0") > schemaver("1-9-9")


@pytest.mark.parametrize("name", TRACKER_EVENTS)
def test_every_tracker_event_has_a_builtin_schema(name: str) -> None:
    schema = SchemaRegistry().event_schema(name)
    assert schema is not None and schema.version == "1-0-0"


def test_builtin_schema_dirs_pass_check() -> None:
    assert check_dir(BUILTIN_DIR / "events") == []


def _write(directory: Path, slug: str, version: str, schema: dict) -> None:
    (directory / slug).mkdir(parents=True, exist_ok=True)
    (directory / slug / f"{version}.json").write_text(json.dumps(schema))


def test_custom_layers_latest_and_pinned(tmp_path: Path) -> None:
    global_dir, site_dir = tmp_path / "global", tmp_path / "site"
    _write(global_dir, "signed_up", "1-0-0", {"type": "object"})
    _write(site_dir, "signed_up", "1-1-0", {"type": "object", "required": ["plan"]})
    registry = SchemaRegistry(global_dir)
    assert registry.event_schema("Signed Up").version == "1-0-0"
    assert registry.event_schema("Signed Up", site_dir=str(site_dir)).version == "1-1-0"
    assert registry.event_schema("Signed Up", "1-0-0", str(site_dir)).version == "1-0-0"
    assert registry.event_schema("Signed Up", "3-0-0") is None
    assert registry.event_schema("Nope") is None


def test_check_dir_reports_each_problem(tmp_path: Path) -> None:
    _write(tmp_path, "ok_event", "1-0-0", {"type": "object"})
    _write(tmp_path, "bad_type", "1-0-0", {"type": "objekt"})
    _write(tmp_path, "Bad Name", "1-0-0", {"type": "object"})
    _write(tmp_path, "old_draft", "1-0-0", {"$schema": "http://json-schema.org/draft-04/schema#"})
    (tmp_path / "ok_event" / "v1.json").write_text("{}")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "1-0-0.json").write_text("{nope")
    problems = "\n".join(check_dir(tmp_path))
    assert "bad_type/1-0-0.json: invalid schema" in problems
    assert "Bad Name/1-0-0.json: folder must be the event slug 'bad_name'" in problems
    assert "old_draft/1-0-0.json: $schema must be Draft 2020-12" in problems
    assert "ok_event/v1.json: expected" in problems
    assert "broken/1-0-0.json: not JSON" in problems
    assert "ok_event/1-0-0.json" not in problems
