"""A database already holding N events (10 million by default), cached as a template.

The benchmark's growth mode (``python -m tests.perf.bench --growth``) measures
ingest into a site that already stores that many events. Loading them takes
minutes, so the loaded database is kept on the server as a template named after
what it holds (``footfall_bench_<N>_<version>``) and each run works in a copy
(``CREATE DATABASE ... TEMPLATE ... STRATEGY FILE_COPY``, a file copy), which it
drops afterwards. The copy is migrated to head, so a template built before a new
migration still serves. ``--drop-cache`` removes the template.

What is loaded (SQL ``generate_series``, the data set of ``storage_scale.py``):
events of two sites (80 % / 20 %; the benchmark then writes to the first), a
third in each of the two months before the template was built and a third in
its own month up to then (so the partition the writer writes to is as full as
in the middle of a month), in time order within each; a key per event in
``event_ids``; sessions of 8 events; a visitor (person, anonymous identity,
profile) per three sessions, every tenth logged in with a user identity; a
``person_sessions`` row per session. Message ids are md5 hashes, so the keys
are spread over the whole deduplication index, as real UUIDs are. Loaded
without indexes, indexes built after, then ``VACUUM ANALYZE``.

    python -m tests.perf.preload [--events N] [--drop-cache]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from footfall.storage import migrate, partitions
from footfall.storage.partitions import ensure_partitions, month_start
from tests.perf import storage_scale
from tests.support import LOCAL_PG, make_site, with_database

# Bump when what is loaded changes: an older template is then not reused.
FILL_VERSION = 1
SITE_SETTINGS = {"allow_undeclared_events": True}

# One profile per person, one person_sessions row per session (the visitor of
# session s is (s * 7919) % visitors, as in storage_scale's fill).
FILL_PROFILES = """
INSERT INTO person_profiles (site_id, person_id, events, pages, clicks, sessions, first_seen,
    first_message_id, last_seen, last_message_id, last_page_at, last_page_message_id,
    last_page_path, first_touch_at, first_touch_message_id, first_touch_page, device_at,
    device_message_id, device_type, country_at, country_message_id, country)
SELECT CASE WHEN v %% 5 = 0 THEN %(site_b)s ELSE %(site_a)s END, v + 1,
       3 * %(per)s, 3, 3, 3, t, md5(v::text), t + interval '1 day', md5(v::text || 'l'),
       t + interval '1 day', md5(v::text || 'l'), '/p/' || (v %% 500), t, md5(v::text),
       '/p/' || (v %% 500), t, md5(v::text), 'desktop', t, md5(v::text), 'GB'
FROM (
    SELECT v, %(start)s::timestamptz + (v::float8 / %(visitors)s) * %(seconds)s
              * interval '1 second' AS t
    FROM generate_series(0, %(visitors)s - 1) AS v
) AS rows
"""
FILL_PERSON_SESSIONS = """
INSERT INTO person_sessions (site_id, person_id, session_id, first_at, first_message_id,
    last_at, max_scroll_percent, device_type)
SELECT site_id, ((s * 7919) %% %(visitors)s) + 1, session_id, first_event_at, first_message_id,
       last_event_at, 50, device_type
