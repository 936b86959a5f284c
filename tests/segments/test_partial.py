"""The writer evaluates only the segments a commit's events can change: the same answers.

``storage.segments.decide`` (pure) is what the writer runs per person: a person that
is not new, merged or due gets only the segments whose leaves its new events
changed, plus those testing the profile; the others keep their answers, which
change with time alone (the sweeper's work, at the due time). Over generated
streams of commits and sweeps, each answer is compared with evaluating every
segment on the same state at the same moment (``evaluate``, the tree walk the
compiled evaluators must agree with), and the kept due time with the earliest
moment any answer can change.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from footfall.pipeline.segments.evaluate import epoch_ms, evaluate, event_of
from footfall.pipeline.segments.rules import parse_rule
from footfall.storage.segments import SiteSegments, decide
from tests.segments.test_property import RULES

EXTRA_RULES = [
    # True with no events at all: a person new to the segment is a member.
    {
        "key": "no-orders",
        "when": {"not": {"count": {"event": "Order Completed"}, "within": "1m", "gte": 1}},
    },
    # Either a window or the profile (and compiled "any" against the tree walk).
    {
        "key": "either",
        "when": {
            "any": [
                {"count": {"event": "Signed Up"}, "within": "2m", "gte": 1},
                {"not": {"profile": {"device_type": {"eq": "mobile"}}}},
            ]
        },
    },
    # Profile only: no leaf, any event may change it.
    {"key": "mobile", "when": {"profile": {"device_type": {"eq": "mobile"}}}},
    {
        "key": "hovers-then-quiet",
        "when": {"after": {"event": "Element Hovered"}, "absent": {"type": "page"}, "for": 30},
    },
]
SITE = SiteSegments(tuple(parse_rule(r, 1) for r in [*RULES, *EXTRA_RULES]))
BASE = datetime(2026, 12, 1, 12, tzinfo=UTC)
PATHS = ["/articles/tech/a", "/articles/tech/b", "/product/1", "/pricing", "/"]


def _event(kind: str, at_ms: int, detail: int) -> dict[str, Any]:
    path = PATHS[detail % len(PATHS)]
    fields: dict[str, Any] = {"type": "track", "page_path": path, "properties": {}}
    if kind == "page":
        fields |= {"type": "page", "properties": {"path": path}}
    elif kind == "hover":
        fields |= {"event": "Element Hovered", "properties": {"selector": "#subscribe"}}
    elif kind == "engaged":
        fields |= {"event": "Page Engaged", "properties": {"engaged_ms": 70_000}}
    else:
        names = {"added": "Product Added", "order": "Order Completed", "signup": "Signed Up"}
        fields |= {"event": names[kind], "properties": {"plan": "pro"}}
    moment = BASE + timedelta(milliseconds=at_ms)
    return event_of(fields | {"timestamp": moment})


KINDS = ["page", "page", "hover", "engaged", "added", "order", "signup"]
commits = st.lists(
    st.tuples(
        st.integers(0, 200),  # seconds since the previous commit
        st.lists(
            st.tuples(st.sampled_from(KINDS), st.integers(0, 40), st.integers(0, 9)),
            min_size=1,
            max_size=4,
        ),  # (kind, seconds before the commit, detail)
        st.booleans(),  # the sweeper ran at the due time before this commit
        st.sampled_from(["mobile", "desktop"]),  # the profile's device by then
    ),
    min_size=1,
    max_size=25,
)


def _truth(state: dict[str, Any], profile: dict[str, Any], now_ms: int) -> tuple[set[str], Any]:
    members, next_ms = set(), None
    for segment in SITE.segments:
        verdict = evaluate(segment, state, profile, now_ms)
        if verdict.member:
            members.add(segment.key)
        if verdict.next_ms is not None:
            next_ms = verdict.next_ms if next_ms is None else min(next_ms, verdict.next_ms)
    return members, next_ms


@settings(max_examples=300, deadline=None)
@given(stream=commits)
def test_evaluating_only_what_events_change_gives_every_segments_answer(stream) -> None:
    state: dict[str, Any] = {}
    open_: dict[str, int] = {}
    due: int | None = None
    now = epoch_ms(BASE)
    new = True
    for gap_s, events, swept, device in stream:
        now += gap_s * 1000
        profile = {"device_type": device, "sessions": 1, "identified": True}
        if swept and due is not None and due <= now:
            # The sweeper: every segment, at the due time.
            found = decide(SITE, state, [], open_, None, True, profile, due)
            state, due = found.state, found.due_ms
            open_ = dict.fromkeys(found.current, 1)
        batch = [_event(kind, now - ago * 1000, detail) for kind, ago, detail in events]
        full = new or (due is not None and due <= now)
        found = decide(SITE, state, batch, open_, due, full, profile, now)
        new = False
        state, due = found.state, found.due_ms
        for segment, member in found.verdicts:
            if member:
                open_[segment.key] = 1
            else:
                open_.pop(segment.key, None)
        members, next_ms = _truth(state, profile, now)
        assert set(found.current) == members
        assert set(open_) == members
        # Never later than the first moment an answer can change by itself.
        if next_ms is not None:
            assert due is not None and due <= next_ms
