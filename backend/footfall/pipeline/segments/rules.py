"""Segment rules: the JSON document (rule.schema.json), its checks, and its compiled form.

:func:`parse_rule` takes a rule document and returns a :class:`Segment` or raises
:class:`RuleError` carrying every problem found, each with the JSON pointer of the
offending value. Schema errors come first (the JSON Schema is the contract);
a document that passes the schema is then checked for what a schema cannot say:
unknown fields, windows out of range, too many leaves.

Compiled leaves carry a ``sig``: a hash of what determines their window state
(the filter, the window, the kind; never the threshold), so two segments, or
two versions of one segment, that count the same thing share one state.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, TypeVar

import jsonschema
from jsonschema.exceptions import ValidationError

MAX_WINDOW_S = 90 * 86400
MAX_LEAVES = 20
MAX_DEPTH = 8
MAX_RULE_BYTES = 16 * 1024
MAX_DOCUMENT_DEPTH = 40  # JSON levels; 8 condition levels take about 30

# Event fields a filter may name besides ``properties.<path>`` (events columns).
EVENT_FIELD_NAMES = (
    "type",
    "event",
    "page_path",
    "page_url",
    "page_title",
    "page_referrer",
    "page_search",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "device_type",
    "browser_name",
    "os_name",
    "geo_country",
    "geo_region",
    "geo_city",
    "locale",
    "timezone",
    "library_name",
)
EVENT_FIELDS = frozenset(EVENT_FIELD_NAMES)
PROPERTIES = "properties."

# Profile attributes a rule may test, and whether they are numbers, text or booleans
# (the names of pipeline/profiles.py's Profile fields).
PROFILE_ATTRIBUTES: dict[str, str] = {
    "device_type": "text",
    "country": "text",
    "utm_source": "text",
    "utm_medium": "text",
    "utm_campaign": "text",
    "last_page_path": "text",
    "sessions": "number",
    "engaged_ms": "number",
    "events": "number",
    "pages": "number",
    "identified": "boolean",
}

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Bucket widths of count/sum/distinct windows: the widest with at least 60 buckets
# per window, so a window is never more than 1/60 longer than asked (docs/segments.md).
BUCKET_WIDTHS_S = (1, 5, 10, 30, 60, 300, 600, 1800, 3600, 21600, 86400)
BUCKETS_PER_WINDOW = 60


class RuleError(ValueError):
    """A rule document that cannot be used; ``errors`` are ``{"pointer", "message"}``."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['pointer'] or '/'}: {e['message']}" for e in errors))
        self.errors = errors


