"""events partitioned by event time (issue 11): pruning, late and clamped events, the DEFAULT
partition and its CLI, and the migration from partitions by arrival time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from alembic import command

from footfall.storage import migrate
from footfall.storage.partitions import (
    DEFAULT,
    ensure_partitions,
    list_partitions,
    month_start,
    partition_name,
)
from tests.ops.test_partitions import _insert, _row
from tests.ops.test_partitions import footfall as run_footfall
from tests.support import ServerThread, collector_settings, make_site, query, scratch_database

BEFORE = "20261201_1020"  # events partitioned by received_at


def _relations(plan: Any) -> set[str]:
    """Every table a JSON plan reads."""
    found: set[str] = set()
    if isinstance(plan, dict):
        if "Relation Name" in plan:
            found.add(plan["Relation Name"])
        for value in plan.values():
            found |= _relations(value)
    elif isinstance(plan, list):
        for value in plan:
            found |= _relations(value)
    return found


def _explain(dsn: str, sql: str, params: tuple[Any, ...]) -> set[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        (plan,) = conn.execute("EXPLAIN (FORMAT JSON) " + sql, params).fetchone()
    return _relations(plan if not isinstance(plan, str) else json.loads(plan))


def test_one_month_query_reads_one_partition(admin_dsn: str) -> None:
    with scratch_database(admin_dsn) as dsn:
        site_id, _ = make_site(dsn)
        now = datetime.now(UTC)
        months = [month_start(now, -k) for k in range(4)]
        with psycopg.connect(dsn, autocommit=True) as conn:
            for start in months:
                ensure_partitions(conn, months_ahead=0, now=start)
        rows = [
            _row(site_id, f"m-{k}-{i}", now, start + timedelta(days=1, hours=i))
            for k, start in enumerate(months)
            for i in range(5)
        ]
        _insert(dsn, rows)
        # An outlier in DEFAULT: the one-month query must not read it either.
        _insert(dsn, [_row(site_id, "ancient", now, datetime(2001, 1, 1, tzinfo=UTC))])
        assert query(dsn, "SELECT tableoid::regclass::text AS t FROM events"
                     " WHERE message_id = 'ancient'") == [{"t": DEFAULT}]  # fmt: skip
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("ANALYZE events")

        target = months[2]
        bounds = (site_id, target, month_start(target, 1))
        one_month = 'WHERE site_id = %s AND "timestamp" >= %s AND "timestamp" < %s'
        assert _explain(dsn, f"SELECT count(*) FROM events {one_month}", bounds) == {
            partition_name(target)
        }
        # The data team's view prunes the same way (its person joins are not read).
        assert _explain(
            dsn, f"SELECT count(*), max(event) FROM analytics.events {one_month}", bounds
        ) == {partition_name(target)}
        counted = query(dsn, f"SELECT count(*) AS n FROM events {one_month}", bounds)
        assert counted == [{"n": 5}]
        # Without a time range every partition is read: the test can tell.
        everything = _explain(dsn, "SELECT count(*) FROM events WHERE site_id = %s", (site_id,))
        assert {partition_name(m) for m in months} | {DEFAULT} <= everything


def _send(base_url: str, key: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    response = httpx.post(
        base_url + "/v1/batch", json={"batch": messages}, auth=(key, ""), timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def test_backdated_and_clamped_events_stored_once_in_their_partition(admin_dsn: str) -> None:
    with scratch_database(admin_dsn) as dsn:
        now = datetime.now(UTC)
        last_month = month_start(now, -1) + timedelta(days=10)
        with psycopg.connect(dsn, autocommit=True) as conn:
            ensure_partitions(conn, months_ahead=0, now=last_month)
        site_id, key = make_site(dsn, settings={"allow_undeclared_events": True})
        server = ServerThread(collector_settings(dsn)).start()
        try:
            ancient = datetime(2019, 5, 17, 12, tzinfo=UTC)
            messages = [
                # Queued offline and sent now: its own clock is right, the event is old.
                {"type": "track", "event": "Late", "messageId": "late",
                 "anonymousId": "a1", "timestamp": _iso(last_month), "sentAt": _iso(now)},
                # A device clock a year ahead: the skew correction brings it to now.
                {"type": "track", "event": "Skewed", "messageId": "skewed",
                 "anonymousId": "a1", "timestamp": _iso(now + timedelta(days=365)),
                 "sentAt": _iso(now + timedelta(days=365, seconds=2))},
                # No sentAt and a future timestamp: clamped to the arrival time.
                {"type": "track", "event": "Future", "messageId": "future",
                 "anonymousId": "a1", "timestamp": _iso(now + timedelta(days=90))},
                # An import of history: before every partition, so DEFAULT.
                {"type": "track", "event": "Imported", "messageId": "imported",
                 "anonymousId": "a1", "timestamp": _iso(ancient)},
            ]  # fmt: skip
            first = _send(server.base_url, key, messages)
            retry = _send(server.base_url, key, messages)  # the client never saw the answer
            assert (first["accepted"], retry["accepted"], retry["duplicates"]) == (4, 0, 4)
            stored = {
                r["message_id"]: r
                for r in query(
                    dsn,
                    'SELECT message_id, "timestamp", received_at, tableoid::regclass::text AS part'
                    " FROM events WHERE site_id = %s",
                    (site_id,),
                )
            }
            assert sorted(stored) == ["future", "imported", "late", "skewed"]
            late, skewed, future = stored["late"], stored["skewed"], stored["future"]
            assert late["timestamp"] < month_start(now)
            assert late["part"] == partition_name(late["timestamp"])
            assert skewed["timestamp"] <= skewed["received_at"]
            assert skewed["received_at"] - skewed["timestamp"] <= timedelta(seconds=3)
            assert future["timestamp"] == future["received_at"]
            for row in (skewed, future):
                assert row["part"] == partition_name(row["timestamp"])
            assert stored["imported"]["part"] == DEFAULT
            assert stored["imported"]["timestamp"] == ancient

            # The CLI moves the outlier into a partition of its month; still deduplicated.
            dry = run_footfall("partitions", "split-default", "--dry-run", dsn=dsn)
            assert f"would move 1 rows of events_default into {partition_name(ancient)}" in dry
            assert partition_name(ancient) not in {p.name for p in _partitions(dsn)}
            done = run_footfall("partitions", "split-default", dsn=dsn)
            assert f"moved 1 rows of events_default into {partition_name(ancient)}" in done
            assert "events_default is empty" in run_footfall("partitions", "split-default", dsn=dsn)
            part = query(
                dsn,
                "SELECT tableoid::regclass::text AS p FROM events WHERE message_id = 'imported'",
            )
            assert part == [{"p": partition_name(ancient)}]
            again = _send(server.base_url, key, messages)
            assert (again["accepted"], again["duplicates"]) == (0, 4)
            total = query(dsn, "SELECT count(*) AS n FROM events WHERE site_id = %s", (site_id,))
            assert total == [{"n": 4}]
        finally:
            server.stop()


def _partitions(dsn: str) -> list[Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return list_partitions(conn)


def _count(dsn: str, sql: str) -> int:
    return int(query(dsn, sql)[0]["n"])


def _jit_setting(dsn: str) -> list[str]:
    """The database's own setting of jit (ALTER DATABASE … SET), if any."""
    rows = query(
        dsn,
        "SELECT unnest(setconfig) AS s FROM pg_db_role_setting"
        " WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND setrole = 0",
    )
    return [r["s"] for r in rows if r["s"].startswith("jit=")]


