"""The schema registry: built-in and custom JSON Schemas, looked up by event name.

Layout of a schema directory (built-in ``events/`` and custom ones alike)::

    <slug>/<MODEL>-<REVISION>-<ADDITION>.json     e.g. element_clicked/1-0-0.json

``slug`` is the event name lower-cased with every run of other characters
turned into ``_`` ("Element Clicked" -> ``element_clicked``). A message may pin a
version with ``context.schema = "1-0-0"``; otherwise the highest SchemaVer wins.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

BUILTIN_DIR = Path(__file__).resolve().parent
MESSAGE_TYPES = ("track", "page", "screen", "identify", "alias", "group")
SCHEMAVER = re.compile(r"^(\d+)-(\d+)-(\d+)\.json$")
_SLUG = re.compile(r"[^a-z0-9]+")


@lru_cache(maxsize=4096)
def slugify(event_name: str) -> str:
    """The directory name of an event's schemas."""
    return _SLUG.sub("_", event_name.lower()).strip("_")


def schemaver(text: str) -> tuple[int, int, int]:
    """``"1-2-3"`` -> ``(1, 2, 3)`` (MODEL-REVISION-ADDITION)."""
    model, revision, addition = (int(part) for part in text.split("-"))
    return model, revision, addition


class Validator:
    """A Draft 2020-12 validator: compiled to decide, the reference implementation to explain.

    jsonschema-rs decides validity in well under a microsecond per message (the
    pure-Python validator takes ~100 us, most of the pipeline's time). Only a
    message it rejects goes through ``jsonschema`` for the error list, so the
    reported paths and messages are the reference implementation's. Should the
    two ever disagree on a rejection, the reference implementation wins.
    """

    __slots__ = ("_decide", "_explain")

    def __init__(
        self,
        schema: dict[str, Any],
        resources: list[tuple[str, dict[str, Any]]] | None = None,
    ) -> None:
        py_registry: Registry = Registry().with_resources(
            (uri, Resource.from_contents(contents, DRAFT202012))
            for uri, contents in (resources or [])
        )
        self._explain = Draft202012Validator(schema, registry=py_registry)
        self._decide = jsonschema_rs.Draft202012Validator(
            schema,
            registry=jsonschema_rs.Registry(resources) if resources else None,
            validate_formats=False,  # as jsonschema without a FormatChecker
        )

    def errors(self, instance: Any) -> list[ValidationError]:
        """Every error, or an empty list when ``instance`` is valid."""
        if self._decide.is_valid(instance):
            return []
        return list(self._explain.iter_errors(instance))


@dataclass(frozen=True, slots=True)
class EventSchema:
    """One version of one event's properties schema."""

    slug: str
    version: str
    schema: dict[str, Any]
    validator: Validator
    source: Path
    # (path in properties, action) of every "x-footfall-pii" mark, found once at load.
    pii: tuple[tuple[tuple[str, ...], str], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.slug}/{self.version}"


PII_ACTIONS = ("hash", "drop", "redact")


def pii_paths(
    schema: Any, path: tuple[str, ...] = (), depth: int = 0
) -> list[tuple[tuple[str, ...], str]]:
    """Where a properties schema marks ``"x-footfall-pii": "hash" | "drop" | "redact"``.

    Paths follow ``properties`` (by name) and ``items`` (``"*"``), through
    ``allOf``/``anyOf``/``oneOf``; ``$ref`` is not followed.
    """
    found: list[tuple[tuple[str, ...], str]] = []
    if not isinstance(schema, dict) or depth > 32:
        return found
    action = schema.get("x-footfall-pii")
    if path and action in PII_ACTIONS:
        return [(path, action)]
    for name, sub in (schema.get("properties") or {}).items():
        found += pii_paths(sub, (*path, name), depth + 1)
    if isinstance(schema.get("items"), dict):
        found += pii_paths(schema["items"], (*path, "*"), depth + 1)
    for keyword in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(keyword) or ():
            found += pii_paths(sub, path, depth + 1)
    return list(dict.fromkeys(found))


@dataclass(slots=True)
class _Layer:
    directory: Path
    events: dict[str, dict[str, EventSchema]] = field(default_factory=dict)
    stamp: float = -1.0


def _tree_stamp(directory: Path) -> float:
    """Latest mtime of the directory and everything in it (cheap change detection)."""
    if not directory.is_dir():
        return 0.0
    stamps = [directory.stat().st_mtime]
    for path in directory.rglob("*"):
        stamps.append(path.stat().st_mtime)
    return max(stamps)


def load_event_dir(directory: Path) -> dict[str, dict[str, EventSchema]]:
    """Every valid ``<slug>/<ver>.json`` under ``directory``; raises on a broken file."""
    found: dict[str, dict[str, EventSchema]] = {}
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob("*/*.json")):
        match = SCHEMAVER.match(path.name)
        if not match:
            continue
        schema = json.loads(path.read_text())
        Draft202012Validator.check_schema(schema)
        version = path.name.removesuffix(".json")
        slug = path.parent.name
        found.setdefault(slug, {})[version] = EventSchema(
            slug=slug,
            version=version,
            schema=schema,
            validator=Validator(schema),
            source=path,
            pii=tuple(pii_paths(schema)),
        )
    return found


