"""Undeclared custom events (issue 9, item 19): stored and marked on new sites, failed on strict ones."""

from __future__ import annotations

import uuid

import httpx
import psycopg
from alembic import command

from footfall.storage import migrate
from tests.ops.metrics_text import sample
from tests.support import Collector, query, scratch_database


def _track(event: str, **fields: object) -> dict:
    return {
        "type": "track",
        "event": event,
        "anonymousId": "visitor-1",
        "messageId": str(uuid.uuid4()),
        **fields,
    }


def _post(collector: Collector, key: str, batch: list[dict]) -> dict:
    response = httpx.post(collector.base_url + "/v1/batch", json={"batch": batch}, auth=(key, ""))
    assert response.status_code == 200
    return response.json()


def test_a_new_site_stores_undeclared_events_marked_and_counted(collector: Collector) -> None:
    before = sample(collector.base_url, "footfall_undeclared_events_total")
    custom = _track("Signed Up", properties={"plan": "pro"})
    declared = _track("Element Clicked", properties={"selector": "a#buy", "tag": "a"})
    bad_envelope = _track("Signed Up", properties="not an object")
    body = _post(collector, collector.write_key, [custom, declared, bad_envelope])
    assert body["accepted"] == 2
    # The envelope is validated all the same.
    assert [(f["index"], f["reason"]) for f in body["failed"]] == [(2, "invalid_message")]

    rows = {r["message_id"]: r for r in collector.events()}
    assert rows[custom["messageId"]]["undeclared"] is True
    assert rows[custom["messageId"]]["schema"] is None
    assert rows[custom["messageId"]]["properties"] == {"plan": "pro"}
    assert rows[declared["messageId"]]["undeclared"] is False
    assert rows[declared["messageId"]]["schema"] == "element_clicked/1-0-0"
    assert sample(collector.base_url, "footfall_undeclared_events_total") - before == 1

    # A retry is a duplicate: counted once.
    assert _post(collector, collector.write_key, [custom])["duplicates"] == 1
    assert sample(collector.base_url, "footfall_undeclared_events_total") - before == 1


def test_page_and_identify_are_never_marked_undeclared(collector: Collector) -> None:
    page = {"type": "page", "anonymousId": "v", "messageId": str(uuid.uuid4())}
    _post(collector, collector.write_key, [page])
    assert [r["undeclared"] for r in collector.events()] == [False]


def test_a_strict_site_fails_undeclared_events(collector: Collector) -> None:
    site_id, key = collector.make_site(settings={"strict": True})
    body = _post(
        collector,
        key,
        [_track("Signed Up"), _track("Element Clicked", properties={"selector": "a", "tag": "a"})],
    )
    assert body["accepted"] == 1
    assert [f["reason"] for f in body["failed"]] == ["unknown_event"]
    assert [r["event"] for r in collector.events(site_id)] == ["Element Clicked"]


def test_sites_configure_turns_strictness_on_and_off(collector: Collector) -> None:
    from tests.cli.test_cli import footfall

    name = f"strict-{uuid.uuid4().hex[:8]}"
    site_id, _ = collector.make_site(name=name)
    out = footfall("sites", "configure", name, "--strict", dsn=collector.dsn).stdout
    assert '"strict": true' in out
    settings = query(collector.dsn, "SELECT settings FROM sites WHERE id = %s", (site_id,))
    assert settings[0]["settings"]["strict"] is True
    footfall("sites", "configure", name, "--no-strict", dsn=collector.dsn)
    settings = query(collector.dsn, "SELECT settings FROM sites WHERE id = %s", (site_id,))
    assert settings[0]["settings"]["strict"] is False
    missing = footfall(
        "sites", "configure", "no-such-site", "--strict", dsn=collector.dsn, check=False
    )
    assert missing.returncode == 1 and "no site named 'no-such-site'" in missing.stderr


def test_existing_sites_keep_their_behaviour_across_the_migration(admin_dsn: str) -> None:
    with scratch_database(admin_dsn) as dsn:
        config = migrate.alembic_config(dsn)
        command.downgrade(config, "20261201_1010")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO sites (name, write_key, settings) VALUES"
                " ('old-strict', 'k1', '{\"retention_days\": 30}'),"
                " ('old-open', 'k2', '{\"allow_undeclared_events\": true}')"
            )
        migrate.upgrade(dsn)
        settings = {
            r["name"]: r["settings"] for r in query(dsn, "SELECT name, settings FROM sites")
        }
        assert settings == {
            "old-strict": {"retention_days": 30, "strict": True},
            "old-open": {},
        }
        command.downgrade(config, "20261201_1010")
        settings = {
            r["name"]: r["settings"] for r in query(dsn, "SELECT name, settings FROM sites")
        }
        assert settings == {
            "old-strict": {"retention_days": 30},
            "old-open": {"allow_undeclared_events": True},
        }
