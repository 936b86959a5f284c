"""Retention: per-site days for events and failed events, applied in batches by a cron command."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg.types.json import Jsonb

from footfall.storage.privacy import apply_retention
from tests.support import make_site, query


def _seed(dsn: str, site_id: int, ages_days: list[int]) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(dsn) as conn:
        for i, age in enumerate(ages_days):
            at = now - timedelta(days=age)
            conn.execute(
                "INSERT INTO events (site_id, message_id, type, timestamp, received_at)"
                " VALUES (%s, %s, 'track', %s, %s)",
                (site_id, f"m-{site_id}-{i}", at, at),
            )
            conn.execute(
                "INSERT INTO failed_events (site_id, message_id, received_at, reason, errors,"
                " collector_version, raw) VALUES (%s, %s, %s, 'invalid_message', '[]', 't', %s)",
                (site_id, f"f-{site_id}-{i}", at, Jsonb({"type": "track"})),
            )


def test_retention_deletes_only_what_is_older_than_each_sites_setting(database: str) -> None:
    short, _ = make_site(database, settings={"retention_days": 30, "failed_retention_days": 7})
    forever, _ = make_site(database)
    _seed(database, short, [1, 10, 40, 400])
    _seed(database, forever, [1, 400])
    with psycopg.connect(database) as conn:
        reports = {r.site: r for r in apply_retention(conn, batch_size=1)}
    counts = {
        (r["site_id"], r["kind"]): r["n"]
        for r in query(
            database,
            "SELECT site_id, 'events' AS kind, count(*) AS n FROM events"
            " WHERE site_id = ANY(%(s)s) GROUP BY site_id UNION ALL"
            " SELECT site_id, 'failed', count(*) FROM failed_events"
            " WHERE site_id = ANY(%(s)s) GROUP BY site_id",
            {"s": [short, forever]},
        )
    }
    assert counts == {(short, "events"): 2, (short, "failed"): 1,
                      (forever, "events"): 2, (forever, "failed"): 2}  # fmt: skip
    assert sum(r.events for r in reports.values()) == 2
    assert sum(r.failed_events for r in reports.values()) == 3


def test_retention_cli(database: str) -> None:
    site_id, _ = make_site(database, name=f"ret-{os.getpid()}", settings={"retention_days": 1})
    _seed(database, site_id, [5])
    out = subprocess.run(
        [sys.executable, "-m", "footfall", "privacy", "retention", "--site", f"ret-{os.getpid()}"],
        env={**os.environ, "DATABASE_URL": database, "FOOTFALL_ENV": "test"},
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    assert '"events": 1' in out
    assert query(database, "SELECT 1 FROM events WHERE site_id = %s", (site_id,)) == []