class SchemaRegistry:
    """Message-type validators and event schemas in layers (built-in, global, per site)."""

    def __init__(self, custom_dir: Path | None = None, reload_s: float = 5.0) -> None:
        self._reload_s = reload_s
        self._checked_at = 0.0
        self._message_validators = self._load_message_validators()
        self._builtin = _Layer(BUILTIN_DIR / "events")
        self._builtin.events = load_event_dir(self._builtin.directory)
        self._global = _Layer(custom_dir) if custom_dir else None
        self._site_layers: dict[Path, _Layer] = {}
        if self._global is not None:
            self._refresh(self._global)

    @staticmethod
    def _load_message_validators() -> dict[str, Validator]:
        schemas = {
            kind: json.loads((BUILTIN_DIR / "messages" / kind / "1-0-0.json").read_text())
            for kind in ("envelope", *MESSAGE_TYPES)
        }
        resources = [(schema["$id"], schema) for schema in schemas.values()]
        return {kind: Validator(schemas[kind], resources) for kind in MESSAGE_TYPES}

    def message_validator(self, message_type: str) -> Validator | None:
        return self._message_validators.get(message_type)

    def _refresh(self, layer: _Layer) -> None:
        stamp = _tree_stamp(layer.directory)
        if stamp != layer.stamp:
            try:
                layer.events = load_event_dir(layer.directory)
                layer.stamp = stamp
            except (OSError, ValueError, SchemaError):
                # A half-written or broken file keeps the last good set loaded;
                # `footfall schemas check` tells which file is wrong.
                if layer.stamp < 0:
                    raise

    def maybe_reload(self) -> None:
        """Pick up added or changed custom schema files, at most every ``reload_s``."""
        now = time.monotonic()
        if now - self._checked_at < self._reload_s:
            return
        self._checked_at = now
        for layer in self._layers_to_watch():
            self._refresh(layer)

    def _layers_to_watch(self) -> Iterable[_Layer]:
        if self._global is not None:
            yield self._global
        yield from self._site_layers.values()

    def _site_layer(self, site_dir: str | None) -> _Layer | None:
        if not site_dir:
            return None
        path = Path(site_dir)
        layer = self._site_layers.get(path)
        if layer is None:
            layer = _Layer(path)
            self._refresh(layer)
            self._site_layers[path] = layer
        return layer

    def event_schema(
        self, event_name: str, version: str | None = None, site_dir: str | None = None
    ) -> EventSchema | None:
        """The schema of ``event_name`` (pinned ``version`` or the latest), or None."""
        slug = slugify(event_name)
        versions: dict[str, EventSchema] = {}
        for layer in (self._builtin, self._global, self._site_layer(site_dir)):
            if layer is not None:
                versions.update(layer.events.get(slug, {}))
        if not versions:
            return None
        if version is not None:
            return versions.get(version)
        return versions[max(versions, key=schemaver)]


def check_dir(directory: Path) -> list[str]:
    """Problems found in a custom schema directory (empty when all is well)."""
    problems: list[str] = []
    if not directory.is_dir():
        return [f"{directory}: not a directory"]
    for path in sorted(directory.rglob("*")):
        if path.is_dir():
            continue
        rel = path.relative_to(directory)
        if len(rel.parts) != 2 or not SCHEMAVER.match(path.name):
            problems.append(f"{rel}: expected <event_slug>/<MODEL>-<REVISION>-<ADDITION>.json")
            continue
        if rel.parts[0] != slugify(rel.parts[0]):
            problems.append(f"{rel}: folder must be the event slug {slugify(rel.parts[0])!r}")
        try:
            schema = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            problems.append(f"{rel}: not JSON: {exc}")
            continue
        declared = schema.get("$schema") if isinstance(schema, dict) else None
        if declared not in (None, "https://json-schema.org/draft/2020-12/schema"):
            problems.append(f"{rel}: $schema must be Draft 2020-12, got {declared!r}")
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            problems.append(
                f"{rel}: invalid schema at {'/'.join(map(str, exc.path))}: {exc.message}"
            )
        problems += [f"{rel}: {problem}" for problem in _pii_mark_problems(schema)]
    return problems


def _pii_mark_problems(schema: Any, path: str = "") -> list[str]:
    """Marks other than hash/drop/redact (a typo would leave PII in the clear)."""
    if isinstance(schema, list):
        return [p for i, sub in enumerate(schema) for p in _pii_mark_problems(sub, f"{path}/{i}")]
    if not isinstance(schema, dict):
        return []
    problems = []
    mark = schema.get("x-footfall-pii")
    if mark is not None and mark not in PII_ACTIONS:
        problems.append(f"{path or '/'}: x-footfall-pii must be one of {', '.join(PII_ACTIONS)}")
    for name, sub in schema.items():
        problems += _pii_mark_problems(sub, f"{path}/{name}")
    return problems
