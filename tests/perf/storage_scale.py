"""Storage figures at scale: table and index sizes and the indexed queries' times (issue 11).

Builds a scratch database with the real migrations, fills it with SQL
``generate_series`` (default 10,000,000 events over three months, two sites),
with the persons, identities, sessions and deduplication keys that go with
them, then prints sizes and the times of the data team's indexed queries:
one person's events in a month, one day of a site, one session.

    python -m tests.perf.storage_scale [--events N] [--keep]

Also run (with a smaller N) by ``pytest -m perf tests/perf/test_storage_scale.py``.
Figures from a run are in docs/operations.md ("Figures at 10 million events").
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from footfall.storage.partitions import ensure_partitions, month_start
from tests.support import LOCAL_PG, make_site, reader_role, with_database

START = datetime(2026, 9, 1, tzinfo=UTC)
DAYS = 91  # September to November 2026: three monthly partitions
EVENTS_PER_SESSION = 8

# One session of EVENTS_PER_SESSION events every DAYS/sessions, in time order (as
# ingestion writes them); visitor v of session s is (s * 7919) % visitors; every
# 5th visitor is on the second site; every 10th (v % 10 = 1) is logged in and
# sends a user id on half of its events.
FILL_EVENTS = """
INSERT INTO events (site_id, message_id, type, event, "timestamp", original_timestamp, sent_at,
    received_at, anonymous_id, user_id, pii_key_id, session_id, page_url, page_path, page_title,
    page_referrer, library_name, library_version, user_agent, locale, timezone, context,
    properties, device_type, browser_name, browser_version, os_name, os_version, geo_country,
    geo_region, geo_city, geo_timezone)
SELECT CASE WHEN v %% 5 = 0 THEN %(site_b)s ELSE %(site_a)s END,
       md5(g::text),
       CASE WHEN k = 0 THEN 'page' ELSE 'track' END,
       CASE WHEN k = 0 THEN NULL
            ELSE (ARRAY['Element Clicked', 'Scroll Depth Reached', 'Element Hovered',
                        'Page Engaged', 'Element Viewed', 'Video Progress',
                        'Form Started'])[k] END,
       ts, ts, ts + interval '1 second', ts + interval '1 second',
       'anon-' || v,
       CASE WHEN v %% 10 = 1 AND g %% 2 = 0 THEN md5('user-' || v) END,
       CASE WHEN v %% 10 = 1 AND g %% 2 = 0 THEN 'k1' END,
       's-' || s,
       'https://shop.example/p/' || (g %% 500), '/p/' || (g %% 500), 'Product ' || (g %% 500),
       CASE WHEN k = 0 THEN 'https://www.google.com/' END,
       'footfall.js', '1.0.0',
       'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)'
           || ' Chrome/124.0.0.0 Safari/537.36',
       'en-GB', 'Europe/London',
       jsonb_build_object('library', jsonb_build_object('name', 'footfall.js', 'version', '1.0.0'),
                          'sessionId', 's-' || s, 'locale', 'en-GB',
                          'page', jsonb_build_object('path', '/p/' || (g %% 500))),
       jsonb_build_object('selector', '#b' || (g %% 40), 'depth_percent', 25 * (g %% 4 + 1)),
       'desktop', 'Chrome', '124.0.6367', 'Windows', '10', 'GB', 'GB-ENG', 'London',
       'Europe/London'
FROM (
    SELECT g, g / %(per)s AS s, (g %% %(per)s)::int AS k,
           ((g / %(per)s) * 7919) %% %(visitors)s AS v,
           %(start)s::timestamptz
               + (g / %(per)s) * (%(seconds)s::float8 / %(sessions)s) * interval '1 second'
               + (g %% %(per)s) * interval '40 seconds' AS ts
    FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g
) AS rows
"""

FILL_SESSIONS = """
INSERT INTO sessions (site_id, session_id, anonymous_id, user_id, first_event_at,
    first_message_id, last_event_at, last_message_id, duration_ms, event_count, page_count,
    click_count, entry_at, entry_message_id, entry_page, exit_at, exit_message_id, exit_page,
    device_type, browser_name, os_name, geo_country, timezone)
