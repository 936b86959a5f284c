"""One person's ``analytics.person_features`` at 1M events: live profile vs the old recount.

``pytest -m perf tests/perf/test_person_features.py -s`` prints the figures. The
events, persons, identities and session rollups are generated in SQL
(generate_series), the profiles by ``footfall profiles rebuild``'s SQL, so the
set-up takes seconds, not an hour of HTTP.
"""

from __future__ import annotations

import importlib.util
import statistics
import time
from pathlib import Path

import psycopg
import pytest

from footfall.storage import partitions
from footfall.storage.profiles import rebuild
from tests.support import make_site, scratch_database

pytestmark = [pytest.mark.perf]

VISITORS = 20_000
PER_VISITOR = 50  # 5 sessions of 10 events
HEAVY_SESSIONS = 500  # one heavy visitor: 500 sessions of 20 events
HEAVY_PER_SESSION = 20

MIGRATION = Path(__file__).resolve().parents[2] / "migrations/versions/2026-12-01-1200_profiles.py"

EVENT = """
    CASE mod(k, 10)
        WHEN 0 THEN 'page' WHEN 9 THEN 'identify' ELSE 'track' END
"""
NAME = """
    CASE mod(k, 10)
        WHEN 1 THEN 'Element Clicked' WHEN 2 THEN 'Scroll Depth Reached'
        WHEN 3 THEN 'Page Engaged' WHEN 4 THEN 'Element Hovered'
        WHEN 5 THEN 'Video Playback Started' WHEN 6 THEN 'Video Playback Completed'
        WHEN 7 THEN 'Signed Up' WHEN 8 THEN 'Element Clicked' END
"""
PROPERTIES = """
    CASE mod(k, 10)
        WHEN 1 THEN '{"selector": "a", "tag": "a"}'::jsonb
        WHEN 2 THEN jsonb_build_object('depth_percent', 25 * (1 + mod(k, 4)))
        WHEN 3 THEN jsonb_build_object('engaged_ms', 1000 * k, 'max_scroll_percent', 50)
        WHEN 4 THEN '{"selector": "#s", "dwell_ms": 800}'::jsonb
        ELSE '{}'::jsonb END
"""

# g: event number; v: visitor; k: the visitor's event number; s: session number.
GENERATE_EVENTS = f"""
INSERT INTO events (site_id, message_id, type, event, "timestamp", received_at,
                    anonymous_id, session_id, page_path, page_url, utm_source,
                    device_type, context, properties)
SELECT %(site)s, 'm-' || g, {EVENT}, {NAME},
       timestamptz '2026-11-01' + make_interval(hours => mod(v, 500), days => s * 2, mins => mod(k, 10)),
       now(), 'v' || v, 'v' || v || '-s' || s,
       CASE WHEN mod(k, 10) = 0 THEN '/p/' || (mod(g, 97)) END,
       CASE WHEN mod(k, 10) = 0 THEN 'https://example.com/p/' || (mod(g, 97)) END,
       CASE WHEN s = 0 THEN 'news' END,
       (ARRAY['mobile', 'desktop', 'tablet'])[1 + mod(v, 3)], '{{}}'::jsonb, {PROPERTIES}
FROM (SELECT g, mod(g, %(visitors)s::int) AS v, g / %(visitors)s::int AS k,
             (g / %(visitors)s::int) / 10 AS s
      FROM generate_series(0, %(visitors)s::int * %(per)s::int - 1) AS g) AS t
"""

GENERATE_HEAVY = f"""
INSERT INTO events (site_id, message_id, type, event, "timestamp", received_at,
                    anonymous_id, session_id, page_path, device_type, context, properties)
SELECT %(site)s, 'h-' || k, {EVENT}, {NAME},
       timestamptz '2026-11-01' + make_interval(mins => k * 3), now(), 'heavy',
       'heavy-s' || (k / %(per_session)s::int), CASE WHEN mod(k, 10) = 0 THEN '/h' END, 'desktop',
       '{{}}'::jsonb, {PROPERTIES}
FROM generate_series(0, %(heavy)s::int - 1) AS k
"""

GENERATE_PERSONS = """
WITH ids AS (
    SELECT 'v' || v AS value FROM generate_series(0, %(visitors)s::int - 1) AS v
    UNION ALL SELECT 'heavy'
), p AS (
    INSERT INTO persons (site_id) SELECT %(site)s FROM ids RETURNING id
), numbered AS (
    SELECT id, row_number() OVER (ORDER BY id) AS n FROM p
)
INSERT INTO identities (site_id, kind, value, person_id)
SELECT %(site)s, 'anonymous', i.value, numbered.id
FROM (SELECT value, row_number() OVER (ORDER BY value) AS n FROM ids) AS i
JOIN numbered USING (n)
"""

