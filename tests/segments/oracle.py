"""An independent reading of docs/segments.md's semantics, straight from an event list.

No buckets kept, no pruning, no caps: every condition is recomputed from all
events, so it checks the incremental window state (pipeline/segments/evaluate.py)
and everything that feeds it (the writer step, merges, retries, the sweeper).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from footfall.pipeline.segments.rules import (
    MISSING,
    Absence,
    Aggregate,
    AllOf,
    AnyOf,
    Condition,
    Not,
    ProfileTest,
    Segment,
    Sequence_,
    compare,
    field_value,
)


def _counts(leaf: Aggregate, t: int, now_ms: int) -> bool:
    start = (t // 1000) // leaf.width_s * leaf.width_s
    return (start + leaf.width_s + leaf.window_s) * 1000 > now_ms


def _aggregate(leaf: Aggregate, events: Sequence[Mapping[str, Any]], now_ms: int) -> bool:
    live = [e for e in events if leaf.filter.matches(e) and _counts(leaf, e["t"], now_ms)]
    if leaf.kind == "count":
        value: float = len(live)
    elif leaf.kind == "sum":
        values = [field_value(e, leaf.measure or "") for e in live]
        value = sum(v for v in values if isinstance(v, int | float) and not isinstance(v, bool))
    else:
        values = [field_value(e, leaf.measure or "") for e in live]
        value = len({json.dumps(v, sort_keys=True) for v in values if v is not MISSING})
    return all(compare(op, value, arg) for op, arg in leaf.comparisons)


def _sequence(leaf: Sequence_, events: Sequence[Mapping[str, Any]], now_ms: int) -> bool:
    per_step = [sorted({e["t"] for e in events if step.matches(e)}) for step in leaf.steps]
    for chain in itertools.product(*per_step):
        increasing = all(a < b for a, b in itertools.pairwise(chain))
        span_ok = chain[-1] - chain[0] <= leaf.within_ms
        if increasing and span_ok and chain[-1] + leaf.lookback_ms > now_ms:
            return True
    return False


def _absence(leaf: Absence, events: Sequence[Mapping[str, Any]], now_ms: int) -> bool:
    absent = [e["t"] for e in events if leaf.absent.matches(e)]
    for e in events:
        if not leaf.after.matches(e):
            continue
        t = e["t"]
        if any(b >= t for b in absent):
            continue
        if t + leaf.for_ms <= now_ms < t + leaf.for_ms + leaf.lookback_ms:
            return True
    return False


def holds(
    node: Condition,
    events: Sequence[Mapping[str, Any]],
    profile: Mapping[str, Any] | None,
    now_ms: int,
) -> bool:
    if isinstance(node, AllOf):
        return all(holds(p, events, profile, now_ms) for p in node.parts)
    if isinstance(node, AnyOf):
        return any(holds(p, events, profile, now_ms) for p in node.parts)
    if isinstance(node, Not):
        return not holds(node.part, events, profile, now_ms)
    if isinstance(node, ProfileTest):
        attributes = profile or {}
        return all(
            p.holds(attributes.get(p.field), attributes.get(p.field) is not None)
            for p in node.predicates
        )
    if isinstance(node, Aggregate):
        return _aggregate(node, events, now_ms)
    if isinstance(node, Sequence_):
        return _sequence(node, events, now_ms)
    return _absence(node, events, now_ms)


def member(
    segment: Segment,
    events: Sequence[Mapping[str, Any]],
    profile: Mapping[str, Any] | None,
    now_ms: int,
) -> bool:
    return holds(segment.when, events, profile, now_ms)