SELECT CASE WHEN v %% 5 = 0 THEN %(site_b)s ELSE %(site_a)s END, 's-' || s, 'anon-' || v,
       CASE WHEN v %% 10 = 1 THEN md5('user-' || v) END,
       t0, md5((s * %(per)s)::text), t0 + (%(per)s - 1) * interval '40 seconds',
       md5((s * %(per)s + %(per)s - 1)::text), (%(per)s - 1) * 40000, %(per)s, 1, 1,
       t0, md5((s * %(per)s)::text), '/p/' || ((s * %(per)s) %% 500),
       t0, md5((s * %(per)s)::text), '/p/' || ((s * %(per)s) %% 500),
       'desktop', 'Chrome', 'Windows', 'GB', 'Europe/London'
FROM (
    SELECT s, (s * 7919) %% %(visitors)s AS v,
           %(start)s::timestamptz
               + s * (%(seconds)s::float8 / %(sessions)s) * interval '1 second' AS t0
    FROM generate_series(0::bigint, %(sessions)s - 1) AS s
) AS rows
"""

# A person per visitor (id v + 1), its anonymous id, and the user id of logged-in ones.
FILL_PERSONS = """
INSERT INTO persons (id, site_id, is_identified)
SELECT v + 1, CASE WHEN v %% 5 = 0 THEN %(site_b)s ELSE %(site_a)s END, v %% 10 = 1
FROM generate_series(0, %(visitors)s - 1) AS v;
INSERT INTO identities (site_id, kind, value, person_id)
SELECT CASE WHEN v %% 5 = 0 THEN %(site_b)s ELSE %(site_a)s END, 'anonymous', 'anon-' || v, v + 1
FROM generate_series(0, %(visitors)s - 1) AS v;
INSERT INTO identities (site_id, kind, value, person_id)
SELECT %(site_a)s, 'user', md5('user-' || v), v + 1
FROM generate_series(0, %(visitors)s - 1) AS v WHERE v %% 10 = 1;
SELECT setval(pg_get_serial_sequence('persons', 'id'), %(visitors)s + 1)
"""


def _timed(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> float:
    started = time.perf_counter()
    conn.execute(sql, params)
    return time.perf_counter() - started


def _mb(value: int) -> str:
    return f"{value / 2**20:,.0f} MB"


def _indexes(conn: psycopg.Connection[Any], table: str) -> list[tuple[str, str]]:
    """(name, definition) of a table's indexes other than its primary key."""
    return list(
        conn.execute(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE i.indrelid = %s::regclass AND NOT i.indisprimary",
            (table,),
        ).fetchall()
    )


