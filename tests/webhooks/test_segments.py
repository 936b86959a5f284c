"""Segments → webhooks end to end: events over real HTTP make a visitor enter (and, with
time, leave) a segment; the running collector sends signed segment.entered / .exited."""

from __future__ import annotations

import uuid

from footfall.storage import webhooks
from footfall.webhooks.message import generate_secret
from tests.segments.support import define, example, message, page, person_of, send, track
from tests.support import Collector
from tests.webhooks.conftest import add_endpoint, outbox, run_tx, wait_until
from tests.webhooks.receiver import Receiver


def test_crossing_a_threshold_sends_one_signed_segment_entered(collector: Collector) -> None:
    secret = generate_secret()
    with Receiver(secret) as receiver:
        add_endpoint(collector.dsn, collector.site_id, "crm", receiver.url, secret)
        define(collector.dsn, collector.site_id, example("engaged-reader"))  # webhooks: crm
        visitor = "v-" + uuid.uuid4().hex
        steps = [
            [page(visitor, "/articles/one")],
            [page(visitor, "/articles/two")],
            [track(visitor, "Element Hovered", selector="#subscribe", dwell_ms=700)],
            [page(visitor, "/articles/three")],
        ]
        for batch in steps:
            send(collector.base_url, collector.write_key, batch)
        crossing = [track(visitor, "Element Hovered", selector="#subscribe", dwell_ms=800)]
        assert send(collector.base_url, collector.write_key, crossing)["segments"] == [
            "engaged-reader"
        ]
        receiver.wait_for(lambda got: len(got) >= 1)
        # A retried message changes nothing: no second webhook.
        assert send(collector.base_url, collector.write_key, crossing)["duplicates"] == 1
        wait_until(
            lambda: (
                [r["status"] for r in outbox(collector.dsn, collector.site_id).values()]
                == ["delivered"]
            ),
            what="delivered",
        )
    person = person_of(collector.dsn, collector.site_id, visitor)
    membership = collector.query(
        "SELECT id FROM segment_memberships WHERE site_id = %s", (collector.site_id,)
    )[0]["id"]
    (got,) = receiver.received
    assert got.verified
    assert got.id == f"seg_{collector.site_id}_{membership}_entered"
    assert got.payload["type"] == "segment.entered"
    data = got.payload["data"]
    assert data["segment"] == "engaged-reader" and data["version"] == 1
    assert data["person_id"] == person
    assert data["anonymous_ids"] == [visitor] and data["user_ids"] == []
    assert data["entered_at"].endswith("Z")


def test_the_webhook_reports_the_profile_attributes_the_rule_tests(collector: Collector) -> None:
    """Issue 10: the payload names the profile attributes the segment's rule tests, and
    only those (a CRM gets why the person qualified, never the whole profile)."""
    secret = generate_secret()
    with Receiver(secret) as receiver:
        add_endpoint(collector.dsn, collector.site_id, "crm", receiver.url, secret)
        define(
            collector.dsn,
            collector.site_id,
            {
                "key": "returning-reader",
                "webhooks": ["crm"],
                "when": {
                    "all": [
                        {"count": {"type": "page"}, "within": "10m", "gte": 2},
                        {"profile": {"sessions": {"gte": 1}, "identified": {"eq": False}}},
                    ]
                },
            },
        )
        visitor = "v-" + uuid.uuid4().hex
        send(collector.base_url, collector.write_key, [page(visitor, "/a")])
        send(collector.base_url, collector.write_key, [page(visitor, "/b")])
        receiver.wait_for(lambda got: len(got) >= 1)
    (got,) = receiver.received
    assert got.verified
    data = got.payload["data"]
    assert data["segment"] == "returning-reader"
    assert data["attributes"] == {"sessions": 1, "identified": False}


def test_leaving_with_time_sends_segment_exited(collector: Collector) -> None:
    secret = generate_secret()
    with Receiver(secret) as receiver:
        add_endpoint(collector.dsn, collector.site_id, "crm", receiver.url, secret)
        define(
            collector.dsn,
            collector.site_id,
            {
                "key": "just-seen",
                "webhooks": ["crm"],
                "when": {"count": {"type": "page"}, "within": "2s", "gte": 1},
            },
        )
        visitor = "v-" + uuid.uuid4().hex
        send(collector.base_url, collector.write_key, [page(visitor, "/a")])
        # The sweeper exits the person when the window passes, with no new event.
        receiver.wait_for(lambda got: len(got) >= 2, timeout=30)
    kinds = [r.payload["type"] for r in receiver.received]
    assert kinds == ["segment.entered", "segment.exited"]
    assert all(r.verified for r in receiver.received)
    assert receiver.received[1].id.endswith("_exited")


def test_withdrawing_consent_cancels_pending_webhooks(collector: Collector) -> None:
    add_endpoint(collector.dsn, collector.site_id, "crm", "http://127.0.0.1:9/never")
    run_tx(collector.dsn, lambda c: webhooks.set_enabled(c, collector.site_id, "crm", False))
    define(
        collector.dsn,
        collector.site_id,
        {
            "key": "reader",
            "webhooks": ["crm"],
            "when": {"count": {"type": "page"}, "within": "1h", "gte": 1},
        },
    )
    visitor = "v-" + uuid.uuid4().hex
    send(collector.base_url, collector.write_key, [page(visitor, "/a")])
    (row,) = outbox(collector.dsn, collector.site_id).values()
    assert row["status"] == "pending" and row["event_type"] == "segment.entered"
    withdrawal = message(
        "track", visitor, event="Consent Updated", properties={"personalization": False}
    )
    send(collector.base_url, collector.write_key, [withdrawal])
    (row,) = outbox(collector.dsn, collector.site_id).values()
    assert row["status"] == "cancelled" and row["data"] == {}


def test_erasure_deletes_the_persons_webhooks(collector: Collector) -> None:
    import psycopg

    from footfall.pipeline.privacy import keyring_of
    from footfall.settings import DEV_PII_KEY
    from footfall.storage.privacy import erase_subject

    add_endpoint(collector.dsn, collector.site_id, "crm", "http://127.0.0.1:9/never")
    run_tx(collector.dsn, lambda c: webhooks.set_enabled(c, collector.site_id, "crm", False))
    define(
        collector.dsn,
        collector.site_id,
        {
            "key": "reader",
            "webhooks": ["crm"],
            "when": {"count": {"type": "page"}, "within": "1h", "gte": 1},
        },
    )
    visitor, other = "v-" + uuid.uuid4().hex, "v-" + uuid.uuid4().hex
    for anonymous_id in (visitor, other):
        send(collector.base_url, collector.write_key, [page(anonymous_id, "/a")])
    assert len(outbox(collector.dsn, collector.site_id)) == 2
    with psycopg.connect(collector.dsn) as conn, conn.transaction():
        report = erase_subject(
            conn, collector.site_id, "anonymous_id", visitor, keyring_of("k1", DEV_PII_KEY)
        )
    assert report["deleted"]["webhook_outbox"] == 1
    (left,) = outbox(collector.dsn, collector.site_id).values()
    assert left["data"]["anonymous_ids"] == [other]