# Session rollups as the writer would have left them (what the old view reads).
GENERATE_SESSIONS = """
INSERT INTO sessions (site_id, session_id, anonymous_id, first_event_at, first_message_id,
                      last_event_at, last_message_id, duration_ms, event_count, page_count,
                      click_count, hover_count, hover_dwell_ms, video_play_count,
                      video_complete_count,
                      max_scroll_percent, engaged_ms, entry_at, entry_message_id, exit_at,
                      exit_message_id, device_type)
SELECT site_id, session_id, min(anonymous_id), min("timestamp"), min(message_id),
       max("timestamp"), max(message_id),
       floor(extract(epoch FROM max("timestamp") - min("timestamp")) * 1000)::bigint,
       count(*), count(*) FILTER (WHERE type = 'page'),
       count(*) FILTER (WHERE event = 'Element Clicked'),
       count(*) FILTER (WHERE event = 'Element Hovered'),
       COALESCE(sum((properties->>'dwell_ms')::bigint), 0),
       count(*) FILTER (WHERE event = 'Video Playback Started'),
       count(*) FILTER (WHERE event = 'Video Playback Completed'),
       GREATEST(COALESCE(max((properties->>'depth_percent')::int), 0),
                COALESCE(max((properties->>'max_scroll_percent')::int), 0)),
       COALESCE(sum((properties->>'engaged_ms')::bigint), 0),
       min("timestamp"), min(message_id), max("timestamp"), max(message_id), min(device_type)
FROM events WHERE site_id = %(site)s GROUP BY site_id, session_id
"""


def _old_view_sql() -> str:
    spec = importlib.util.spec_from_file_location("profiles_migration", MIGRATION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    old: str = module.OLD_PERSON_FEATURES
    return old.replace("analytics.person_features", "analytics.person_features_recount")


def _timings(conn: psycopg.Connection, sql: str, person: int, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        rows = conn.execute(sql, (person,)).fetchall()
        times.append((time.perf_counter() - started) * 1000)
        assert len(rows) == 1
    return times


def _figures(times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"median {statistics.median(times):.2f} ms, p95 {p95:.2f} ms ({len(times)} runs)"


@pytest.mark.timeout(1800)
def test_person_features_at_1m_events(admin_dsn: str) -> None:
    with scratch_database(admin_dsn) as dsn:
        partitions.ensure(dsn, 2)
        site_id, _ = make_site(dsn)
        params = {
            "site": site_id,
            "visitors": VISITORS,
            "per": PER_VISITOR,
            "heavy": HEAVY_SESSIONS * HEAVY_PER_SESSION,
            "per_session": HEAVY_PER_SESSION,
        }
        with psycopg.connect(dsn, autocommit=True) as conn:
            started = time.perf_counter()
            conn.execute(GENERATE_EVENTS, params)
            conn.execute(GENERATE_HEAVY, params)
            conn.execute(GENERATE_PERSONS, params)
            conn.execute(GENERATE_SESSIONS, params)
            generated = time.perf_counter() - started
            (events,) = conn.execute("SELECT count(*) FROM events").fetchone() or (0,)
            with conn.transaction():
                started = time.perf_counter()
                profiles = rebuild(conn, site_id)
                rebuilt = time.perf_counter() - started
            conn.execute(_old_view_sql())
            conn.execute("VACUUM ANALYZE")
            typical, heavy = (
                conn.execute(
                    "SELECT person_id FROM identities WHERE site_id = %s AND value = %s",
                    (site_id, value),
                ).fetchone()[0]  # type: ignore[index]
                for value in ("v4242", "heavy")
            )
            new_sql = "SELECT * FROM analytics.person_features WHERE person_id = %s"
            old_sql = "SELECT * FROM analytics.person_features_recount WHERE person_id = %s"
            # Same answer from both (the generated data has no session-less events).
            new_row = conn.execute(new_sql, (typical,)).fetchone()
            old_row = conn.execute(old_sql, (typical,)).fetchone()
            assert new_row is not None and old_row is not None
            # ids and first/last seen exactly; recency_days (4) moves with now().
            assert new_row[:4] == old_row[:4]
            assert list(new_row[5:]) == pytest.approx(list(old_row[5:]))
            _timings(conn, new_sql, typical, 20)  # warm
            new_typical = _timings(conn, new_sql, typical, 300)
            new_heavy = _timings(conn, new_sql, heavy, 100)
            old_typical = _timings(conn, old_sql, typical, 5)
            plan = "\n".join(
                r[0] for r in conn.execute("EXPLAIN (ANALYZE, COSTS OFF) " + new_sql, (typical,))
            )
        print(
            f"\n{events:,} events, {profiles:,} profiles; generated in {generated:.1f} s,"
            f" profiles rebuilt in {rebuilt:.1f} s"
            f"\nperson_features, one person (5 sessions, {PER_VISITOR} events):"
            f" profile {_figures(new_typical)}; old recount {_figures(old_typical)}"
            f"\nperson_features, heavy person ({HEAVY_SESSIONS} sessions,"
            f" {HEAVY_SESSIONS * HEAVY_PER_SESSION:,} events): profile {_figures(new_heavy)}"
            f"\n{plan}"
        )
        assert events >= 1_000_000
