"""Session rollups: exact under retries, duplicates, reordering and two collectors at once."""

from __future__ import annotations

import random
import threading
from datetime import timedelta
from typing import Any

import pytest

from footfall.pipeline.sessions import Span, assign_idle, derive_session_id
from tests.analytics.messages import T0, message, page, post, track
from tests.support import Collector, ServerThread, collector_settings, make_site, query

# The rules of pipeline/sessions.py, recomputed from the events table alone.
RECOMPUTE = """
WITH ev AS (
    SELECT e.*, COALESCE(e.page_path, e.page_url) AS page,
           CASE WHEN jsonb_typeof(properties -> 'dwell_ms') = 'number'
                THEN (properties ->> 'dwell_ms')::numeric END AS dwell,
           CASE WHEN jsonb_typeof(properties -> 'depth_percent') = 'number'
                THEN (properties ->> 'depth_percent')::numeric END AS depth,
           CASE WHEN jsonb_typeof(properties -> 'max_scroll_percent') = 'number'
                THEN (properties ->> 'max_scroll_percent')::numeric END AS page_scroll,
           CASE WHEN jsonb_typeof(properties -> 'engaged_ms') = 'number'
                THEN (properties ->> 'engaged_ms')::numeric END AS engaged,
           type = 'track' AND event = 'Element Hovered' AS hovered,
           type = 'track' AND event = 'Page Engaged' AS page_engaged,
           type = 'track' AND event = 'Scroll Depth Reached' AS scrolled
    FROM events e
    WHERE site_id = %(site)s AND session_id IS NOT NULL
)
SELECT session_id,
       count(*)::int AS event_count,
       (count(*) FILTER (WHERE type IN ('page', 'screen')))::int AS page_count,
       (count(*) FILTER (WHERE type = 'track' AND event = 'Element Clicked'))::int
           AS click_count,
       (count(*) FILTER (WHERE hovered))::int AS hover_count,
       COALESCE(sum(trunc(LEAST(GREATEST(dwell, 0), 86400000))) FILTER (WHERE hovered), 0)::bigint
           AS hover_dwell_ms,
       (count(*) FILTER (WHERE type = 'track' AND event = 'Video Playback Started'))::int
           AS video_play_count,
       (count(*) FILTER (WHERE type = 'track' AND event = 'Video Playback Completed'))::int
           AS video_complete_count,
       GREATEST(
           COALESCE(max(floor(LEAST(GREATEST(depth, 0), 100) + 0.5)) FILTER (WHERE scrolled), 0),
           COALESCE(max(floor(LEAST(GREATEST(page_scroll, 0), 100) + 0.5))
                    FILTER (WHERE page_engaged), 0)
       )::int AS max_scroll_percent,
       COALESCE(sum(trunc(LEAST(GREATEST(engaged, 0), 86400000))) FILTER (WHERE page_engaged), 0)
           ::bigint AS engaged_ms,
       min("timestamp") AS first_event_at,
       max("timestamp") AS last_event_at,
       floor(extract(epoch FROM max("timestamp") - min("timestamp")) * 1000)::bigint
           AS duration_ms,
       max(user_id COLLATE "C") AS user_id,
       (array_agg(message_id ORDER BY "timestamp", message_id COLLATE "C"))[1]
           AS first_message_id,
       (array_agg(message_id ORDER BY "timestamp" DESC, message_id COLLATE "C" DESC))[1]
           AS last_message_id,
       (array_agg(anonymous_id ORDER BY "timestamp", message_id COLLATE "C"))[1] AS anonymous_id,
       (array_agg(device_type ORDER BY "timestamp", message_id COLLATE "C"))[1] AS device_type,
       (array_agg(browser_name ORDER BY "timestamp", message_id COLLATE "C"))[1] AS browser_name,
       (array_agg(os_name ORDER BY "timestamp", message_id COLLATE "C"))[1] AS os_name,
       (array_agg(page ORDER BY page IS NULL, "timestamp", message_id COLLATE "C"))[1]
           AS entry_page,
       (array_agg("timestamp" ORDER BY page IS NULL, "timestamp", message_id COLLATE "C"))[1]
           AS entry_at,
       (array_agg(page_referrer ORDER BY page IS NULL, "timestamp", message_id COLLATE "C"))[1]
           AS referrer,
       (array_agg(utm_source ORDER BY page IS NULL, "timestamp", message_id COLLATE "C"))[1]
           AS utm_source,
       (array_agg(utm_campaign ORDER BY page IS NULL, "timestamp", message_id COLLATE "C"))[1]
           AS utm_campaign,
       (array_agg(page ORDER BY page IS NOT NULL DESC, "timestamp" DESC,
                  message_id COLLATE "C" DESC))[1] AS exit_page,
       (array_agg("timestamp" ORDER BY page IS NOT NULL DESC, "timestamp" DESC,
                  message_id COLLATE "C" DESC))[1] AS exit_at
FROM ev
GROUP BY session_id
"""

