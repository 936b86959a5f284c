"""The pure evaluator against the oracle: any arrival order, any commit split, merges."""

from __future__ import annotations

import json
import random
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from footfall.pipeline.segments.evaluate import (
    apply_event,
    evaluate,
    leaves_of,
    merge_states,
    prune,
)
from footfall.pipeline.segments.rules import parse_rule
from tests.segments import oracle

EXAMPLES = Path(__file__).parents[2] / "docs" / "segments-examples"
SEGMENTS = [parse_rule(json.loads(p.read_text()), 1) for p in sorted(EXAMPLES.glob("*.json"))]
# Short-window variants so generated streams cross every edge (seconds, not hours).
SHORT = [
    parse_rule(
        {"key": "short-count", "when": {"all": [
            {"count": {"type": "page", "where": {"page_path": {"glob": "/articles/**"}}},
             "within": 7, "gte": 2},
            {"not": {"sum": {"field": "properties.engaged_ms", "event": "Page Engaged"},
                     "within": "1m", "gt": 5000}}]}},
        1,
    ),
    parse_rule(
        {"key": "short-absence", "when": {
            "after": {"type": "page", "where": {"page_path": {"glob": "/product/*"}}},
            "absent": {"event": "Product Added"}, "for": 5, "lookback": 9}},
        1,
    ),
    parse_rule(
        {"key": "short-sequence", "when": {"sequence": [
            {"type": "page", "where": {"page_path": {"eq": "/pricing"}}},
            {"event": "Product Added"},
            {"event": "Signed Up"}], "within": 20, "lookback": 6}},
        1,
    ),
    parse_rule(
        {"key": "short-distinct", "when": {
            "distinct": {"field": "page_path", "type": "page"}, "within": 10, "gte": 3}},
        1,
    ),
]  # fmt: skip
ALL = SEGMENTS + SHORT
LEAVES = leaves_of(ALL)
PROFILE = {"device_type": "mobile", "sessions": 2, "identified": True}

T0 = 1_800_000_000_000  # epoch ms


def _event(kind: str, t: int, path: str | None = None, **properties) -> dict:
    names = {"page": None, "added": "Product Added", "order": "Order Completed",
             "hover": "Element Hovered", "engaged": "Page Engaged", "signup": "Signed Up"}  # fmt: skip
    return {
        "type": "page" if kind == "page" else "track",
        "event": names[kind],
        "page_path": path,
        "properties": properties,
        "t": t,
    }


PATHS = ["/articles/a", "/articles/tech/x", "/articles/tech/y", "/product/1", "/product/1",
         "/pricing", "/pricing"]  # fmt: skip

events_strategy = st.lists(
    st.builds(
        lambda kind, dt, path, n, plan: _event(
            kind, T0 + dt, path,
            **({"selector": "#subscribe"} if kind == "hover" else {}),
            **({"engaged_ms": n} if kind == "engaged" else {}),
            **({"plan": plan} if kind == "signup" else {}),
        ),
        st.sampled_from(["page", "added", "order", "hover", "engaged", "signup"]),
        st.integers(0, 40).map(lambda n: n * 500),  # coarse: equal times happen
        st.sampled_from(PATHS),
        st.integers(0, 90_000),
        st.sampled_from(["pro", "free"]),
    ),
    max_size=40,
)  # fmt: skip


def _incremental(events: list[dict], commits: list[int], seed: int) -> tuple[dict, int]:
    """Apply events in a shuffled order, in commits at increasing times; the final now."""
    rng = random.Random(seed)
    order = events[:]
    rng.shuffle(order)
    state: dict = {}
    now = max((e["t"] for e in events), default=T0)
    cut = 0
    for i, size in enumerate([*commits, len(order)]):
        part = order[cut : cut + size]
        cut += size
        # Commit time: never before the events of the commit (no future timestamps).
        now = max([now, *[e["t"] for e in part]]) + i * 700
        state = prune(state, LEAVES, now)
        for event in part:
            apply_event(state, LEAVES, event, now)
        state = json.loads(json.dumps(state))  # as jsonb stores it
        if cut >= len(order):
            break
    return state, now


@settings(max_examples=300, deadline=None)
@given(events_strategy, st.lists(st.integers(1, 6), max_size=8), st.integers(0, 2**16),
       st.integers(0, 30_000))  # fmt: skip
