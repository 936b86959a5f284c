"""FOOTFALL_READ_DATABASE_URL: the commands that only read go there, the others to the primary.

Two different databases stand for a primary and its replica, so where each
command read is visible in what it prints (tests/ops/test_replica.py runs a
real streaming replica).
"""

from __future__ import annotations

import os
import subprocess
import sys

from psycopg.types.json import Jsonb

from tests.support import make_site, query, scratch_database


def _footfall(*args: str, dsn: str, read_dsn: str) -> str:
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "FOOTFALL_READ_DATABASE_URL": read_dsn,
        "FOOTFALL_ENV": "test",
    }
    done = subprocess.run(
        [sys.executable, "-m", "footfall", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def _failed(dsn: str, site_id: int, message_id: str, reason: str) -> None:
    query(
        dsn,
        "INSERT INTO failed_events (site_id, message_id, received_at, reason, errors,"
        " collector_version, raw) VALUES (%s, %s, now(), %s, '[]', 't', %s)",
        (site_id, message_id, reason, Jsonb({"type": "track", "anonymousId": "who"})),
    )


def test_read_only_commands_use_the_read_database(admin_dsn: str) -> None:
    with scratch_database(admin_dsn) as primary, scratch_database(admin_dsn) as replica:
        for dsn, marker, reason in (
            (primary, "on-primary", "invalid_message"),
            (replica, "on-replica", "too_large"),
        ):
            site_id, _ = make_site(dsn, name="shop")
            _failed(dsn, site_id, marker, reason)
        listed = _footfall("failed", "list", dsn=primary, read_dsn=replica)
        assert "\ttoo_large\t" in listed
        assert "invalid_message" not in listed
        exported = _footfall(
            "privacy", "export", "--site", "shop", "--anonymous-id", "who",
            dsn=primary, read_dsn=replica,
        )  # fmt: skip
        assert '"message_id": "on-replica"' in exported
        assert "on-primary" not in exported
        # Erasure writes: the primary, whatever the read URL says.
        _footfall(
            "privacy", "erase", "--site", "shop", "--anonymous-id", "who",
            dsn=primary, read_dsn=replica,
        )  # fmt: skip
        assert query(primary, "SELECT message_id FROM failed_events") == []
        assert query(replica, "SELECT message_id FROM failed_events") == [
            {"message_id": "on-replica"}
        ]