COLUMNS = [
    "event_count",
    "page_count",
    "click_count",
    "hover_count",
    "hover_dwell_ms",
    "video_play_count",
    "video_complete_count",
    "max_scroll_percent",
    "engaged_ms",
    "first_event_at",
    "last_event_at",
    "duration_ms",
    "user_id",
    "first_message_id",
    "last_message_id",
    "anonymous_id",
    "device_type",
    "browser_name",
    "os_name",
    "entry_page",
    "entry_at",
    "referrer",
    "utm_source",
    "utm_campaign",
    "exit_page",
    "exit_at",
]


def _tracker_session(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """One browser visit: pages, clicks, hovers, scrolls, video, engagement."""
    anon, sid = f"anon-{n}", f"sess-{n}"
    ua = rng.choice(["iphone", "edge", "android", "firefox_mac"])
    start = rng.uniform(0, 600)
    campaign = {"source": "news", "medium": "email", "name": f"spring-{n % 3}"}
    context = {"timezone": "Europe/Berlin" if n % 2 else "Mars/Olympus", "campaign": campaign}
    user = f"user-{n % 4}" if n % 3 == 0 else None
    out: list[dict[str, Any]] = []
    t = start
    for p in range(rng.randint(1, 4)):
        path = f"/article/{rng.randint(1, 9)}"
        props = {"path": path, "url": "https://example.com" + path, "referrer": f"https://ref/{p}"}
        out.append(
            page(
                anon,
                path,
                session=sid,
                ua=ua,
                minutes=t,
                properties=props,
                context=dict(context),
                userId=user,
            )
        )
        for _ in range(rng.randint(0, 4)):
            t += rng.uniform(0.01, 2)
            kind = rng.choice(["click", "hover", "scroll", "play", "done", "engaged", "custom"])
            event, props = {
                "click": ("Element Clicked", {"selector": "a.more", "tag": "a"}),
                "hover": (
                    "Element Hovered",
                    {"selector": "#subscribe", "dwell_ms": rng.randint(500, 4000)},
                ),
                "scroll": (
                    "Scroll Depth Reached",
                    {"depth_percent": rng.choice([25, 50, 75, 90, 100])},
                ),
                "play": ("Video Playback Started", {"position": 0}),
                "done": ("Video Playback Completed", {"position": 60}),
                "engaged": (
                    "Page Engaged",
                    {
                        "engaged_ms": rng.randint(1000, 90000),
                        "max_scroll_percent": rng.choice([12.5, 62.5, 99.4]),
                    },
                ),
                "custom": ("Signed Up", {"plan": "pro"}),
            }[kind]
            out.append(
                track(
                    anon,
                    event,
                    props,
                    session=sid,
                    ua=ua,
                    minutes=t,
                    context=dict(context),
                    userId=user,
                )
            )
        t += rng.uniform(0.5, 5)
    # Two events at the same instant: the message id breaks the tie.
    twin = dict(out[-1], messageId=out[-1]["messageId"][:-1] + "0")
    out.append(twin)
    return out


def _server_side() -> list[dict[str, Any]]:
    """Backend messages without a session id: the 30-minute idle rule applies."""
    out = []
    for minutes in (0, 10, 50, 55, 200):
        out.append(
            message(
                "track",
                anonymousId="srv-1",
                event="Order Completed",
                minutes=minutes,
                properties={"total": minutes},
            )
        )
    for minutes in (0, 5):
        out.append(
            message(
                "track",
                userId="srv-user",
                event="Invoice Paid",
                minutes=minutes,
                properties={"n": minutes},
            )
        )
    return out


def test_rollups_equal_a_recount_after_retries_duplicates_and_two_collectors(
    collector: Collector, database: str
) -> None:
    rng = random.Random(5)
    messages = [m for n in range(30) for m in _tracker_session(rng, n)] + _server_side()
    rng.shuffle(messages)
    batches = []
    i = 0
    while i < len(messages):
        size = rng.randint(1, 25)
        batch = messages[i : i + size]
        if rng.random() < 0.3:
            batch = [*batch, rng.choice(batch)]  # a duplicate in the same batch
        batches.append(batch)
        i += size
    retries = [b for b in batches if rng.random() < 0.4]  # sent again: clients retrying

    site_id, key = make_site(database, settings={"allow_undeclared_events": True})
    second = ServerThread(collector_settings(database)).start()
    try:
        urls = [collector.base_url, second.base_url]
        work = [(urls[n % 2], b) for n, b in enumerate(batches)]
        work += [(urls[(n + 1) % 2], b) for n, b in enumerate(retries)]
        rng.shuffle(work)
        errors: list[BaseException] = []

        def worker(items: list[tuple[str, list[dict[str, Any]]]]) -> None:
            try:
                for url, batch in items:
                    answer = post(url, key, batch)
                    assert answer["failed"] == [] and not answer["refused"], answer
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(work[n::6],)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
    finally:
        second.stop()

    stored_events = query(
        database, "SELECT count(*) AS n FROM events WHERE site_id = %s", (site_id,)
    )
    assert stored_events[0]["n"] == len({m["messageId"] for m in messages})
    missing = query(
        database,
        "SELECT count(*) AS n FROM events WHERE site_id = %s AND session_id IS NULL",
        (site_id,),
    )
    assert missing[0]["n"] == 0  # every message had an actor, so every one has a session

    expected = {r["session_id"]: r for r in query(database, RECOMPUTE, {"site": site_id})}
    stored = {
        r["session_id"]: r
        for r in query(database, "SELECT * FROM sessions WHERE site_id = %s", (site_id,))
    }
    assert set(stored) == set(expected)
    for session_id, row in expected.items():
        for column in COLUMNS:
            assert stored[session_id][column] == row[column], (session_id, column)

    # The idle rule: srv-1's gaps of 40 and 145 minutes make three sessions.
    srv = query(
        database,
        "SELECT session_id, array_agg(properties ->> 'total' ORDER BY timestamp) AS totals"
        " FROM events WHERE site_id = %s AND anonymous_id = 'srv-1' GROUP BY 1 ORDER BY 2",
        (site_id,),
    )
    assert sorted(r["totals"] for r in srv) == [["0", "10"], ["200"], ["50", "55"]]
    assert all(stored[r["session_id"]]["session_id"].startswith("ffs-") for r in srv)
    (user_only,) = query(
        database,
        "SELECT count(DISTINCT session_id) AS n FROM events WHERE site_id = %s"
        " AND event = 'Invoice Paid'",
        (site_id,),
    )
    assert user_only["n"] == 1

    # Zones: the browser's when it is real, else UTC (no GeoIP database here).
    zones = {r["session_id"]: r for r in stored.values() if r["session_id"].startswith("sess-")}
    assert (zones["sess-1"]["timezone"], zones["sess-1"]["utc_offset_min"]) == ("Europe/Berlin", 60)
    assert (zones["sess-2"]["timezone"], zones["sess-2"]["utc_offset_min"]) == ("UTC", 0)


def test_idle_rule_is_deterministic_and_order_independent() -> None:
    times = [T0 + timedelta(minutes=m) for m in (0, 10, 50, 55, 200)]
    events = [(t, f"m{n}") for n, t in enumerate(times)]

    def make(at):
        return derive_session_id(1, "a:x", at)

    ids = assign_idle([], events, make)
    assert ids["m0"] == ids["m1"] == make(times[0])
    assert ids["m2"] == ids["m3"] == make(times[2])
    assert ids["m4"] == make(times[4])
    assert assign_idle([], list(reversed(events)), make) == ids
    # An existing session 20 minutes before takes the first event.
    spans = [Span("old", T0 - timedelta(minutes=40), T0 - timedelta(minutes=20))]
    assert assign_idle(spans, events[:1], make) == {"m0": "old"}


@pytest.mark.parametrize("batches", [1, 3])
def test_same_rollup_whatever_the_grouping(collector: Collector, batches: int) -> None:
    rng = random.Random(11)
    messages = _tracker_session(rng, 7)
    rng.shuffle(messages)
    site_id, key = collector.make_site(settings={"allow_undeclared_events": True})
    for n in range(batches):
        post(collector.base_url, key, messages[n::batches])
    (row,) = query(collector.dsn, "SELECT * FROM sessions WHERE site_id = %s", (site_id,))
    expected = query(collector.dsn, RECOMPUTE, {"site": site_id})[0]
    assert {c: row[c] for c in COLUMNS} == {c: expected[c] for c in COLUMNS}
