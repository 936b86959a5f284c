"""The schema registry: built-in and custom JSON Schemas, looked up by event name.

Layout of a schema directory (built-in ``events/`` and custom ones alike)::

    <slug>/<MODEL>-<REVISION>-<ADDITION>.json     e.g. element_clicked/1-0-0.json

``slug`` is the event name lower-cased with every run of other characters
turned into ``_`` ("Element Clicked" -> ``element_clicked``). A message may pin a
version with ``context.schema = "1-0-0"``; otherwise the highest SchemaVer wins.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
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
MIN_RELOAD_S = 0.1  # FOOTFALL_SCHEMA_RELOAD_S=0 (tests) polls this often

log = logging.getLogger("footfall.schemas")


@lru_cache(maxsize=4096)
def slugify(event_name: str) -> str:
    """The directory name of an event's schemas."""
    return _SLUG.sub("_", event_name.lower()).strip("_")


@lru_cache(maxsize=4096)
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
    """One schema directory as last read: each file's stamp and what it held.

    ``events`` is rebuilt from ``files`` and swapped in whole, so a request
    reading it while the loader thread refreshes sees the old or the new set.
    """

    directory: Path
    # path -> ((mtime_ns, size), the schema; None: refused with no good version before)
    files: dict[Path, tuple[tuple[int, int], EventSchema | None]] = field(default_factory=dict)
    events: dict[str, dict[str, EventSchema]] = field(default_factory=dict)


def load_event_file(path: Path) -> EventSchema:
    """One ``<slug>/<ver>.json``; raises on a file that is not a valid schema."""
    schema = json.loads(path.read_text())
    Draft202012Validator.check_schema(schema)
    return EventSchema(
        slug=path.parent.name,
        version=path.name.removesuffix(".json"),
        schema=schema,
        validator=Validator(schema),
        source=path,
        pii=tuple(pii_paths(schema)),
    )


def _schema_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*/*.json") if SCHEMAVER.match(p.name))


def load_event_dir(directory: Path) -> dict[str, dict[str, EventSchema]]:
    """Every ``<slug>/<ver>.json`` under ``directory``; raises on a broken file."""
    found: dict[str, dict[str, EventSchema]] = {}
    for path in _schema_files(directory):
        schema = load_event_file(path)
        found.setdefault(schema.slug, {})[schema.version] = schema
    return found


def refresh_layer(layer: _Layer) -> None:
    """Re-read the files of ``layer`` that changed; blocking file I/O (run it in a thread).

    A file that does not load is refused and logged once per change, and the
    last good version of it (if any) stays in use: a broken edit never takes a
    working schema away, and never makes a request fail.
    """
    try:
        paths = _schema_files(layer.directory)
    except OSError as exc:
        log.warning(
            "schema directory unreadable, keeping the schemas loaded before",
            extra={"directory": str(layer.directory), "error": str(exc)},
        )
        return
    files: dict[Path, tuple[tuple[int, int], EventSchema | None]] = {}
    changed = set(paths) != set(layer.files)
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            continue  # removed while listing
        stamp = (stat.st_mtime_ns, stat.st_size)
        before = layer.files.get(path)
        if before is not None and before[0] == stamp:
            files[path] = before
            continue
        changed = True
        try:
            files[path] = (stamp, load_event_file(path))
        except Exception as exc:  # any broken file is refused, whatever the parser raised
            kept = before[1] if before is not None else None
            log.warning(
                "schema file refused: %s",
                exc,
                extra={
                    "path": str(path),
                    "error": f"{type(exc).__name__}: {exc}",
                    "kept_version": kept is not None,
                },
            )
            files[path] = (stamp, kept)
    if not changed:
        return
    events: dict[str, dict[str, EventSchema]] = {}
    for _, schema in files.values():
        if schema is not None:
            events.setdefault(schema.slug, {})[schema.version] = schema
    layer.files, layer.events = files, events


class SchemaRegistry:
    """Message-type validators and event schemas in layers (built-in, global, per site).

    Look-ups never touch the disk: the custom layers are read by :meth:`refresh`
    (the collector runs :meth:`watch` in the background) and a site's directory
    is read once by :meth:`prepare` before the first request of that site.
    """

    def __init__(self, custom_dir: Path | None = None, reload_s: float = 5.0) -> None:
        self._reload_s = reload_s
        self._lock = threading.Lock()  # one loader at a time; readers never wait
        self._message_validators = self._load_message_validators()
        self._builtin = _Layer(BUILTIN_DIR / "events")
        self._builtin.events = load_event_dir(self._builtin.directory)
        self._global = _Layer(custom_dir) if custom_dir else None
        self._site_layers: dict[Path, _Layer] = {}
        if self._global is not None:
            refresh_layer(self._global)

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

    def refresh(self) -> None:
        """Pick up added, changed and removed custom schema files (blocking)."""
        with self._lock:
            layers = [self._global] if self._global is not None else []
            for layer in [*layers, *self._site_layers.values()]:
                refresh_layer(layer)

    def has_site(self, site_dir: str | None) -> bool:
        return not site_dir or Path(site_dir) in self._site_layers

    def load_site(self, site_dir: str) -> None:
        """Read a site's schema directory the first time it is needed (blocking)."""
        path = Path(site_dir)
        with self._lock:
            if path in self._site_layers:
                return
            layer = _Layer(path)
            refresh_layer(layer)
            self._site_layers[path] = layer

    async def prepare(self, site_dir: str | None) -> None:
        """Make sure a site's schemas are loaded, reading them off the event loop."""
        if not self.has_site(site_dir):
            assert site_dir is not None
            await asyncio.to_thread(self.load_site, site_dir)

    async def watch(self) -> None:
        """Refresh every ``reload_s`` in a thread, for ever; a failure is logged, not fatal."""
        while True:
            await asyncio.sleep(max(self._reload_s, MIN_RELOAD_S))
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:
                log.exception("schema reload failed; the schemas loaded before stay in use")

    def event_schema(
        self, event_name: str, version: str | None = None, site_dir: str | None = None
    ) -> EventSchema | None:
        """The schema of ``event_name`` (pinned ``version`` or the latest), or None."""
        slug = slugify(event_name)
        versions: dict[str, EventSchema] = {}
        site_layer = self._site_layers.get(Path(site_dir)) if site_dir else None
        for layer in (self._builtin, self._global, site_layer):
            if layer is not None:
                versions.update(layer.events.get(slug, {}))
        if not versions:
            return None
        if version is not None:
            return versions.get(version)
        if len(versions) == 1:
            return next(iter(versions.values()))
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