def fill(dsn: str, events: int) -> dict[str, Any]:
    """Load ``events`` events and what goes with them; returns the dataset's parameters."""
    sessions = max(1, events // EVENTS_PER_SESSION)
    visitors = max(10, sessions // 3)
    site_a, _ = make_site(dsn, name="perf-a")
    site_b, _ = make_site(dsn, name="perf-b")
    params = {
        "site_a": site_a,
        "site_b": site_b,
        "per": EVENTS_PER_SESSION,
        "sessions": sessions,
        "visitors": visitors,
        "start": START,
        "seconds": DAYS * 86400,
    }
    timings: dict[str, float] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for month in range(3):
            ensure_partitions(conn, months_ahead=0, now=month_start(START, month))
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET synchronous_commit = off")
        # Loading without indexes and building them after is how a bulk load is done;
        # the indexes are the migrations' own, recreated from the catalog.
        event_indexes = _indexes(conn, "events")
        key_indexes = _indexes(conn, "event_ids")
        for name, _ in event_indexes + key_indexes:
            conn.execute(f"DROP INDEX {name}")
        conn.execute("ALTER TABLE events DROP CONSTRAINT pk_events")
        conn.execute("ALTER TABLE event_ids DROP CONSTRAINT pk_event_ids")
        started = time.perf_counter()
        step = 1_000_000
        for lo in range(0, events, step):
            conn.execute(FILL_EVENTS, {**params, "lo": lo, "hi": min(events, lo + step) - 1})
            print(f"  {min(events, lo + step):,} events", file=sys.stderr, flush=True)
        timings["load events"] = time.perf_counter() - started
        timings["load keys"] = _timed(
            conn,
            'INSERT INTO event_ids (site_id, message_id, "timestamp")'
            ' SELECT site_id, message_id, "timestamp" FROM events',
        )
        started = time.perf_counter()
        conn.execute(
            'ALTER TABLE events ADD CONSTRAINT pk_events PRIMARY KEY (site_id, message_id, "timestamp")'
        )
        conn.execute(
            "ALTER TABLE event_ids ADD CONSTRAINT pk_event_ids PRIMARY KEY (site_id, message_id)"
        )
        for _, definition in event_indexes + key_indexes:
            # pg_get_indexdef prints a partitioned table's index "ON ONLY": not cascading.
            conn.execute(definition.replace(" ON ONLY ", " ON "))
        timings["build indexes"] = time.perf_counter() - started
        timings["load sessions"] = _timed(conn, FILL_SESSIONS, params)
        started = time.perf_counter()
        for statement in FILL_PERSONS.split(";"):
            conn.execute(statement, params)
        timings["load persons"] = time.perf_counter() - started
        timings["vacuum analyze"] = _timed(conn, "VACUUM ANALYZE")
    params["timings"] = timings
    return params


def sizes(dsn: str) -> list[tuple[str, int, int, int]]:
    """(table, rows, heap+toast bytes, index bytes) for the big tables; events summed."""
    out = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in ("events", "event_ids", "sessions", "persons", "identities"):
            parts = [
                r[0]
                for r in conn.execute(
                    "SELECT c.oid::regclass::text FROM pg_class c WHERE c.oid = %s::regclass"
                    " AND c.relkind = 'r' UNION ALL SELECT i.inhrelid::regclass::text"
                    " FROM pg_inherits i WHERE i.inhparent = %s::regclass",
                    (table, table),
                )
            ]
            (rows,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            heap = index = 0
            for part in parts:
                h, x = conn.execute(
                    "SELECT pg_table_size(oid), pg_indexes_size(oid)"
                    " FROM pg_class WHERE oid = %s::regclass",
                    (part,),
                ).fetchone()
                heap, index = heap + h, index + x
            out.append((table, rows, heap, index))
    return out


def index_sizes(dsn: str) -> list[tuple[str, int]]:
    """Each index of events (summed over the partitions) and of event_ids."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT p.relname, sum(pg_relation_size(c.oid))::bigint"
            " FROM pg_class p JOIN pg_index pi ON pi.indexrelid = p.oid"
            " LEFT JOIN pg_inherits h ON h.inhparent = p.oid"
            " JOIN pg_class c ON c.oid = COALESCE(h.inhrelid, p.oid)"
            " WHERE pi.indrelid IN ('events'::regclass, 'event_ids'::regclass)"
            " GROUP BY 1 ORDER BY 2 DESC"
        ).fetchall()
    return [(name, int(size)) for name, size in rows]


def queries(params: dict[str, Any]) -> list[tuple[str, str, tuple[Any, ...]]]:
    """(what, SQL, parameters) of the data team's indexed queries on this dataset."""
    site = params["site_a"]
    october = month_start(START, 1)
    november = month_start(START, 2)
    day = START + timedelta(days=45)
    # A logged-in visitor (v % 10 = 1) on site a: person v + 1.
    visitor = 1 + 10 * (params["visitors"] // 20)
    s = params["sessions"] // 2
    while (s * 7919) % params["visitors"] % 5 == 0:  # a session of site a
        s += 1
    session = f"s-{s}"
    return [
        (
            "one person's events in a month (analytics.person_events)",
            "SELECT * FROM analytics.person_events(%s, %s, %s)",
            (visitor + 1, october, november),
        ),
        (
            "one day of a site: events by name (events, (site_id, timestamp))",
            'SELECT event, count(*) FROM events WHERE site_id = %s AND "timestamp" >= %s'
            ' AND "timestamp" < %s GROUP BY 1',
            (site, day, day + timedelta(days=1)),
        ),
        (
            "one day of a site: visitors (analytics.events)",
            "SELECT count(DISTINCT anonymous_id) FROM analytics.events WHERE site_id = %s"
            ' AND "timestamp" >= %s AND "timestamp" < %s',
            (site, day, day + timedelta(days=1)),
        ),
        (
            "one session's events, bounded by its sessions row",
            "SELECT e.* FROM analytics.events e WHERE e.site_id = %s AND e.session_id = %s"
            ' AND e."timestamp" >= (SELECT first_event_at FROM analytics.sessions'
            " WHERE site_id = %s AND session_id = %s)"
            ' AND e."timestamp" <= (SELECT last_event_at FROM analytics.sessions'
            " WHERE site_id = %s AND session_id = %s)",
            (site, session, site, session, site, session),
        ),
        (
            "one session's row (sessions primary key)",
            "SELECT * FROM analytics.sessions WHERE site_id = %s AND session_id = %s",
            (site, session),
        ),
        (
            "one session's events by session_id alone (no time bound: reads every month)",
            "SELECT e.* FROM events e WHERE e.site_id = %s AND e.session_id = %s",
            (site, session),
        ),
    ]


def time_queries(dsn: str, params: dict[str, Any], runs: int = 5) -> list[dict[str, Any]]:
    results = []
    role = reader_role(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for what, sql, args in queries(params):
            # As the data team runs them: the reader role (raw-table queries as owner).
            as_reader = "analytics." in sql
            if as_reader:
                conn.execute(f'SET ROLE "{role}"')
            rows = len(conn.execute(sql, args).fetchall())  # warm-up
            times = [_timed(conn, sql, args) * 1000 for _ in range(runs)]
            if as_reader:
                conn.execute("RESET ROLE")
            plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, args).fetchone()
            top = plan[0][0]
            results.append(
                {
                    "what": what,
                    "rows": rows,
                    "median_ms": statistics.median(times),
                    "min_ms": min(times),
                    "execution_ms": top["Execution Time"],
                    "shared_hit": top["Plan"].get("Shared Hit Blocks", 0),
                    "shared_read": top["Plan"].get("Shared Read Blocks", 0),
                    "relations": sorted(_relations(top["Plan"])),
                }
            )
    return results


def _relations(plan: dict[str, Any]) -> set[str]:
    """Tables the plan read (nodes pruned at run time show no loops)."""
    read = plan.get("Actual Loops", 1) > 0
    found = {plan["Relation Name"]} if "Relation Name" in plan and read else set()
    for child in plan.get("Plans", []):
        found |= _relations(child)
    return found


def report(params: dict[str, Any], dsn: str) -> dict[str, Any]:
    with psycopg.connect(dsn) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
    table_sizes = sizes(dsn)
    idx = index_sizes(dsn)
    timed = time_queries(dsn, params)
    print(f"\nPostgreSQL {version}; {params['events']:,} events, {params['sessions']:,} sessions,")
    print(f"{params['visitors']:,} visitors over {DAYS} days ({START:%Y-%m-%d}), 2 sites")
    for step, seconds in params["timings"].items():
        print(f"  {step}: {seconds:.1f} s")
    print("\n| table | rows | table (heap + TOAST) | indexes | total |")
    print("|---|---|---|---|---|")
    for table, rows, heap, index in table_sizes:
        print(f"| `{table}` | {rows:,} | {_mb(heap)} | {_mb(index)} | {_mb(heap + index)} |")
    print("\n| index | size |")
    print("|---|---|")
    for name, size in idx:
        print(f"| `{name}` | {_mb(size)} |")
    print("\n| query | rows | median | execution (EXPLAIN ANALYZE) | relations read |")
    print("|---|---|---|---|---|")
    for r in timed:
        rels = ", ".join(r["relations"])
        print(
            f"| {r['what']} | {r['rows']} | {r['median_ms']:.2f} ms |"
            f" {r['execution_ms']:.2f} ms | {rels} |"
        )
    return {"sizes": table_sizes, "indexes": idx, "queries": timed, "version": version}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--admin-dsn", default=LOCAL_PG)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args(argv)
    from footfall.storage import migrate

    name = f"footfall_perf_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = with_database(args.admin_dsn, name)
    role = None
    try:
        migrate.upgrade(dsn)
        role = reader_role(dsn)
        started = time.perf_counter()
        params = fill(dsn, args.events)
        params["events"] = args.events
        print(f"filled in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        return report(params, dsn)
    finally:
        if args.keep:
            print(f"kept database {name}", file=sys.stderr)
        else:
            with psycopg.connect(args.admin_dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                if role:
                    conn.execute(f'DROP ROLE IF EXISTS "{role}"')


if __name__ == "__main__":
    main()