FROM sessions, LATERAL (SELECT substr(session_id, 3)::bigint AS s) AS n
WHERE site_id IN (%(site_a)s, %(site_b)s)
"""


@dataclass(frozen=True)
class Preloaded:
    """A copy of the template: its DSN and the site that holds most of the events."""

    dsn: str
    database: str
    template: str
    events: int
    site_id: int
    write_key: str
    loaded_until: datetime  # every preloaded event is older
    built_s: float  # seconds the template took to build (0: it was cached)
    copy_s: float


def template_name(events: int) -> str:
    return f"footfall_bench_{events}_v{FILL_VERSION}"


def _exists(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


def _info(conn: psycopg.Connection[Any], name: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
        (name,),
    ).fetchone()
    if row is None or not row[0]:
        return None
    with contextlib.suppress(ValueError):
        info: dict[str, Any] = json.loads(row[0])
        return info
    return None


def fill(dsn: str, events: int, until: datetime) -> dict[str, Any]:
    """Load ``events`` events (and what goes with them) ending before ``until``."""
    start = month_start(until, -2)
    per = storage_scale.EVENTS_PER_SESSION
    sessions = max(1, events // per)
    site_a, key_a = make_site(dsn, name="bench-preloaded", settings=SITE_SETTINGS)
    site_b, _ = make_site(dsn, name="bench-preloaded-other", settings=SITE_SETTINGS)
    params: dict[str, Any] = {
        "site_a": site_a,
        "site_b": site_b,
        "per": per,
        "sessions": sessions,
        "visitors": max(10, sessions // 3),
        "start": start,
        "seconds": (until - start).total_seconds() - 3600,  # sessions: before ``until``
    }
    timings: dict[str, float] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        month = month_start(start)
        while month <= until:
            ensure_partitions(conn, months_ahead=0, now=month)
            month = month_start(month, 1)
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute("SET synchronous_commit = off")
        event_indexes = storage_scale._indexes(conn, "events")
        key_indexes = storage_scale._indexes(conn, "event_ids")
        for name, _ in event_indexes + key_indexes:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
        conn.execute("ALTER TABLE events DROP CONSTRAINT pk_events")
        conn.execute("ALTER TABLE event_ids DROP CONSTRAINT pk_event_ids")
        started = time.perf_counter()
        # A third of the events in each of the three months up to ``until`` (the
        # current month's partition as full as mid-month), in time order within
        # each: FILL_EVENTS puts event g at start + (g / per) * (seconds / sessions).
        bounds = [month_start(until, -2), month_start(until, -1), month_start(until), until]
        third = -(-events // (3 * per)) * per
        for part in range(3):
            lo_part, hi_part = part * third, min(events, (part + 1) * third)
            if lo_part >= hi_part:
                continue
            span = (bounds[part + 1] - bounds[part]).total_seconds()
            span -= min(3600.0, span / 2)  # a session's last event stays before the next bound
            part_sessions = max(1, (hi_part - lo_part) // per)
            part_start = bounds[part] - timedelta(seconds=lo_part / per * span / part_sessions)
            part_params = {**params, "start": part_start, "seconds": span}
            part_params["sessions"] = part_sessions
            for lo in range(lo_part, hi_part, 1_000_000):
                hi = min(hi_part, lo + 1_000_000) - 1
                conn.execute(storage_scale.FILL_EVENTS, {**part_params, "lo": lo, "hi": hi})
                print(f"  preload: {hi + 1:,} events", file=sys.stderr, flush=True)
        timings["events"] = time.perf_counter() - started
        started = time.perf_counter()
        conn.execute(
            'INSERT INTO event_ids (site_id, message_id, "timestamp")'
            ' SELECT site_id, message_id, "timestamp" FROM events'
        )
        timings["keys"] = time.perf_counter() - started
        started = time.perf_counter()
        conn.execute(
            "ALTER TABLE events ADD CONSTRAINT pk_events"
            ' PRIMARY KEY (site_id, message_id, "timestamp")'
        )
        conn.execute(
            "ALTER TABLE event_ids ADD CONSTRAINT pk_event_ids PRIMARY KEY (site_id, message_id)"
        )
        for _, definition in event_indexes + key_indexes:
            conn.execute(definition.replace(" ON ONLY ", " ON "))
        timings["indexes"] = time.perf_counter() - started
        started = time.perf_counter()
        conn.execute(storage_scale.FILL_SESSIONS, params)
        for statement in storage_scale.FILL_PERSONS.split(";"):
            conn.execute(statement, params)
        conn.execute(FILL_PROFILES, params)
        conn.execute(FILL_PERSON_SESSIONS, params)
        timings["sessions, persons, profiles"] = time.perf_counter() - started
        started = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        timings["vacuum analyze"] = time.perf_counter() - started
    return {
        "events": events,
        "site_id": site_a,
        "write_key": key_a,
        "loaded_until": until.isoformat(),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }


def _build_roles(conn: psycopg.Connection[Any], name: str) -> list[str]:
    """Reader roles of builds of template ``name``: the migrations name the role after
    the database they ran in (the build's temporary name), and the rename keeps it."""
    pattern = "footfall_reader_" + name.replace("_", r"\_") + r"\_building\_%"
    return [
        r for (r,) in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (pattern,))
    ]


