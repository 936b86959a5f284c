"""The analytics views: person_features by hand, person_events, and the read-only role."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.analytics.messages import T0, identify, page, post, track
from tests.support import Collector, query, reader_role

HOUR = 60


def _session(anon: str, sid: str, ua: str, tz: str | None, start: float, steps: list) -> list:
    """Messages of one browser session; ``steps`` are (minutes after start, builder)."""
    context = {"timezone": tz} if tz else {}
    return [build(anon, sid, ua, dict(context), start + minutes) for minutes, build in steps]


def _page(path):
    return lambda a, s, ua, ctx, m: page(a, path, session=s, ua=ua, context=ctx, minutes=m)


def _track(event, props):
    return lambda a, s, ua, ctx, m: track(a, event, props, session=s, ua=ua, context=ctx, minutes=m)


def _identify(user):
    return lambda a, s, ua, ctx, m: identify(a, user, session=s, ua=ua, context=ctx, minutes=m)


@pytest.fixture
def dataset(collector: Collector) -> tuple[int, dict[str, int]]:
    """Two persons, three sessions, with numbers chosen to check by hand."""
    site_id, key = collector.make_site()
    # Person A, session 1: Monday 09:00 UTC = 10:00 in Berlin (morning), an iPhone.
    a1 = _session(
        "pa",
        "a1",
        "iphone",
        "Europe/Berlin",
        0,
        [
            (0, _page("/a")),
            (1, _track("Element Clicked", {"selector": "a", "tag": "a"})),
            (2, _track("Element Hovered", {"selector": "#subscribe", "dwell_ms": 1000})),
            (3, _track("Element Hovered", {"selector": "#subscribe", "dwell_ms": 3000})),
            (4, _track("Scroll Depth Reached", {"depth_percent": 50})),
            (5, _page("/b")),
            (6, _track("Video Playback Started", {"position": 0})),
            (8, _track("Video Playback Completed", {"position": 90})),
            (10, _track("Page Engaged", {"engaged_ms": 60000, "max_scroll_percent": 80})),
        ],
    )
    # Person A logs in in session 2: Tuesday 23:00 UTC = 18:00 in New York (evening), Edge.
    a2 = _session(
        "pa",
        "a2",
        "edge",
        "America/New_York",
        38 * HOUR,
        [
            (0, _identify("alice")),
            (1, _page("/c")),
            (2, _track("Video Playback Started", {"position": 0})),
            (3, _track("Scroll Depth Reached", {"depth_percent": 25})),
            (4, _track("Element Clicked", {"selector": "b", "tag": "b"})),
        ],
    )
    # Person B: Saturday 02:00 UTC (no time zone given: UTC, night), an iPad.
    b1 = _session(
        "pb",
        "b1",
        "ipad",
        None,
        113 * HOUR,
        [
            (0, _page("/x")),
            (1, _page("/y")),
            (2, _track("Video Playback Completed", {"position": 5})),  # no start seen
        ],
    )
    answer = post(collector.base_url, key, a1 + a2 + b1)
    assert answer["accepted"] == 17, answer
    persons = {
        r["value"]: r["person_id"]
        for r in query(
            collector.dsn,
            "SELECT value, person_id FROM analytics.identities"
            " WHERE site_id = %s AND kind = 'anonymous'",
            (site_id,),
        )
    }
    return site_id, persons


def test_person_features_by_hand(collector: Collector, dataset: tuple[int, dict[str, int]]) -> None:
    site_id, persons = dataset
    rows = {
        r["person_id"]: r
        for r in query(
            collector.dsn, "SELECT * FROM analytics.person_features WHERE site_id = %s", (site_id,)
        )
    }
    assert set(rows) == {persons["pa"], persons["pb"]}
    a, b = rows[persons["pa"]], rows[persons["pb"]]

    last_a = T0 + timedelta(hours=38, minutes=4)
    assert a["first_seen"] == T0 and a["last_seen"] == last_a
    now = datetime.now(UTC)
    assert a["recency_days"] == pytest.approx((now - last_a).total_seconds() / 86400, abs=0.01)
    expected_a = {
        "frequency": 14,
        "sessions": 2,
        "mean_session_duration_s": (600 + 240) / 2,
        "mean_engaged_s": 30,
        "page_views": 3,
        "pages_per_session": 1.5,
        "mean_scroll_depth": 52.5,
        "max_scroll_depth": 80,
        "hover_count": 2,
        "mean_hover_dwell_ms": 2000,
        "clicks": 2,
        "click_rate": 2 / 3,
        "video_plays": 2,
        "video_completion_rate": 0.5,
        "share_mobile": 0.5,
        "share_desktop": 0.5,
        "share_tablet": 0,
        "share_other_device": 0,
        "share_night": 0,
        "share_morning": 0.5,
        "share_afternoon": 0,
        "share_evening": 0.5,
        "share_monday": 0.5,
        "share_tuesday": 0.5,
        "share_wednesday": 0,
        "share_saturday": 0,
        "share_weekend": 0,
    }
    for name, value in expected_a.items():
        assert a[name] == pytest.approx(value), name

    expected_b = {
        "frequency": 3,
        "sessions": 1,
        "mean_session_duration_s": 120,
        "page_views": 2,
        "click_rate": 0,
        "hover_count": 0,
        "mean_hover_dwell_ms": 0,
        "video_completion_rate": 0,  # a completion without a start: 0, not NULL or > 1
        "max_scroll_depth": 0,
        "share_tablet": 1,
        "share_night": 1,
        "share_saturday": 1,
        "share_weekend": 1,
    }
    for name, value in expected_b.items():
        assert b[name] == pytest.approx(value), name
    for row in (a, b):
        numeric = {k: v for k, v in row.items() if k not in ("person_id", "site_id")}
        assert all(v is not None for v in numeric.values()), row
        assert all(
            isinstance(v, float) for k, v in numeric.items() if k not in ("first_seen", "last_seen")
        )


def test_persons_and_sessions_views(
    collector: Collector, dataset: tuple[int, dict[str, int]]
) -> None:
    site_id, persons = dataset
    (a,) = query(
        collector.dsn, "SELECT * FROM analytics.persons WHERE person_id = %s", (persons["pa"],)
    )
    assert a["anonymous_ids"] == ["pa"] and len(a["user_ids"]) == 1 and a["is_identified"]
    assert (a["sessions"], a["events"]) == (2, 14)
    sessions = {
        r["session_id"]: r
        for r in query(
            collector.dsn, "SELECT * FROM analytics.sessions WHERE site_id = %s", (site_id,)
        )
    }
    assert sessions["a1"]["local_started_at"] == datetime(2026, 3, 2, 10, 0)
    assert sessions["a2"]["local_started_at"] == datetime(2026, 3, 3, 18, 0)
    assert (sessions["a1"]["entry_page"], sessions["a1"]["exit_page"]) == ("/a", "/b")
    assert sessions["a2"]["person_id"] == sessions["a1"]["person_id"] == persons["pa"]


def test_person_events_function(collector: Collector) -> None:
    site_id, key = collector.make_site()
    carol = [page("dev", "/1", minutes=0), identify("dev", "carol", minutes=1)]
    dave = [identify("dev", "dave", minutes=5), page("dev", "/2", userId="dave", minutes=6)]
    other_device = [page("dev-2", minutes=7), identify("dev-2", "dave", minutes=8)]
    post(collector.base_url, key, carol + dave + other_device)
    ids = {
        r["value"]: r["person_id"]
        for r in query(
            collector.dsn,
            "SELECT value, person_id FROM analytics.identities WHERE site_id = %s",
            (site_id,),
        )
    }
    for person in (ids["dev"], ids["dev-2"]):
        got = query(
            collector.dsn,
            "SELECT message_id FROM analytics.person_events(%s, %s, %s)",
            (person, T0, T0 + timedelta(days=1)),
        )
        expected = query(
            collector.dsn,
            "SELECT message_id FROM analytics.events WHERE site_id = %s AND person_id = %s",
            (site_id, person),
        )
        assert sorted(r["message_id"] for r in got) == sorted(r["message_id"] for r in expected)
    assert (
        len(
            query(
                collector.dsn,
                "SELECT 1 FROM analytics.person_events(%s, %s, %s)",
                (ids["dev"], T0, T0 + timedelta(days=1)),
            )
        )
        == 2
    )
    narrow = query(
        collector.dsn,
        "SELECT message_id FROM analytics.person_events(%s, %s, %s)",
        (ids["dev-2"], T0 + timedelta(minutes=6), T0 + timedelta(minutes=7, seconds=30)),
    )
    assert len(narrow) == 2  # dave's page at 6 min and dev-2's page at 7 min


def test_reader_role_reads_views_and_nothing_else(
    collector: Collector, dataset: tuple[int, dict[str, int]]
) -> None:
    site_id, persons = dataset
    with psycopg.connect(collector.dsn, autocommit=True, row_factory=dict_row) as conn:
        conn.execute(f'SET ROLE "{reader_role(collector.dsn)}"')
        for view in ("events", "sessions", "persons", "person_features", "identities"):
            rows = conn.execute(
                f"SELECT count(*) AS n FROM analytics.{view} WHERE site_id = %s", (site_id,)
            ).fetchall()
            assert rows[0]["n"] > 0, view
        rows = conn.execute(
            "SELECT count(*) AS n FROM analytics.person_events(%s, %s, %s)",
            (persons["pb"], T0, T0 + timedelta(days=30)),
        ).fetchall()
        assert rows[0]["n"] == 3
        for table in ("public.sites", "public.events", "public.identities", "public.sessions"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT 1 FROM {table} LIMIT 1")
    columns = query(
        collector.dsn,
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = 'analytics'",
    )
    names = {c["column_name"] for c in columns}
    assert not names & {"write_key", "secret_key_hash", "ip_network", "ip"}