def test_incremental_state_matches_the_oracle(events, commits, seed, later) -> None:
    state, now = _incremental(events, commits, seed)
    for when in (now, now + later, *range(now + 500, now + 20_000, 1_500)):
        for segment in ALL:
            got = evaluate(segment, state, PROFILE, when).member
            want = oracle.member(segment, events, PROFILE, when)
            assert got == want, (segment.key, when - T0)


@settings(max_examples=200, deadline=None)
@given(events_strategy, st.integers(0, 2**16))
def test_merged_states_equal_one_person(events, seed) -> None:
    rng = random.Random(seed)
    mine = [e for e in events if rng.random() < 0.5]
    theirs = [e for e in events if e not in mine]
    a, now_a = _incremental(mine, [], seed)
    b, now_b = _incremental(theirs, [], seed + 1)
    now = max(now_a, now_b)
    merged = merge_states(prune(a, LEAVES, now), prune(b, LEAVES, now))
    for segment in ALL:
        assert evaluate(segment, merged, PROFILE, now).member == oracle.member(
            segment, mine + theirs, PROFILE, now
        ), segment.key


@settings(max_examples=200, deadline=None)
@given(events_strategy, st.integers(0, 2**16))
def test_nothing_changes_before_the_next_time(events, seed) -> None:
    state, now = _incremental(events, [], seed)
    for segment in SHORT:
        verdict = evaluate(segment, state, PROFILE, now)
        if verdict.next_ms is None:
            for later in (now + 1_000, now + 60_000, now + 3_600_000):
                assert oracle.member(segment, events, PROFILE, later) == verdict.member
            continue
        assert verdict.next_ms > now
        for probe in range(now, verdict.next_ms, max(1, (verdict.next_ms - now) // 7)):
            assert oracle.member(segment, events, PROFILE, probe) == verdict.member


def test_engaged_reader_by_hand() -> None:
    reader = next(s for s in SEGMENTS if s.key == "engaged-reader")
    state: dict = {}
    events = [
        _event("page", T0, "/articles/a"),
        _event("page", T0 + 60_000, "/articles/b/c"),
        _event("hover", T0 + 61_000, selector="#subscribe-btn"),
        _event("hover", T0 + 62_000, selector="#subscribe-btn"),
    ]
    for e in events:
        apply_event(state, reader.leaves, e, T0 + 62_000)
    assert not evaluate(reader, state, None, T0 + 62_000).member  # two articles only
    apply_event(state, reader.leaves, _event("page", T0 + 90_000, "/articles/d"), T0 + 90_000)
    verdict = evaluate(reader, state, None, T0 + 90_000)
    assert verdict.member
    # The first article leaves the 10-minute window (10 s buckets): out then.
    assert verdict.next_ms == T0 + 610_000
    assert not evaluate(reader, state, None, verdict.next_ms).member


def test_hesitant_buyer_by_hand() -> None:
    buyer = next(s for s in SEGMENTS if s.key == "hesitant-buyer")
    state: dict = {}
    apply_event(state, buyer.leaves, _event("page", T0, "/product/1"), T0)
    verdict = evaluate(buyer, state, None, T0 + 1)
    assert not verdict.member and verdict.next_ms == T0 + 120_000
    assert evaluate(buyer, state, None, T0 + 120_000).member
    later = evaluate(buyer, state, None, T0 + 130_000)
    assert later.member and later.next_ms == T0 + 720_000
    apply_event(state, buyer.leaves, _event("added", T0 + 130_000), T0 + 130_000)
    assert not evaluate(buyer, state, None, T0 + 130_000).member


def test_sequence_steps_at_the_same_time_do_not_chain() -> None:
    sequence = next(s for s in SHORT if s.key == "short-sequence")
    state: dict = {}
    for event in (
        _event("page", T0, "/pricing"),
        _event("added", T0),
        _event("signup", T0 + 1_000, plan="pro"),
    ):
        apply_event(state, sequence.leaves, event, T0 + 1_000)
    assert not evaluate(sequence, state, None, T0 + 1_000).member
    apply_event(state, sequence.leaves, _event("added", T0 + 500), T0 + 1_000)
    assert evaluate(sequence, state, None, T0 + 1_000).member
