"""Failed events stored by earlier versions lose the raw PII they kept (issue 9, items 13-16):
by the migration (run forward from the revision before it), and by replay."""

from __future__ import annotations

import asyncio
import json

import httpx
import psycopg
from alembic import command

from footfall.app import build_pipeline
from footfall.replay import replay_failed
from footfall.storage import migrate
from tests.support import Collector, collector_settings, scratch_database

PROBE = "marguerite.probe@example.net"
BEFORE = "20261122_1500"
HARDENING = "20261201_1010"

OLD_FAILURES = [
    # jsonschema's own messages quoted the value.
    ("f-1", "invalid_properties", [{"path": "/properties/qty", "message":
                                    f"'{PROBE}' is not of type 'integer'"}],
     {"type": "track", "event": "E", "anonymousId": "a", "properties": {"qty": "[email]"}}),
    ("f-2", "invalid_message", [{"path": f"/properties/{PROBE}", "message": "198.51.100.23 is too long"}],
     {"type": "track", "event": "E", "anonymousId": [PROBE], "userId": {"e": PROBE},
      "context": {"sessionId": [PROBE], "timezone": PROBE, "locale": "de-DE"}}),
    ("f-3", "invalid_timestamp", [{"path": "/timestamp", "message": "not ISO"}],
     {"type": "track", "event": "E", "anonymousId": "a", "timestamp": {"t": PROBE},
      "context": {"timezone": "Europe/Berlin", "locale": PROBE}}),
]  # fmt: skip


def test_migration_scrubs_failures_stored_before(admin_dsn: str) -> None:
    with scratch_database(admin_dsn) as dsn:
        config = migrate.alembic_config(dsn)
        command.downgrade(config, BEFORE)
        with psycopg.connect(dsn, autocommit=True) as conn:
            (site_id,) = conn.execute(
                "INSERT INTO sites (name, write_key) VALUES ('old', 'wk-old') RETURNING id"
            ).fetchone()
            for message_id, reason, errors, raw in OLD_FAILURES:
                conn.execute(
                    "INSERT INTO failed_events (site_id, message_id, received_at, reason, errors,"
                    " collector_version, raw) VALUES (%s, %s, now(), %s, %s, '0.1', %s)",
                    (site_id, message_id, reason, json.dumps(errors), json.dumps(raw)),
                )
        command.upgrade(config, HARDENING)
        with psycopg.connect(dsn, autocommit=True) as conn:
            rows = {
                r[0]: r[1:]
                for r in conn.execute(
                    "SELECT message_id, errors, raw, status FROM failed_events ORDER BY id"
                )
            }
            everything = json.dumps(list(rows.values()))
        assert PROBE not in everything and "198.51.100.23" not in everything
        errors, raw, status = rows["f-2"]
        assert errors[0]["path"] == "/properties/[email]"
        assert errors[0]["message"].startswith("error text removed")
        assert raw["anonymousId"] == raw["userId"] == raw["context"]["sessionId"] == "[removed]"
        assert "timezone" not in raw["context"] and raw["context"]["locale"] == "de-DE"
        assert status == "unreplayable"
        _, raw, status = rows["f-3"]
        assert raw["timestamp"] == "[removed]" and status == "unreplayable"
        assert raw["context"] == {"timezone": "Europe/Berlin"}
        errors, raw, status = rows["f-1"]
        assert errors[0]["path"] == "/properties/qty" and status == "pending"
        assert raw["anonymousId"] == "a"
        migrate.upgrade(dsn)  # and on to head


def test_replay_rescrubs_what_still_fails(collector: Collector) -> None:
    """A failure stored before ``promo`` was made sensitive (and, by an earlier version,
    with an array as anonymousId) is cleaned by ``footfall failed replay`` even while it
    keeps failing."""
    site_id, key = collector.make_site(settings={"strict": True})
    message = {"type": "track", "event": "Never Declared", "anonymousId": "a-1",
               "messageId": f"promo-{site_id}",
               "context": {"page": {"url": "https://shop.example/?promo=SECRET-42&page=2"}}}  # fmt: skip
    answer = httpx.post(
        collector.base_url + "/v1/batch", json={"batch": [message]}, auth=(key, ""), timeout=30
    ).json()
    assert answer["failed"][0]["reason"] == "unknown_event"
    with psycopg.connect(collector.dsn, autocommit=True) as conn:
        (raw,) = conn.execute(
            "SELECT raw FROM failed_events WHERE site_id = %s", (site_id,)
        ).fetchone()
        assert "SECRET-42" in json.dumps(raw)  # not sensitive when it failed
        # As an earlier version kept it: an array id, not pseudonymized.
        conn.execute(
            "UPDATE failed_events SET raw = jsonb_set(raw, '{userId}', %s) WHERE site_id = %s",
            (json.dumps([PROBE]), site_id),
        )
    pipeline = build_pipeline(collector_settings(collector.dsn, sensitive_params="promo"))
    report = asyncio.run(replay_failed(collector.dsn, pipeline, site_id))
    assert (report.stored, report.still_failing) == (0, 1)
    (row,) = collector.failed(site_id)
    assert row["status"] == "pending" and row["reason"] == "invalid_message"  # the array id
    text = json.dumps(row["raw"])
    assert "SECRET-42" not in text and PROBE not in text
    assert row["raw"]["context"]["page"]["url"] == "https://shop.example/?page=2"
    assert len(row["raw"]["userId"]) == 64
