"""Partitioned events: dedup across months, partitions ahead, retention, the migration."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from alembic import command

from footfall.pipeline.normalize import to_row
from footfall.pipeline.types import EventRow, RequestContext, Site
from footfall.storage import migrate
from footfall.storage.partitions import (
    DEFAULT,
    drop_before,
    ensure_partitions,
    list_partitions,
    month_start,
    partition_name,
)
from footfall.storage.writer import store_messages
from tests.cli.test_cli import footfall as run_footfall
from tests.support import make_site, query, scratch_database

BEFORE_PARTITIONING = "20261122_1400"


def _row(site_id: int, message_id: str, received_at: datetime, timestamp: datetime) -> EventRow:
    message = {
        "type": "track",
        "event": "Signed Up",
        "messageId": message_id,
        "anonymousId": "anon-1",
        "timestamp": timestamp.isoformat(),
    }
    ctx = RequestContext(site=Site(site_id, "s", "k"), received_at=received_at)
    return to_row(message, ctx, None, message_id)


def _insert(dsn: str, rows: list[EventRow]) -> set[tuple[int, str]]:
    async def run() -> set[tuple[int, str]]:
        async with await psycopg.AsyncConnection.connect(dsn) as conn, conn.transaction():
            return await store_messages(conn, rows, [])

    return asyncio.run(run())


def _partition_of(dsn: str, message_id: str) -> list[str]:
    rows = query(
        dsn,
        "SELECT tableoid::regclass::text AS part FROM events WHERE message_id = %s",
        (message_id,),
    )
    return [r["part"] for r in rows]


def test_dedup_holds_across_partitions(database: str) -> None:
    site_id, _ = make_site(database)
    now = datetime.now(UTC)
    backdated = now - timedelta(days=40)
    with psycopg.connect(database, autocommit=True) as conn:
        ensure_partitions(conn, months_ahead=0, now=backdated)
    next_month = month_start(now, 1) + timedelta(days=3)
    message_id = str(uuid.uuid4())
    first = _row(site_id, message_id, now, backdated)
    # The retry arrives next month, with another (client-side) timestamp.
    retry = _row(site_id, message_id, next_month, next_month - timedelta(minutes=1))
    assert _insert(database, [first]) == {(site_id, message_id)}
    assert _insert(database, [retry]) == set()
    # Twice in one statement, with timestamps in different months: stored once too.
    both_id = str(uuid.uuid4())
    pair = [_row(site_id, both_id, now, now), _row(site_id, both_id, now, backdated)]
    assert _insert(database, pair) == {(site_id, both_id)}

    # Partitioned by event time: the backdated row is in its own month's partition.
    assert _partition_of(database, message_id) == [partition_name(backdated)]
    assert _partition_of(database, both_id) == [partition_name(now)]
    keys = query(
        database,
        'SELECT message_id, "timestamp" FROM event_ids WHERE site_id = %s ORDER BY 1',
        (site_id,),
    )
    stored = {
        r["message_id"]: r["timestamp"]
        for r in query(
            database, 'SELECT message_id, "timestamp" FROM events WHERE site_id = %s', (site_id,)
        )
    }
    assert {r["message_id"]: r["timestamp"] for r in keys} == stored
    assert len(stored) == 2


def test_partitions_ahead_default_and_retention(admin_dsn: str) -> None:
    with scratch_database(admin_dsn) as dsn:
        site_id, _ = make_site(dsn)
        now = datetime.now(UTC)
        names = [p.name for p in list_partitions_of(dsn)]
        assert names[-1] == DEFAULT
        assert {partition_name(month_start(now, i)) for i in range(3)} <= set(names)

        # A row from a bad clock far ahead lands in DEFAULT ...
        far = month_start(now, 14) + timedelta(days=2)
        _insert(dsn, [_row(site_id, "far", far, far)])
        assert _partition_of(dsn, "far") == [DEFAULT]
        # ... and moves to its month's partition when that is created.
        with psycopg.connect(dsn, autocommit=True) as conn:
            created = ensure_partitions(conn, months_ahead=0, now=far)
            assert created == [partition_name(far)]
            assert ensure_partitions(conn, months_ahead=0, now=far) == []
        assert _partition_of(dsn, "far") == [partition_name(far)]

        # Retention: an old month, filled, then dropped whole with its dedup keys.
        old = month_start(now, -5) + timedelta(days=1)
        with psycopg.connect(dsn, autocommit=True) as conn:
            ensure_partitions(conn, months_ahead=0, now=old)
        _insert(dsn, [_row(site_id, f"old-{i}", old, old) for i in range(5)])
        _insert(dsn, [_row(site_id, "recent", now, now)])
        cutoff = month_start(now, -4)
        with psycopg.connect(dsn, autocommit=True) as conn:
            dry = drop_before(conn, cutoff, dry_run=True)
            assert [p.name for p in dry.dropped] == [partition_name(old)]
            assert partition_name(old) in {p.name for p in list_partitions(conn)}
            report = drop_before(conn, cutoff)
        assert [p.name for p in report.dropped] == [partition_name(old)]
        assert report.keys_deleted == 5
        assert partition_name(old) not in {p.name for p in list_partitions_of(dsn)}
        remaining = query(dsn, "SELECT message_id FROM events ORDER BY message_id")
        assert [r["message_id"] for r in remaining] == ["far", "recent"]
        assert query(dsn, "SELECT count(*) AS n FROM event_ids")[0]["n"] == 2


def list_partitions_of(dsn: str) -> list:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return list_partitions(conn)


def footfall(*args: str, dsn: str) -> str:
    return run_footfall(*args, dsn=dsn).stdout


def test_partitions_cli(admin_dsn: str) -> None:
    with scratch_database(admin_dsn) as dsn:
        now = datetime.now(UTC)
        out = footfall("partitions", "ensure", "--months", "4", dsn=dsn)
        assert partition_name(month_start(now, 4)) in out
        assert partition_name(month_start(now, 3)) in out
        assert "nothing" in footfall("partitions", "ensure", "--months", "4", dsn=dsn)
        listing = footfall("partitions", "list", dsn=dsn)
        assert f"{partition_name(now)}\t{month_start(now):%Y-%m-%d}" in listing
        assert "events_default\tDEFAULT" in listing

        cutoff = f"{month_start(now, 2):%Y-%m-%d}"
        dry = footfall("partitions", "drop-before", cutoff, "--dry-run", dsn=dsn)
        assert f"would drop: {partition_name(now)}, {partition_name(month_start(now, 1))}" in dry
        done = footfall("partitions", "drop-before", cutoff, dsn=dsn)
        assert "dropped:" in done
        assert partition_name(now) not in footfall("partitions", "list", dsn=dsn)


def _count(dsn: str, sql: str) -> int:
    return int(query(dsn, sql)[0]["n"])


def test_migration_moves_a_populated_table(admin_dsn: str) -> None:
    """Downgrade to before partitioning, fill the plain table, upgrade: every row moves.

    A view in another schema, with a grant to a role, stands for the analytics
    views and reader role of the previous migration: they must keep working.
    """
    role = f"footfall_reader_{uuid.uuid4().hex[:8]}"
    with scratch_database(admin_dsn) as dsn:
        config = migrate.alembic_config(dsn)
        command.downgrade(config, BEFORE_PARTITIONING)
        site_id, _ = make_site(dsn)
        now = datetime.now(UTC)
        months = [month_start(now, -k) + timedelta(days=2) for k in range(4)]
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert conn.execute("SELECT to_regclass('event_ids')").fetchone() == (None,)
            for k, received in enumerate(months * 25):
                conn.execute(
                    "INSERT INTO events (site_id, message_id, type, timestamp, received_at)"
                    " VALUES (%s, %s, 'track', %s, %s)",
                    (site_id, f"m-{k}", received - timedelta(hours=1), received),
                )
            conn.execute(f"CREATE ROLE {role}")
            conn.execute("CREATE SCHEMA IF NOT EXISTS ops_test")
            conn.execute(
                "CREATE VIEW ops_test.monthly AS SELECT site_id,"
                " date_trunc('month', received_at) AS month, count(*) AS n"
                " FROM events GROUP BY 1, 2"
            )
            conn.execute(f"GRANT USAGE ON SCHEMA ops_test TO {role}")
            conn.execute(f"GRANT SELECT ON ops_test.monthly TO {role}")
            conn.execute(f"GRANT SELECT (site_id, type) ON events TO {role}")
        try:
            migrate.upgrade(dsn)
            assert migrate.current_revision(dsn) == migrate.head_revision()
            assert _count(dsn, "SELECT count(*) AS n FROM events") == 100
            assert _count(dsn, "SELECT count(DISTINCT message_id) AS n FROM events") == 100
            assert _count(dsn, "SELECT count(*) AS n FROM event_ids") == 100
            parts = query(
                dsn,
                "SELECT tableoid::regclass::text AS part, count(*) AS n FROM events GROUP BY 1",
            )
            assert {r["part"]: r["n"] for r in parts} == {partition_name(m): 25 for m in months}
            kind = query(dsn, "SELECT relkind FROM pg_class WHERE oid = 'events'::regclass")
            assert kind == [{"relkind": "p"}]
            # The view reads the new table (a new row shows up in it), and grants survive.
            _insert(dsn, [_row(site_id, "after", now, now)])
            view = query(dsn, "SELECT sum(n)::int AS n FROM ops_test.monthly")
            assert view == [{"n": 101}]
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f"SET ROLE {role}")
                assert conn.execute("SELECT sum(n) FROM ops_test.monthly").fetchone() == (101,)
                assert conn.execute("SELECT count(type) FROM events").fetchone() == (101,)

            # And back: the plain table with its old primary key, the same rows.
            command.downgrade(config, BEFORE_PARTITIONING)
            assert _count(dsn, "SELECT count(*) AS n FROM events") == 101
            assert query(dsn, "SELECT sum(n)::int AS n FROM ops_test.monthly") == [{"n": 101}]
            kind = query(dsn, "SELECT relkind FROM pg_class WHERE oid = 'events'::regclass")
            assert kind == [{"relkind": "r"}]
            pk = query(
                dsn,
                "SELECT pg_get_constraintdef(oid) AS d FROM pg_constraint"
                " WHERE conrelid = 'events'::regclass AND contype = 'p'",
            )
            assert pk == [{"d": "PRIMARY KEY (site_id, message_id)"}]
            migrate.upgrade(dsn)
            assert _count(dsn, "SELECT count(*) AS n FROM event_ids") == 101
        finally:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("DROP SCHEMA IF EXISTS ops_test CASCADE")
                conn.execute(f"REVOKE ALL ON events FROM {role}")
                conn.execute(f"DROP ROLE {role}")
