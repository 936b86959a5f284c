"""The pure segment evaluator: window state in, (member, next change) out. No I/O.

A person's window state is one JSON object (stored as jsonb by
storage/segments.py) keyed by leaf signature (rules.py), so leaves that count
the same thing share state. Per leaf:

``count``/``sum``   ``{"b": {"<bucket start, epoch s>": number}}``
``distinct``        ``{"d": {"<bucket start, epoch s>": ["<value hash>", ...]}}``
``sequence``        ``{"t": [[ms, ...] per step]}``   (sorted, latest SEQUENCE_CAP)
``absence``         ``{"a": [ms of "after", ...], "m": ms of the latest "absent"}``

Semantics (docs/segments.md has the reference):

- An event counts in a window of W seconds with buckets of w seconds from its
  timestamp until ``bucket end + W``: for at least W and at most W + w (w ≤ W/60).
- A sequence holds when its steps happened at strictly increasing times, the last
  at most ``within`` after the first and less than ``lookback`` ago.
- An absence holds from ``after + for`` until ``after + for + lookback`` for an
  ``after`` event later than every ``absent`` event.

Everything is a union of what the events contributed (sums per bucket, sets,
time lists, a maximum), so the result does not depend on the order events
arrive in, and two persons' states merge exactly (identity merges).
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from footfall.pipeline.segments.rules import (
    EVENT_FIELD_NAMES,
    MISSING,
    PROPERTIES,
    Absence,
    Aggregate,
    AllOf,
    AnyOf,
    Condition,
    Filter,
    Leaf,
    Not,
    ProfileTest,
    Segment,
    Sequence_,
    compare,
    field_value,
)

State = dict[str, Any]
# The state's key of a digest of the person's profile attributes as last evaluated
# (storage/segments.py: profile tests are evaluated again when it changes); leaf
# signatures are hexadecimal, so it is never one.
PROFILE_PRINT = "profile"

SEQUENCE_CAP = 64  # times kept per sequence step / absence "after" (the latest)
DISTINCT_CAP = 200  # distinct values kept per bucket

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch (truncated: the same for every caller)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Verdict:
    member: bool
    # When the answer can next change without a new event (epoch ms), for the sweeper.
    next_ms: int | None


def _digest(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(canonical.encode(), digest_size=6).hexdigest()


@lru_cache(maxsize=4096)
def _scalar_digest(kind: str, value: Any) -> str:
    # The type in the key: 1, 1.0 and True are equal in Python, not in JSON.
    return _digest(value)


def _value_hash(value: Any) -> str:
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool:
        return _scalar_digest(kind.__name__, value)
    return _digest(value)


def _insert_time(times: list[int], t: int) -> None:
    bisect.insort(times, t)
    if len(times) > SEQUENCE_CAP:
        del times[: len(times) - SEQUENCE_CAP]


def _expiry_ms(leaf: Aggregate, start_s: int) -> int:
    return (start_s + leaf.width_s + leaf.window_s) * 1000


# How one event goes into one leaf's state (the event has matched the filter it is
# paired with): (state, event, t, now_ms) -> True if the state changed.
_Apply = Callable[[State, Mapping[str, Any], int, int], bool]


def _aggregate_apply(leaf: Aggregate) -> _Apply:
    sig, width, kind, measure = leaf.sig, leaf.width_s, leaf.kind, leaf.measure
    span_ms = (width + leaf.window_s) * 1000

    def apply(state: State, event: Mapping[str, Any], t: int, now_ms: int) -> bool:
        start = (t // 1000) // width * width
        if start * 1000 + span_ms <= now_ms:
            return False  # already outside the window
        if kind == "count":
            buckets = state.setdefault(sig, {}).setdefault("b", {})
            bucket = str(start)
            buckets[bucket] = buckets.get(bucket, 0) + 1
            return True
        assert measure is not None
        value = field_value(event, measure)
        if kind == "sum":
            if not isinstance(value, int | float) or isinstance(value, bool):
                return False
            buckets = state.setdefault(sig, {}).setdefault("b", {})
            bucket = str(start)
            buckets[bucket] = buckets.get(bucket, 0) + value
            return True
        if value is MISSING:
            return False
        values = state.setdefault(sig, {}).setdefault("d", {}).setdefault(str(start), [])
        digest = _value_hash(value)
        if digest in values or len(values) >= DISTINCT_CAP:
            return False
        bisect.insort(values, digest)
        return True

    return apply


def _sequence_apply(leaf: Sequence_, step: int) -> _Apply:
    sig, steps, span_ms = leaf.sig, len(leaf.steps), leaf.within_ms + leaf.lookback_ms

    def apply(state: State, event: Mapping[str, Any], t: int, now_ms: int) -> bool:
        if t + span_ms <= now_ms:
            return False
        entry = state.setdefault(sig, {"t": [[] for _ in range(steps)]})
        _insert_time(entry["t"][step], t)
        return True

    return apply


def _absent_apply(leaf: Absence) -> _Apply:
    sig = leaf.sig

    def apply(state: State, event: Mapping[str, Any], t: int, now_ms: int) -> bool:
        entry = state.setdefault(sig, {"a": [], "m": None})
        if entry["m"] is None or t > entry["m"]:
            entry["m"] = t
            return True
        return False

    return apply


def _after_apply(leaf: Absence) -> _Apply:
    sig, span_ms = leaf.sig, leaf.for_ms + leaf.lookback_ms

    def apply(state: State, event: Mapping[str, Any], t: int, now_ms: int) -> bool:
        if t + span_ms <= now_ms:
            return False
        entry = state.setdefault(sig, {"a": [], "m": None})
        _insert_time(entry["a"], t)
        return True

    return apply


def _parts(leaf: Leaf) -> list[tuple[Filter, _Apply]]:
    """A leaf as (filter, what a matching event does to the leaf's state) pairs."""
    if isinstance(leaf, Aggregate):
        return [(leaf.filter, _aggregate_apply(leaf))]
    if isinstance(leaf, Sequence_):
        return [(step, _sequence_apply(leaf, i)) for i, step in enumerate(leaf.steps)]
    return [(leaf.absent, _absent_apply(leaf)), (leaf.after, _after_apply(leaf))]


# Per message type and event name: the filters that can match (each distinct filter once,
# however many leaves share it), each with the (leaf sig, apply) of its leaves.
_Plan = list[tuple[Filter, list[tuple[str, _Apply]]]]


class LeafIndex:
    """The leaves' filters by the message type and event name they can match, so an
    event is tested once per distinct filter that could take it, and only goes into
    the leaves whose filter it matched (built once per site's definitions)."""

    MEMO_MAX = 1024

    def __init__(self, leaves: Iterable[Leaf]) -> None:
        self.leaves = tuple(leaves)
        # Equal filters (a condition repeated with another window or threshold) as one.
        groups: dict[str, tuple[Filter, list[tuple[str, _Apply]]]] = {}
        fields: set[str] = {"type", "event"}
        for leaf in self.leaves:
            if not isinstance(leaf, Sequence_ | Absence) and leaf.measure is not None:
                fields.add(_event_key(leaf.measure))
            for f, apply in _parts(leaf):
                fields.update(_event_key(p.field) for p in f.where)
                groups.setdefault(repr(f), (f, []))[1].append((leaf.sig, apply))
        self._groups = list(groups.values())
        # The event keys the filters read (event_of's ``keys``).
        self.fields = tuple(k for k in EVENT_KEYS if k in fields)
        self._memo: dict[tuple[Any, Any], _Plan] = {}

    def plan(self, event: Mapping[str, Any]) -> _Plan:
        kind, name = event.get("type"), event.get("event")
        key = (kind if isinstance(kind, str) else None, name if isinstance(name, str) else None)
        found = self._memo.get(key)
        if found is None:
            found = [
                (f, parts)
                for f, parts in self._groups
                if (f.types is None or key[0] in f.types)
                and (f.events is None or key[1] in f.events)
            ]
            if len(self._memo) < self.MEMO_MAX:
                self._memo[key] = found
        return found


def apply_event(
    state: State,
    leaves: LeafIndex | Iterable[Leaf],
    event: Mapping[str, Any],
    now_ms: int,
    changed_sigs: set[str] | None = None,
) -> bool:
    """Add one stored event (``event["t"]``: its timestamp in epoch ms) to the leaves it
    matches; True if the state changed. ``changed_sigs`` collects the signatures of the
    leaves whose state changed."""
    index = leaves if isinstance(leaves, LeafIndex) else LeafIndex(leaves)
    t = int(event["t"])
    changed = False
    for f, parts in index.plan(event):
        if not f.matches_where(event):
            continue
        for sig, apply in parts:
            if apply(state, event, t, now_ms):
                changed = True
                if changed_sigs is not None:
                    changed_sigs.add(sig)
    return changed


def _later_than(times: list[int], floor: int) -> list[int]:
    """The times (sorted) after ``floor``; the list itself if all are."""
    if not times or times[0] > floor:
        return times
    return times[bisect.bisect_right(times, floor) :]


def _pruned(leaf: Leaf, entry: Any, now_ms: int) -> Any:
    """A leaf's state without what can never count again (None: nothing left)."""
    if isinstance(leaf, Aggregate):
        key = "d" if leaf.kind == "distinct" else "b"
        buckets = entry.get(key, {})
        if not buckets:
            return None
        # A bucket counts until (start + width + window) s: kept if start > cutoff.
        cutoff = (now_ms - (leaf.width_s + leaf.window_s) * 1000) // 1000
        if min(map(int, buckets)) > cutoff:
            return {key: buckets}  # nothing expired: no copy
        kept = {start: v for start, v in buckets.items() if int(start) > cutoff}
        return {key: kept} if kept else None
    if isinstance(leaf, Sequence_):
        horizon = now_ms - leaf.within_ms - leaf.lookback_ms
        steps = [_later_than(times, horizon) for times in entry["t"]]
        return {"t": steps} if any(steps) else None
    latest = entry.get("m")
    horizon = now_ms - leaf.for_ms - leaf.lookback_ms
    after = _later_than(entry["a"], horizon if latest is None else max(horizon, latest))
    # The latest "absent" time matters only while an "after" could precede it.
    if after or (latest is not None and latest > horizon):
        return {"a": after, "m": latest}
    return None


def prune(
    state: State,
    leaves: LeafIndex | Iterable[Leaf],
    now_ms: int,
    only: set[str] | None = None,
) -> State:
    """The state without what can never count again, and without leaves no segment uses.

    ``only``: prune just these leaves (signatures) and keep every other entry as it is.
    The result may share entries with ``state``.
    """
    if only is not None:
        out = dict(state)
        for leaf in leaves.leaves if isinstance(leaves, LeafIndex) else leaves:
            if leaf.sig in only and leaf.sig in out:
                entry = _pruned(leaf, out[leaf.sig], now_ms)
                if entry is None:
                    del out[leaf.sig]
                else:
                    out[leaf.sig] = entry
        return out
    out = {}
    for leaf in leaves.leaves if isinstance(leaves, LeafIndex) else leaves:
        entry = state.get(leaf.sig)
        if entry is None or leaf.sig in out:
            continue
        entry = _pruned(leaf, entry, now_ms)
        if entry is not None:
            out[leaf.sig] = entry
    return out


def merge_states(into: State, other: State) -> State:
    """Two persons' states as one (an identity merge): the union of what their events added."""
    out: State = json.loads(json.dumps(into))
    out.pop(PROFILE_PRINT, None)  # of one of them: the merged person is evaluated anew
    for sig, entry in other.items():
        if sig == PROFILE_PRINT:
            continue
        mine = out.get(sig)
        if mine is None:
            out[sig] = json.loads(json.dumps(entry))
        elif "b" in entry:
            buckets = mine.setdefault("b", {})
            for start, value in entry["b"].items():
                buckets[start] = buckets.get(start, 0) + value
        elif "d" in entry:
            sets = mine.setdefault("d", {})
            for start, values in entry["d"].items():
                merged = sorted(set(sets.get(start, [])) | set(values))
                sets[start] = merged[:DISTINCT_CAP]
        elif "t" in entry:
            mine["t"] = [
                sorted(set(a) | set(b))[-SEQUENCE_CAP:]
                for a, b in zip(mine["t"], entry["t"], strict=True)
            ]
        else:
            latest = max(
                (m for m in (mine.get("m"), entry.get("m")) if m is not None), default=None
            )
            mine["a"] = sorted(set(mine["a"]) | set(entry["a"]))[-SEQUENCE_CAP:]
            mine["m"] = latest
    return out


def _aggregate(leaf: Aggregate, entry: Mapping[str, Any] | None, now_ms: int) -> Verdict:
    value: float = 0
    next_ms: int | None = None
    if entry is not None:
        if leaf.kind == "distinct":
            seen: set[str] = set()
            for start, values in entry.get("d", {}).items():
                expiry = _expiry_ms(leaf, int(start))
                if expiry > now_ms:
                    seen.update(values)
                    next_ms = expiry if next_ms is None else min(next_ms, expiry)
            value = len(seen)
        else:
            for start, amount in entry.get("b", {}).items():
                expiry = _expiry_ms(leaf, int(start))
                if expiry > now_ms:
                    value += amount
                    next_ms = expiry if next_ms is None else min(next_ms, expiry)
    member = all(compare(op, value, arg) for op, arg in leaf.comparisons)
    return Verdict(member, next_ms)


def _sequence(leaf: Sequence_, entry: Mapping[str, Any] | None, now_ms: int) -> Verdict:
    if entry is None:
        return Verdict(False, None)
    steps: list[list[int]] = entry["t"]
    best_end: int | None = None
    for first in steps[0]:
        cursor = first
        for times in steps[1:-1]:
            i = bisect.bisect_right(times, cursor)
            if i == len(times):
                break
            cursor = times[i]
        else:
            last_times = steps[-1]
            i = bisect.bisect_right(last_times, first + leaf.within_ms) - 1
            if i >= 0 and last_times[i] > cursor:
                end = last_times[i] + leaf.lookback_ms
                if end > now_ms and (best_end is None or end > best_end):
                    best_end = end
    return Verdict(best_end is not None, best_end)


def _absence(leaf: Absence, entry: Mapping[str, Any] | None, now_ms: int) -> Verdict:
    if entry is None:
        return Verdict(False, None)
    latest = entry.get("m")
    member = False
    next_ms: int | None = None
    for t in entry["a"]:
        if latest is not None and t <= latest:
            continue
        start, end = t + leaf.for_ms, t + leaf.for_ms + leaf.lookback_ms
        if start <= now_ms < end:
            member = True
        upcoming = start if start > now_ms else end if end > now_ms else None
        if upcoming is not None:
            next_ms = upcoming if next_ms is None else min(next_ms, upcoming)
    return Verdict(member, next_ms)


def leaf_verdict(leaf: Leaf, state: State, now_ms: int) -> Verdict:
    entry = state.get(leaf.sig)
    if isinstance(leaf, Aggregate):
        return _aggregate(leaf, entry, now_ms)
    if isinstance(leaf, Sequence_):
        return _sequence(leaf, entry, now_ms)
    return _absence(leaf, entry, now_ms)


class _Walk:
    """One evaluation: leaf verdicts computed where the tree names them."""

    def __init__(self, state: State, profile: Mapping[str, Any] | None, now_ms: int) -> None:
        self.state, self.profile, self.now_ms = state, profile or {}, now_ms
        self.next_ms: int | None = None

    def holds(self, node: Condition) -> bool:
        if isinstance(node, AllOf):
            # Every part is walked (no short cut) so each leaf's next change is known.
            return all([self.holds(p) for p in node.parts])
        if isinstance(node, AnyOf):
            return any([self.holds(p) for p in node.parts])
        if isinstance(node, Not):
            return not self.holds(node.part)
        if isinstance(node, ProfileTest):
            for predicate in node.predicates:
                value = self.profile.get(predicate.field)
                if not predicate.holds(value, value is not None):
                    return False
            return True
        verdict = leaf_verdict(node, self.state, self.now_ms)
        if verdict.next_ms is not None:
            self.next_ms = (
                verdict.next_ms if self.next_ms is None else min(self.next_ms, verdict.next_ms)
            )
        return verdict.member


def evaluate(
    segment: Segment, state: State, profile: Mapping[str, Any] | None, now: datetime | int
) -> Verdict:
    """Whether the person is a member at ``now``, and the next time that can change
    without a new event (None: never)."""
    walk = _Walk(state, profile, now if isinstance(now, int) else epoch_ms(now))
    member = walk.holds(segment.when)
    return Verdict(member, walk.next_ms)


# A condition compiled (:func:`compile_segment`): (state, profile, now_ms, earliest) ->
# holds; ``earliest[0]`` is lowered to each leaf's next change, as _Walk.next_ms.
_Compiled = Callable[[State, Mapping[str, Any], int, list[int | None]], bool]


def _compile(node: Condition) -> _Compiled:
    if isinstance(node, AllOf | AnyOf):
        parts = tuple(_compile(p) for p in node.parts)
        wanted = isinstance(node, AllOf)

        # Every part is run (no short cut), so each leaf's next change is known.
        def combined(
            state: State, profile: Mapping[str, Any], now_ms: int, earliest: list[int | None]
        ) -> bool:
            result = wanted
            for part in parts:
                if part(state, profile, now_ms, earliest) is not wanted:
                    result = not wanted
            return result

        return combined
    if isinstance(node, Not):
        inner = _compile(node.part)
        return lambda state, profile, now_ms, earliest: not inner(state, profile, now_ms, earliest)
    if isinstance(node, ProfileTest):
        predicates = node.predicates

        def tested(
            state: State, profile: Mapping[str, Any], now_ms: int, earliest: list[int | None]
        ) -> bool:
            for predicate in predicates:
                value = profile.get(predicate.field)
                if not predicate.holds(value, value is not None):
                    return False
            return True

        return tested
    leaf = node
    sig = leaf.sig
    verdict_of: Callable[[Any, Any, int], Verdict] = (
        _aggregate if isinstance(leaf, Aggregate) else
        _sequence if isinstance(leaf, Sequence_) else _absence
    )  # fmt: skip

    def windowed(
        state: State, profile: Mapping[str, Any], now_ms: int, earliest: list[int | None]
    ) -> bool:
        verdict = verdict_of(leaf, state.get(sig), now_ms)
        if verdict.next_ms is not None and (earliest[0] is None or verdict.next_ms < earliest[0]):
            earliest[0] = verdict.next_ms
        return verdict.member

    return windowed


def compile_segment(segment: Segment) -> Callable[[State, Mapping[str, Any] | None, int], Verdict]:
    """:func:`evaluate` of one segment, with its condition tree compiled once (the same
    answers; tests/segments/test_partial.py compares them)."""
    condition = _compile(segment.when)

    def run(state: State, profile: Mapping[str, Any] | None, now_ms: int) -> Verdict:
        earliest: list[int | None] = [None]
        member = condition(state, profile or {}, now_ms, earliest)
        return Verdict(member, earliest[0])

    return run


def leaves_of(segments: Iterable[Segment]) -> list[Leaf]:
    """Every distinct leaf of the segments (shared leaves once)."""
    seen: dict[str, Leaf] = {}
    for segment in segments:
        for leaf in segment.leaves:
            seen.setdefault(leaf.sig, leaf)
    return list(seen.values())


# The event columns a filter may test (rules.py), plus the properties.
EVENT_KEYS = (*EVENT_FIELD_NAMES, "properties")


def _event_key(name: str) -> str:
    """The event_of key a filter field reads."""
    return "properties" if name.startswith(PROPERTIES) else name


def event_of(source: Any, keys: Iterable[str] = EVENT_KEYS) -> dict[str, Any]:
    """What a filter sees of an event: an EventRow or a mapping of ``events`` columns.

    ``keys``: the event keys to take (default all; LeafIndex.fields: what its filters read).
    """
    if isinstance(source, Mapping):
        event = {k: source.get(k) for k in keys}
        timestamp = source["timestamp"]
    else:
        event = {k: getattr(source, k) for k in keys}
        timestamp = source.timestamp
    event["t"] = epoch_ms(timestamp)
    return event
