"""Schema registry: slugs, SchemaVer ordering, layering, and `schemas check`."""

from __future__ import annotations

import json
import logging
import os
import time
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
    registry.load_site(str(site_dir))
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


def test_a_broken_file_is_refused_and_logged_the_rest_loads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write(tmp_path, "signed_up", "1-0-0", {"type": "object"})
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "1-0-0.json").write_text("{nope")
    registry = SchemaRegistry()
    with caplog.at_level(logging.WARNING, logger="footfall.schemas"):
        registry.load_site(str(tmp_path))
    assert registry.event_schema("Signed Up", site_dir=str(tmp_path)) is not None
    assert registry.event_schema("Broken", site_dir=str(tmp_path)) is None
    refused = [r for r in caplog.records if r.getMessage().startswith("schema file refused")]
    assert len(refused) == 1
    assert refused[0].path == str(tmp_path / "broken" / "1-0-0.json")
    assert "JSONDecodeError" in refused[0].error

    caplog.clear()
    registry.refresh()  # unchanged: not read again, not logged again
    assert caplog.records == []


def test_a_broken_edit_keeps_the_last_good_version_until_fixed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write(tmp_path, "signed_up", "1-0-0", {"type": "object", "required": ["plan"]})
    registry = SchemaRegistry(tmp_path)
    good = registry.event_schema("Signed Up")
    assert good is not None and good.schema["required"] == ["plan"]
    path = tmp_path / "signed_up" / "1-0-0.json"
    path.write_text('{"type": "objekt"}')  # an invalid schema
    os.utime(path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    with caplog.at_level(logging.WARNING, logger="footfall.schemas"):
        registry.refresh()
    assert registry.event_schema("Signed Up") is good
    (record,) = [r for r in caplog.records if r.getMessage().startswith("schema file refused")]
    assert record.kept_version is True and "SchemaError" in record.error

    _write(tmp_path, "signed_up", "1-0-0", {"type": "object", "required": ["seats"]})
    os.utime(path, ns=(time.time_ns() + 2 * 10**9, time.time_ns() + 2 * 10**9))
    registry.refresh()
    fixed = registry.event_schema("Signed Up")
    assert fixed is not None and fixed.schema["required"] == ["seats"]


def test_pipeline_run_never_touches_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime

    from footfall.app import build_pipeline
    from footfall.pipeline.types import RequestContext, Site
    from footfall.settings import Settings

    _write(tmp_path, "signed_up", "1-0-0", {"type": "object"})
    pipeline = build_pipeline(Settings(env="test", schema_dir=tmp_path, schema_reload_s=0))
    pipeline.registry.load_site(str(tmp_path))
    site = Site(id=1, name="s", write_key="k", settings={"schema_dir": str(tmp_path)})

    def no_io(*args: object, **kwargs: object) -> None:
        raise AssertionError("file I/O on the request path")

    for name in ("stat", "read_text", "glob", "rglob", "is_dir", "exists"):
        monkeypatch.setattr(Path, name, no_io)
    ctx = RequestContext(site=site, received_at=datetime.now(UTC))
    message = {"type": "track", "event": "Signed Up", "anonymousId": "a"}
    plan = pipeline.run([message, {**message, "event": "Other"}], ctx)
    assert [r.schema for r in plan.rows] == ["signed_up/1-0-0", None]


def test_watch_logs_a_failed_reload_and_keeps_going(caplog: pytest.LogCaptureFixture) -> None:
    import asyncio

    registry = SchemaRegistry(reload_s=0)
    calls: list[int] = []

    def failing_refresh() -> None:
        calls.append(1)
        raise OSError("disk gone")

    registry.refresh = failing_refresh  # type: ignore[method-assign]

    async def run() -> None:
        task = asyncio.create_task(registry.watch())
        await asyncio.sleep(0.35)
        task.cancel()

    with caplog.at_level(logging.ERROR, logger="footfall.schemas"):
        asyncio.run(run())
    assert len(calls) >= 2  # a failure does not end the loop
    assert any("schema reload failed" in r.getMessage() for r in caplog.records)