def _drop_built(conn: psycopg.Connection[Any], name: str, roles: list[str]) -> None:
    """Drop a template (or a build of one), then ``roles`` (their grants went with it)."""
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    for role in roles:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def ensure_template(admin_dsn: str, events: int) -> tuple[str, dict[str, Any], float]:
    """The template holding ``events`` events: (name, its info, seconds spent building it).

    Built under a temporary name and renamed when complete, so an interrupted
    build is never taken for a cached one (its leftover is dropped next time).
    """
    name = template_name(events)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        if _exists(conn, name):
            info = _info(conn, name)
            if info is not None:
                return name, info, 0.0
            _drop_built(conn, name, [])
        for (stale,) in conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (name + "_building_%",)
        ).fetchall():
            _drop_built(conn, stale, ["footfall_reader_" + stale])
        building = f"{name}_building_{uuid.uuid4().hex[:6]}"
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(building)))
    started = time.perf_counter()
    print(f"  preload: building template {name} ({events:,} events) ...", file=sys.stderr)
    try:
        dsn = with_database(admin_dsn, building)
        migrate.upgrade(dsn)
        until = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        info = fill(dsn, events, until)
    except BaseException:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            _drop_built(conn, building, ["footfall_reader_" + building])
        raise
    built = time.perf_counter() - started
    info["built_s"] = round(built, 1)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(building), sql.Identifier(name)
            )
        )
        conn.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(name), sql.Literal(json.dumps(info))
            )
        )
    return name, info, built


@contextlib.contextmanager
def preloaded_copy(admin_dsn: str, events: int) -> Iterator[Preloaded]:
    """A migrated copy of the template with ``events`` events; dropped afterwards."""
    template, info, built = ensure_template(admin_dsn, events)
    name = f"footfall_test_{uuid.uuid4().hex[:10]}"
    started = time.perf_counter()
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        # FILE_COPY copies the files (one checkpoint); WAL_LOG would write them all to WAL.
        create = sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
            sql.Identifier(name), sql.Identifier(template)
        )
        for attempt in range(5):
            try:
                conn.execute(create)
                break
            except psycopg.errors.ObjectInUse:  # autovacuum (or a person) in the template
                if attempt == 4:
                    raise
                time.sleep(2)
    dsn = with_database(admin_dsn, name)
    try:
        migrate.upgrade(dsn)
        partitions.ensure(dsn, 2)
        copy_s = time.perf_counter() - started
        yield Preloaded(
            dsn=dsn,
            database=name,
            template=template,
            events=int(info["events"]),
            site_id=int(info["site_id"]),
            write_key=str(info["write_key"]),
            loaded_until=datetime.fromisoformat(info["loaded_until"]),
            built_s=built,
            copy_s=copy_s,
        )
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def drop_template(admin_dsn: str, events: int) -> bool:
    """Remove the cached template (and its reader role); True if there was one."""
    name = template_name(events)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        if not _exists(conn, name):
            return False
        _drop_built(conn, name, _build_roles(conn, name))
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--admin-dsn", default=LOCAL_PG)
    parser.add_argument("--drop-cache", action="store_true", help="drop the cached template")
    args = parser.parse_args(argv)
    if args.drop_cache:
        dropped = drop_template(args.admin_dsn, args.events)
        print(f"{template_name(args.events)}: {'dropped' if dropped else 'not there'}")
        return
    name, info, built = ensure_template(args.admin_dsn, args.events)
    print(f"{name}: {json.dumps(info)}" + (f" (built in {built:.0f} s)" if built else " (cached)"))


if __name__ == "__main__":
    main()
