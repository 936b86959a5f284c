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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from footfall.pipeline.segments.rules import (
    EVENT_FIELD_NAMES,
    MISSING,
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


def _value_hash(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(canonical.encode(), digest_size=6).hexdigest()


def _insert_time(times: list[int], t: int) -> None:
    bisect.insort(times, t)
    if len(times) > SEQUENCE_CAP:
        del times[: len(times) - SEQUENCE_CAP]


def _expiry_ms(leaf: Aggregate, start_s: int) -> int:
    return (start_s + leaf.width_s + leaf.window_s) * 1000


class LeafIndex:
    """Leaves by the message type and event name their filters can match, so an event
    is only tested against the leaves that could take it (built once per site's
    definitions)."""

    def __init__(self, leaves: Iterable[Leaf]) -> None:
        self.leaves = tuple(leaves)
        self._pairs: dict[tuple[str, str], list[Leaf]] = {}
        self._types: dict[str, list[Leaf]] = {}
        self._events: dict[str, list[Leaf]] = {}
        self._any: list[Leaf] = []
        self._memo: dict[tuple[str | None, str | None], list[Leaf]] = {}
        for leaf in self.leaves:
            if isinstance(leaf, Aggregate):
                filters: tuple[Filter, ...] = (leaf.filter,)
            elif isinstance(leaf, Sequence_):
                filters = leaf.steps
            else:
                filters = (leaf.after, leaf.absent)
            for f in filters:
                if f.types is not None and f.events is not None:
                    targets = [
                        self._pairs.setdefault((t, e), []) for t in f.types for e in f.events
                    ]
                elif f.types is not None:
                    targets = [self._types.setdefault(t, []) for t in f.types]
                elif f.events is not None:
                    targets = [self._events.setdefault(e, []) for e in f.events]
                else:
                    targets = [self._any]
                for target in targets:
                    if not any(other is leaf for other in target):
                        target.append(leaf)

    MEMO_MAX = 1024

    def candidates(self, event: Mapping[str, Any]) -> list[Leaf]:
        kind, name = event.get("type"), event.get("event")
        key = (kind if isinstance(kind, str) else None, name if isinstance(name, str) else None)
        found = self._memo.get(key)
        if found is None:
            seen: set[int] = set()
            found = []
            kind_s, name_s = key
            groups = (
                self._pairs.get((kind_s, name_s), ())
                if kind_s is not None and name_s is not None
                else (),
                self._types.get(kind_s, ()) if kind_s is not None else (),
                self._events.get(name_s, ()) if name_s is not None else (),
                self._any,
            )
            for group in groups:
                for leaf in group:
                    if id(leaf) not in seen:
                        seen.add(id(leaf))
                        found.append(leaf)
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
    for leaf in index.candidates(event):
        if _apply_leaf(state, leaf, event, t, now_ms):
            changed = True
            if changed_sigs is not None:
                changed_sigs.add(leaf.sig)
    return changed


def _apply_leaf(state: State, leaf: Leaf, event: Mapping[str, Any], t: int, now_ms: int) -> bool:
    """One event into one leaf's state; True if the state changed."""
    if isinstance(leaf, Aggregate):
        if not leaf.filter.matches(event):
            return False
        start = (t // 1000) // leaf.width_s * leaf.width_s
        if _expiry_ms(leaf, start) <= now_ms:
            return False  # already outside the window
        if leaf.kind == "count":
            buckets = state.setdefault(leaf.sig, {}).setdefault("b", {})
            bucket = str(start)
            buckets[bucket] = buckets.get(bucket, 0) + 1
        elif leaf.kind == "sum":
            assert leaf.measure is not None
            value = field_value(event, leaf.measure)
            if not isinstance(value, int | float) or isinstance(value, bool):
                return False
            buckets = state.setdefault(leaf.sig, {}).setdefault("b", {})
            bucket = str(start)
            buckets[bucket] = buckets.get(bucket, 0) + value
        else:
            assert leaf.measure is not None
            value = field_value(event, leaf.measure)
            if value is MISSING:
                return False
            sets = state.setdefault(leaf.sig, {}).setdefault("d", {})
            values = sets.setdefault(str(start), [])
            digest = _value_hash(value)
            if digest in values or len(values) >= DISTINCT_CAP:
                return False
            bisect.insort(values, digest)
        return True
    if isinstance(leaf, Sequence_):
        if t + leaf.within_ms + leaf.lookback_ms <= now_ms:
            return False
        changed = False
        for i, step in enumerate(leaf.steps):
            if step.matches(event):
                entry = state.setdefault(leaf.sig, {"t": [[] for _ in leaf.steps]})
                _insert_time(entry["t"][i], t)
                changed = True
        return changed
    changed = False
    if leaf.absent.matches(event):
        entry = state.setdefault(leaf.sig, {"a": [], "m": None})
        if entry["m"] is None or t > entry["m"]:
            entry["m"] = t
            changed = True
    if leaf.after.matches(event) and t + leaf.for_ms + leaf.lookback_ms > now_ms:
        entry = state.setdefault(leaf.sig, {"a": [], "m": None})
        _insert_time(entry["a"], t)
        changed = True
    return changed


def prune(state: State, leaves: LeafIndex | Iterable[Leaf], now_ms: int) -> State:
    """The state without what can never count again, and without leaves no segment uses."""
    out: State = {}
    for leaf in leaves.leaves if isinstance(leaves, LeafIndex) else leaves:
        entry = state.get(leaf.sig)
        if entry is None or leaf.sig in out:
            continue
        if isinstance(leaf, Aggregate):
            key = "d" if leaf.kind == "distinct" else "b"
            kept = {
                s: v for s, v in entry.get(key, {}).items() if _expiry_ms(leaf, int(s)) > now_ms
            }
            if kept:
                out[leaf.sig] = {key: kept}
        elif isinstance(leaf, Sequence_):
            horizon = now_ms - leaf.within_ms - leaf.lookback_ms
            steps = [[t for t in times if t > horizon] for times in entry["t"]]
            if any(steps):
                out[leaf.sig] = {"t": steps}
        else:
            latest = entry.get("m")
            horizon = now_ms - leaf.for_ms - leaf.lookback_ms
            after = [t for t in entry["a"] if t > horizon and (latest is None or t > latest)]
            # The latest "absent" time matters only while an "after" could precede it.
            if after or (latest is not None and latest > horizon):
                out[leaf.sig] = {"a": after, "m": latest}
    return out


def merge_states(into: State, other: State) -> State:
    """Two persons' states as one (an identity merge): the union of what their events added."""
    out: State = json.loads(json.dumps(into))
    for sig, entry in other.items():
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


def leaves_of(segments: Iterable[Segment]) -> list[Leaf]:
    """Every distinct leaf of the segments (shared leaves once)."""
    seen: dict[str, Leaf] = {}
    for segment in segments:
        for leaf in segment.leaves:
            seen.setdefault(leaf.sig, leaf)
    return list(seen.values())


# The event columns a filter may test (rules.py), plus the properties.
EVENT_KEYS = (*EVENT_FIELD_NAMES, "properties")


def event_of(source: Any) -> dict[str, Any]:
    """What a filter sees of an event: an EventRow or a mapping of ``events`` columns."""
    if isinstance(source, Mapping):
        event = {k: source.get(k) for k in EVENT_KEYS}
        timestamp = source["timestamp"]
    else:
        event = {k: getattr(source, k) for k in EVENT_KEYS}
        timestamp = source.timestamp
    event["t"] = epoch_ms(timestamp)
    return event