@cache
def rule_schema() -> dict[str, Any]:
    """The rule document's JSON Schema (immutable; read once)."""
    text = resources.files(__package__).joinpath("rule.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator(ref: str) -> jsonschema.protocols.Validator:
    schema = rule_schema()
    target: dict[str, Any] = schema if ref == "" else {"$ref": ref, "$defs": schema["$defs"]}
    return jsonschema.Draft202012Validator(target)


def pointer(path: Sequence[Any]) -> str:
    """RFC 6901 JSON pointer of a path."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


# --- predicates and filters --------------------------------------------------------------


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(a: Any, b: Any) -> bool:
    # JSON equality: 1 == 1.0, but true is not 1.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


@cache
def glob_regex(pattern: str) -> re.Pattern[str]:
    """``*`` within one path segment, ``**`` across segments, ``?`` one character."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Predicate:
    """Every operator must hold; a missing value only satisfies ``exists: false``."""

    field: str
    ops: tuple[tuple[str, Any], ...]

    def holds(self, value: Any, present: bool) -> bool:
        for op, arg in self.ops:
            if op == "exists":
                if present != arg:
                    return False
                continue
            if not present:
                return False
            if op == "eq":
                ok = _equal(value, arg)
            elif op == "ne":
                ok = not _equal(value, arg)
            elif op == "in":
                ok = any(_equal(value, a) for a in arg)
            elif op in ("gt", "gte", "lt", "lte"):
                ok = _number(value) and compare(op, value, arg)
            elif op == "prefix":
                ok = isinstance(value, str) and value.startswith(arg)
            elif op == "contains":
                ok = isinstance(value, str) and arg in value
            elif op == "glob":
                ok = isinstance(value, str) and glob_regex(arg).match(value) is not None
            else:  # pragma: no cover - the schema admits no other operator
                raise AssertionError(op)
            if not ok:
                return False
        return True


def compare(op: str, value: float, arg: float) -> bool:
    if op == "gt":
        return value > arg
    if op == "gte":
        return value >= arg
    if op == "lt":
        return value < arg
    if op == "lte":
        return value <= arg
    return value == arg  # "eq" on aggregates


MISSING = object()


@cache
def _property_path(name: str) -> tuple[str, ...] | None:
    return tuple(name[len(PROPERTIES) :].split(".")) if name.startswith(PROPERTIES) else None


def field_value(event: Mapping[str, Any], name: str) -> Any:
    """An event's value for a filter field (``MISSING`` if absent or null)."""
    path = _property_path(name)
    if path is not None:
        value: Any = event.get("properties")
        for part in path:
            if not isinstance(value, dict) or part not in value:
                return MISSING
            value = value[part]
    else:
        value = event.get(name)
    return MISSING if value is None else value


EventTest = Callable[[Mapping[str, Any]], bool]


def _value_test(op: str, arg: Any) -> Callable[[Any], bool]:
    """Predicate.holds' test of one operator, for a present value, as a function."""
    if op == "eq":
        return lambda v: _equal(v, arg)
    if op == "ne":
        return lambda v: not _equal(v, arg)
    if op == "in":
        return lambda v: any(_equal(v, a) for a in arg)
    if op in ("gt", "gte", "lt", "lte"):
        return lambda v: _number(v) and compare(op, v, arg)
    if op == "prefix":
        return lambda v: isinstance(v, str) and v.startswith(arg)
    if op == "contains":
        return lambda v: isinstance(v, str) and arg in v
    if op == "glob":
        match = glob_regex(arg).match
        return lambda v: isinstance(v, str) and match(v) is not None
    raise AssertionError(op)  # pragma: no cover - the schema admits no other operator


def event_test(predicate: Predicate) -> EventTest:
    """``predicate.holds`` of an event's field, compiled once (the same answers)."""
    name = predicate.field
    exists = [bool(arg) for op, arg in predicate.ops if op == "exists"]
    tests = [_value_test(op, arg) for op, arg in predicate.ops if op != "exists"]
    if _property_path(name) is None and not exists and len(tests) == 1:
        (only,) = tests

        def simple(event: Mapping[str, Any]) -> bool:
            value = event.get(name)
            return value is not None and only(value)

        return simple

    def test(event: Mapping[str, Any]) -> bool:
        value = field_value(event, name)
        present = value is not MISSING
        if any(present != wanted for wanted in exists):
            return False
        if not tests:
            return True
        return present and all(t(value) for t in tests)

    return test


@dataclass(frozen=True, slots=True)
class Filter:
    types: frozenset[str] | None
    events: frozenset[str] | None
    where: tuple[Predicate, ...]
    # The where predicates compiled (event_test), in order.
    tests: tuple[EventTest, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tests", tuple(event_test(p) for p in self.where))

    def matches(self, event: Mapping[str, Any]) -> bool:
        if self.types is not None and event.get("type") not in self.types:
            return False
        if self.events is not None and event.get("event") not in self.events:
            return False
        return self.matches_where(event)

    def matches_where(self, event: Mapping[str, Any]) -> bool:
        """The ``where`` predicates alone (the type and event name known to match)."""
        for test in self.tests:  # noqa: SIM110 - a loop, not a generator: per event and leaf
            if not test(event):
                return False
        return True


# --- conditions --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Aggregate:
    """count / sum / distinct of matching events in a rolling window, compared."""

    sig: str
    kind: str  # "count" | "sum" | "distinct"
    filter: Filter
    measure: str | None  # the summed / distinct field
    window_s: int
    width_s: int  # bucket width
    comparisons: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class Sequence_:
    """The steps in order, first to last within ``within_ms``; last less than lookback ago."""

    sig: str
    steps: tuple[Filter, ...]
    within_ms: int
    lookback_ms: int


@dataclass(frozen=True, slots=True)
class Absence:
    """``after`` and then no ``absent`` for ``for_ms``; a member for ``lookback_ms`` then."""

    sig: str
    after: Filter
    absent: Filter
    for_ms: int
    lookback_ms: int


@dataclass(frozen=True, slots=True)
class ProfileTest:
    predicates: tuple[Predicate, ...]


@dataclass(frozen=True, slots=True)
class AllOf:
    parts: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    parts: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Not:
    part: Condition


Leaf = Aggregate | Sequence_ | Absence
_L = TypeVar("_L", Aggregate, Sequence_, Absence)
Condition = Aggregate | Sequence_ | Absence | ProfileTest | AllOf | AnyOf | Not


@dataclass(frozen=True, slots=True)
class Segment:
    """A compiled segment version."""

    key: str
    version: int
    expose: str  # "browser" | "server"
    webhooks: tuple[str, ...]
    when: Condition
    leaves: tuple[Leaf, ...]
    uses_profile: bool
    document: dict[str, Any] = field(compare=False, hash=False, repr=False)
    # The profile attributes the rule tests: what its webhooks report of the person.
    profile_fields: tuple[str, ...] = ()

    @property
    def browser(self) -> bool:
        return self.expose == "browser"


def duration_s(value: Any) -> int:
    """Seconds of a schema-valid duration (``90``, ``"10m"``)."""
    if isinstance(value, int):
        return value
    return int(value[:-1]) * _UNITS[value[-1]]


def bucket_width_s(window_s: int) -> int:
    """The widest bucket giving the window at least 60 buckets (1 s for short windows)."""
    width = 1
    for candidate in BUCKET_WIDTHS_S:
        if window_s >= candidate * BUCKETS_PER_WINDOW:
            width = candidate
    return width


def _sig(kind: str, *parts: Any) -> str:
    canonical = json.dumps([kind, *parts], sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(canonical.encode(), digest_size=8).hexdigest()


class _Compiler:
    def __init__(self) -> None:
        self.errors: list[dict[str, str]] = []
        self.leaves: dict[str, Leaf] = {}
        self.uses_profile = False
        self.profile_fields: dict[str, None] = {}

    def error(self, path: Sequence[Any], message: str) -> None:
        self.errors.append({"pointer": pointer(path), "message": message})

    def duration(self, value: Any, path: list[Any], *, low: int = 1) -> int:
        seconds = duration_s(value)
        if not low <= seconds <= MAX_WINDOW_S:
            self.error(path, f"must be between {low} s and 90 days, got {seconds} s")
        return seconds

    def predicates(
        self, where: Mapping[str, Any], path: list[Any], kinds: Mapping[str, str] | None
    ) -> tuple[Predicate, ...]:
        out = []
        for name, spec in where.items():
            here = [*path, name]
            if kinds is None:
                if not _known_event_field(name):
                    self.error(
                        here,
                        f"unknown event field {name!r}: use one of {sorted(EVENT_FIELDS)}"
                        " or properties.<name>",
                    )
                    continue
            elif name not in kinds:
                self.error(here, f"unknown profile attribute {name!r}: use one of {sorted(kinds)}")
                continue
            else:
                self._check_ops(spec, here, kinds[name])
                self.profile_fields[name] = None
            out.append(Predicate(name, tuple(sorted(spec.items(), key=lambda kv: kv[0]))))
        return tuple(out)

    def _check_ops(self, spec: Mapping[str, Any], path: list[Any], kind: str) -> None:
        for op in spec:
            if op in ("gt", "gte", "lt", "lte") and kind != "number":
                self.error([*path, op], f"{op} compares numbers; this attribute is {kind}")
            if op in ("prefix", "contains", "glob") and kind != "text":
                self.error([*path, op], f"{op} matches text; this attribute is {kind}")

    def filter(self, spec: Mapping[str, Any], path: list[Any]) -> Filter:
        def names(value: Any) -> frozenset[str] | None:
            if value is None:
                return None
            return frozenset([value] if isinstance(value, str) else value)

        return Filter(
            types=names(spec.get("type")),
            events=names(spec.get("event")),
            where=self.predicates(spec.get("where", {}), [*path, "where"], None),
        )

    def leaf(self, leaf: _L) -> _L:
        # One state per signature; each node keeps its own comparisons.
        self.leaves.setdefault(leaf.sig, leaf)
        return leaf

    def conditions(
        self, nodes: Sequence[Mapping[str, Any]], path: list[Any], depth: int
    ) -> tuple[Condition, ...]:
        return tuple(self.condition(c, [*path, i], depth + 1) for i, c in enumerate(nodes))

    def condition(self, node: Mapping[str, Any], path: list[Any], depth: int) -> Condition:
        if depth > MAX_DEPTH:
            self.error(path, f"nested deeper than {MAX_DEPTH} levels")
            return AllOf(())
        if "all" in node:
            return AllOf(
                tuple(
                    self.condition(c, [*path, "all", i], depth + 1)
                    for i, c in enumerate(node["all"])
                )
            )
        if "any" in node:
            return AnyOf(
                tuple(
                    self.condition(c, [*path, "any", i], depth + 1)
                    for i, c in enumerate(node["any"])
                )
            )
        if "not" in node:
            return Not(self.condition(node["not"], [*path, "not"], depth + 1))
        if "profile" in node:
            self.uses_profile = True
            return ProfileTest(
                self.predicates(node["profile"], [*path, "profile"], PROFILE_ATTRIBUTES)
            )
        if "sequence" in node:
            within = self.duration(node["within"], [*path, "within"])
            lookback = self.duration(node.get("lookback", node["within"]), [*path, "lookback"])
            steps = tuple(
                self.filter(s, [*path, "sequence", i]) for i, s in enumerate(node["sequence"])
            )
            sig = _sig("sequence", node["sequence"], within, lookback)
            return self.leaf(Sequence_(sig, steps, within * 1000, lookback * 1000))
        if "after" in node:
            wait = self.duration(node["for"], [*path, "for"])
            lookback = self.duration(node.get("lookback", node["for"]), [*path, "lookback"])
            sig = _sig("absence", node["after"], node["absent"], wait, lookback)
            return self.leaf(
                Absence(
                    sig,
                    self.filter(node["after"], [*path, "after"]),
                    self.filter(node["absent"], [*path, "absent"]),
                    wait * 1000,
                    lookback * 1000,
                )
            )
        for kind in ("count", "sum", "distinct"):
            if kind in node:
                return self.aggregate(kind, node, path)
        raise AssertionError("the schema admits no other condition")  # pragma: no cover

    def aggregate(self, kind: str, node: Mapping[str, Any], path: list[Any]) -> Aggregate:
        spec = node[kind]
        window = self.duration(node["within"], [*path, "within"])
        measure = spec.get("field")
        if measure is not None and not _known_event_field(measure):
            self.error([*path, kind, "field"], f"unknown event field {measure!r}")
        comparisons = tuple(
            (op, float(node[op])) for op in ("gt", "gte", "lt", "lte", "eq") if op in node
        )
        if not comparisons:
            self.error(path, f"{kind} needs a comparison: gt, gte, lt, lte or eq")
        width = bucket_width_s(window)
        sig = _sig(kind, spec, window)
        return self.leaf(
            Aggregate(
                sig, kind, self.filter(spec, [*path, kind]), measure, window, width, comparisons
            )
        )


def _known_event_field(name: str) -> bool:
    if name.startswith(PROPERTIES):
        parts = name[len(PROPERTIES) :].split(".")
        return 0 < len(parts) <= 5 and all(parts)
    return name in EVENT_FIELDS


def _schema_errors(node: Any, path: list[Any], ref: str) -> Iterator[dict[str, str]]:
    """Schema errors with the pointer of the innermost offending value.

    A condition is a ``oneOf``; its own error only says "matched none". The
    condition's kind is plain from its keys, so the node is validated again
    against that kind alone, which names the real problem.
    """
    for error in sorted(_validator(ref).iter_errors(node), key=lambda e: list(e.path)):
        here = [*path, *error.absolute_path]
        if (
            error.validator == "oneOf"
            and error.schema.get("oneOf") == (rule_schema()["$defs"]["condition"]["oneOf"])
        ):
            kind = _condition_kind(error.instance)
            if kind is None:
                yield {
                    "pointer": pointer(here),
                    "message": "a condition is an object with one of: all, any, not, count, sum,"
                    " distinct, sequence, after/absent/for, profile",
                }
            else:
                yield from _schema_errors(error.instance, here, f"#/$defs/{kind}")
        else:
            yield {"pointer": pointer(here), "message": _message(error)}


def _message(error: ValidationError) -> str:
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = schema.get("properties", {})
        unknown = sorted(k for k in error.instance if k not in known)
        return f"unknown propert{'y' if len(unknown) == 1 else 'ies'}: {', '.join(unknown)}"
    if error.validator == "minProperties" and {"gt", "gte", "within"} <= set(
        schema.get("properties", {})
    ):
        return "needs a comparison: gt, gte, lt, lte or eq"
    if error.validator == "oneOf" and schema == rule_schema()["$defs"]["duration"]:
        return "a duration is whole seconds (an integer >= 1) or a string like 30s, 10m, 2h, 7d"
    return str(error.message)


def _condition_kind(node: Any) -> str | None:
    if not isinstance(node, dict):
        return None
    for key, kind in (
        ("all", "all"),
        ("any", "any"),
        ("not", "not"),
        ("count", "count"),
        ("sum", "sum"),
        ("distinct", "distinct"),
        ("sequence", "sequence"),
        ("after", "absence"),
        ("absent", "absence"),
        ("profile", "profile"),
    ):
        if key in node:
            return kind
    return None


def _depth(document: Any) -> int:
    """Nesting depth, without recursion (a hostile document may be 1000 levels deep)."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > MAX_DOCUMENT_DEPTH:
            break
        if isinstance(node, dict):
            stack.extend((v, level + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, level + 1) for v in node)
    return deepest


def check_rule(document: Any) -> None:
    """Raise :class:`RuleError` if the document is not a usable rule."""
    parse_rule(document, 1)


def parse_rule(document: Any, version: int) -> Segment:
    """Validate and compile a rule document (see the module docstring)."""
    if _depth(document) > MAX_DOCUMENT_DEPTH:
        raise RuleError([{"pointer": "", "message": f"nested deeper than {MAX_DOCUMENT_DEPTH}"}])
    size = len(json.dumps(document, default=str))
    if size > MAX_RULE_BYTES:
        raise RuleError([{"pointer": "", "message": f"rule over {MAX_RULE_BYTES} bytes"}])
    errors = _unique(_schema_errors(document, [], ""))
    if errors:
        raise RuleError(errors)
    compiler = _Compiler()
    when = compiler.condition(document["when"], ["when"], 1)
    if len(compiler.leaves) > MAX_LEAVES:
        compiler.error(["when"], f"more than {MAX_LEAVES} windowed conditions")
    if compiler.errors:
        raise RuleError(compiler.errors)
    return Segment(
        key=document["key"],
        version=version,
        expose=document.get("expose", "server"),
        webhooks=tuple(document.get("webhooks", ())),
        when=when,
        leaves=tuple(compiler.leaves.values()),
        uses_profile=compiler.uses_profile,
        document=document,
        profile_fields=tuple(compiler.profile_fields),
    )


def _unique(errors: Iterator[dict[str, str]]) -> list[dict[str, str]]:
    seen: set[tuple[str, str]] = set()
    out = []
    for e in errors:
        if (e["pointer"], e["message"]) not in seen:
            seen.add((e["pointer"], e["message"]))
            out.append(e)
    return out


def max_horizon_ms(segment: Segment) -> int:
    """How far back in time the segment's state can reach (for dry runs and backfills)."""
    horizon = 0
    for leaf in segment.leaves:
        if isinstance(leaf, Aggregate):
            horizon = max(horizon, (leaf.window_s + leaf.width_s) * 1000)
        elif isinstance(leaf, Sequence_):
            horizon = max(horizon, leaf.within_ms + leaf.lookback_ms)
        else:
            horizon = max(horizon, leaf.for_ms + leaf.lookback_ms)
    return horizon