def test_migration_to_event_time_keeps_every_row(admin_dsn: str) -> None:
    """From partitions by arrival time, populated over several months, and back."""
    with scratch_database(admin_dsn) as dsn:
        config = migrate.alembic_config(dsn)
        command.downgrade(config, BEFORE)
        site_id, _ = make_site(dsn)
        now = datetime.now(UTC)
        # Everything arrived this month; the events happened over four months.
        happened = [month_start(now, -k) + timedelta(days=2, hours=k) for k in range(4)]
        with psycopg.connect(dsn, autocommit=True) as conn:
            for k, at in enumerate(happened * 30):
                message_id = f"m-{k}"
                conn.execute(
                    "INSERT INTO events (site_id, message_id, type, timestamp, received_at)"
                    " VALUES (%s, %s, 'track', %s, %s)",
                    (site_id, message_id, at, now),
                )
                conn.execute(
                    "INSERT INTO event_ids (site_id, message_id, received_at) VALUES (%s, %s, %s)",
                    (site_id, message_id, now),
                )
            # The key of an erased event stays (a retry of it must not come back).
            conn.execute(
                "INSERT INTO event_ids (site_id, message_id, received_at) VALUES (%s, 'erased', %s)",
                (site_id, now - timedelta(days=3)),
            )
            before = conn.execute(
                "SELECT tableoid::regclass::text, count(*) FROM events GROUP BY 1"
            ).fetchall()
        assert before == [(partition_name(now), 120)]

        migrate.upgrade(dsn)
        assert migrate.current_revision(dsn) == migrate.head_revision()
        assert _count(dsn, "SELECT count(DISTINCT message_id) AS n FROM events") == 120
        parts = query(
            dsn, "SELECT tableoid::regclass::text AS part, count(*) AS n FROM events GROUP BY 1"
        )
        assert {r["part"]: r["n"] for r in parts} == {partition_name(m): 30 for m in happened}
        mismatched = _count(
            dsn,
            "SELECT count(*) AS n FROM event_ids k LEFT JOIN events e USING (site_id, message_id)"
            ' WHERE e."timestamp" IS DISTINCT FROM k."timestamp"',
        )
        assert mismatched == 1  # only the erased one, which has no row
        erased = query(dsn, "SELECT \"timestamp\" AS t FROM event_ids WHERE message_id = 'erased'")
        assert erased == [{"t": now - timedelta(days=3)}]
        # Deduplication still holds for old rows and the erased key.
        assert _insert(
            dsn, [_row(site_id, "m-3", now, now), _row(site_id, "erased", now, now)]
        ) == (set())
        options = query(
            dsn, "SELECT reloptions FROM pg_class WHERE relname = %s", (partition_name(now),)
        )
        assert "autovacuum_vacuum_insert_scale_factor=0.02" in options[0]["reloptions"]
        assert _jit_setting(dsn) == ["jit=off"]

        # And back: partitions by arrival time again, the same rows and keys.
        command.downgrade(config, BEFORE)
        parts = query(
            dsn, "SELECT tableoid::regclass::text AS part, count(*) AS n FROM events GROUP BY 1"
        )
        assert parts == [{"part": partition_name(now), "n": 120}]
        assert _count(dsn, "SELECT count(*) AS n FROM event_ids WHERE received_at = now()") == 0
        assert _count(dsn, "SELECT count(*) AS n FROM event_ids") == 121
        assert _jit_setting(dsn) == []
        migrate.upgrade(dsn)
        assert _count(dsn, "SELECT count(*) AS n FROM events") == 120
        assert _count(dsn, "SELECT count(*) AS n FROM event_ids") == 121


def test_retention_drops_months_and_their_keys(admin_dsn: str) -> None:
    """Dropping a month by event time drops its keys: the end of the deduplication window."""
    with scratch_database(admin_dsn) as dsn:
        site_id, _ = make_site(dsn)
        now = datetime.now(UTC)
        old = month_start(now, -6) + timedelta(days=3)
        with psycopg.connect(dsn, autocommit=True) as conn:
            ensure_partitions(conn, months_ahead=0, now=old)
        # Arrived recently, happened six months ago: the month of the event decides.
        _insert(dsn, [_row(site_id, "old", now, old), _row(site_id, "new", now, now)])
        out = run_footfall("partitions", "drop-before", f"{month_start(now, -5):%Y-%m-%d}", dsn=dsn)
        assert f"dropped: {partition_name(old)}" in out
        assert "1 deduplication keys" in out
        assert [r["message_id"] for r in query(dsn, "SELECT message_id FROM event_ids")] == ["new"]
        # Past the window a retry is a new message (documented), within it a duplicate.
        assert _insert(dsn, [_row(site_id, "old", now, old)]) == {(site_id, "old")}
        assert _insert(dsn, [_row(site_id, "new", now, now)]) == set()
