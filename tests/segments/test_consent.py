"""Only persons whose consent allows personalization are evaluated; withdrawal and
erasure remove their memberships (history and window state included)."""

from __future__ import annotations

import uuid

import psycopg

from footfall.pipeline.privacy import keyring_of
from footfall.settings import Settings
from footfall.storage.privacy import erase_subject
from tests.segments.support import define, message, page, person_of, send
from tests.support import Collector, make_site

EVERYONE = {
    "key": "reader",
    "expose": "browser",
    "when": {"count": {"type": "page"}, "within": "1h", "gte": 1},
}


def consent(anonymous_id: str, **purposes: bool) -> dict:
    return message("track", anonymous_id, event="Consent Updated", properties=purposes)


def rows(collector: Collector, table: str, person: int, site_id: int | None = None) -> int:
    return collector.query(
        f"SELECT count(*) AS n FROM {table} WHERE site_id = %s AND person_id = %s",
        (site_id or collector.site_id, person),
    )[0]["n"]


def test_withdrawing_personalization_removes_memberships_and_stops_evaluation(
    collector: Collector,
) -> None:
    define(collector.dsn, collector.site_id, EVERYONE)
    visitor = "v-" + uuid.uuid4().hex
    key = collector.write_key
    assert send(collector.base_url, key, [page(visitor, "/a")])["segments"] == ["reader"]
    person = person_of(collector.dsn, collector.site_id, visitor)
    assert rows(collector, "segment_memberships", person) == 1
    answer = send(collector.base_url, key, [consent(visitor, personalization=False)])
    assert answer["accepted"] == 1 and answer["segments"] == []
    assert rows(collector, "segment_memberships", person) == 0
    assert rows(collector, "segment_state", person) == 0
    # Analytics is still allowed (implied mode): events are stored, never evaluated.
    later = send(collector.base_url, key, [page(visitor, "/b")])
    assert later["accepted"] == 1 and later["segments"] == []
    assert rows(collector, "segment_memberships", person) == 0
    # Granting it again resumes evaluation.
    send(collector.base_url, key, [consent(visitor, personalization=True)])
    assert send(collector.base_url, key, [page(visitor, "/c")])["segments"] == ["reader"]


def test_withdrawing_analytics_removes_memberships(collector: Collector) -> None:
    define(collector.dsn, collector.site_id, EVERYONE)
    visitor = "v-" + uuid.uuid4().hex
    send(collector.base_url, collector.write_key, [page(visitor, "/a")])
    person = person_of(collector.dsn, collector.site_id, visitor)
    send(collector.base_url, collector.write_key, [consent(visitor, analytics=False)])
    assert rows(collector, "segment_memberships", person) == 0


def test_a_message_claiming_no_personalization_is_not_evaluated(collector: Collector) -> None:
    define(collector.dsn, collector.site_id, EVERYONE)
    visitor = "v-" + uuid.uuid4().hex
    claim = page(visitor, "/a", context={"consent": {"personalization": False}})
    answer = send(collector.base_url, collector.write_key, [claim])
    assert answer["accepted"] == 1 and answer["segments"] == []
    assert collector.query(
        "SELECT count(*) AS n FROM segment_memberships WHERE site_id = %s",
        (collector.site_id,),
    ) == [{"n": 0}]


def test_required_mode_evaluates_only_granted_visitors(collector: Collector) -> None:
    site_id, key = make_site(collector.dsn, allowed_origins=["*"], consent_mode="required")
    define(collector.dsn, site_id, EVERYONE)
    silent, granted = "v-" + uuid.uuid4().hex, "v-" + uuid.uuid4().hex
    refused = send(collector.base_url, key, [page(silent, "/a")])
    assert refused["refused"] == {"consent": 1} and refused["segments"] == []
    allowed = page(granted, "/a", context={"consent": {"analytics": True}})
    assert send(collector.base_url, key, [allowed])["segments"] == ["reader"]


def test_erasure_removes_memberships_and_state(collector: Collector) -> None:
    define(collector.dsn, collector.site_id, EVERYONE)
    visitor, bystander = "v-" + uuid.uuid4().hex, "v-" + uuid.uuid4().hex
    send(collector.base_url, collector.write_key, [page(visitor, "/a"), page(bystander, "/a")])
    person = person_of(collector.dsn, collector.site_id, visitor)
    other = person_of(collector.dsn, collector.site_id, bystander)
    settings = Settings()
    keyring = keyring_of(settings.pii_key_id, settings.pii_key, settings.previous_pii_keys)
    with psycopg.connect(collector.dsn) as conn, conn.transaction():
        report = erase_subject(conn, collector.site_id, "anonymous_id", visitor, keyring)
    assert report["deleted"]["segment_memberships"] == 1
    assert report["deleted"]["segment_state"] == 1
    assert rows(collector, "segment_memberships", person) == 0
    assert rows(collector, "segment_state", person) == 0
    assert rows(collector, "segment_memberships", other) == 1
