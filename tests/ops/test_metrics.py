"""/metrics counts every message by outcome; request ids; readiness status codes."""

from __future__ import annotations

import time
import uuid

import httpx

from tests.ops.metrics_text import sample, samples
from tests.support import Collector, ServerThread, collector_settings, query, scratch_database


def _message(**extra: object) -> dict:
    return {
        "type": "track",
        "event": "Element Clicked",
        "messageId": str(uuid.uuid4()),
        "anonymousId": "anon-1",
        "properties": {"selector": "a#buy", "tag": "a"},
        **extra,
    }


def test_messages_by_outcome_and_histograms(collector: Collector) -> None:
    url = collector.base_url
    first, second = _message(), _message()
    broken = {"type": "track", "messageId": str(uuid.uuid4()), "anonymousId": "a"}  # no event

    def totals() -> dict[str, float]:
        return {
            "accepted": sample(url, "footfall_messages_total", outcome="accepted"),
            "duplicate": sample(url, "footfall_messages_total", outcome="duplicate"),
            "failed": sample(url, "footfall_messages_total", outcome="failed"),
            "batches": sample(url, "footfall_batch_messages_count"),
            "commits": sample(url, "footfall_writer_commit_duration_seconds_count"),
            "requests": sample(
                url, "footfall_http_request_duration_seconds_count", route="/v1/{kind}"
            ),
        }

    before = totals()
    response = httpx.post(
        url + "/v1/batch", json={"batch": [first, second, broken]}, auth=(collector.write_key, "")
    )
    reason = response.json()["failed"][0]["reason"]
    httpx.post(url + "/v1/batch", json={"batch": [first]}, auth=(collector.write_key, ""))
    after = totals()
    delta = {k: after[k] - before[k] for k in after}
    assert delta == {
        "accepted": 2,
        "duplicate": 1,
        "failed": 1,
        "batches": 2,
        "commits": delta["commits"],
        "requests": 2,
    }
    assert delta["commits"] >= 1
    assert sample(url, "footfall_messages_total", outcome="failed", reason=reason) >= 1

    names = {name for name, _ in samples(url)}
    assert {
        "footfall_writer_queue_depth",
        "footfall_db_pool_connections",
        "footfall_db_pool_max_connections",
        "footfall_http_requests_total",
        "footfall_writer_commit_messages_bucket",
    } <= names


def test_request_id_echoed_or_generated(collector: Collector) -> None:
    given = httpx.get(collector.base_url + "/healthz", headers={"X-Request-ID": "req-42.a"})
    assert given.headers["X-Request-ID"] == "req-42.a"
    made = httpx.get(collector.base_url + "/healthz", headers={"X-Request-ID": "a b@c"})
    assert made.headers["X-Request-ID"] not in ("a b@c", "")
    assert len(made.headers["X-Request-ID"]) == 32


def test_readyz_refuses_while_the_schema_is_not_at_head(admin_dsn: str) -> None:
    with scratch_database(admin_dsn) as dsn:
        server = ServerThread(collector_settings(dsn)).start()
        try:
            assert httpx.get(server.base_url + "/healthz").status_code == 200
            ready = httpx.get(server.base_url + "/readyz")
            assert ready.status_code == 200, ready.text
            (head,) = [r["version_num"] for r in query(dsn, "SELECT * FROM alembic_version")]
            query(dsn, "UPDATE alembic_version SET version_num = 'older'")
            stale = httpx.get(server.base_url + "/readyz")
            assert stale.status_code == 503
            assert stale.json()["checks"] == {
                "writer": True,
                "database": True,
                "schema_at_head": False,
            }
            assert httpx.get(server.base_url + "/healthz").status_code == 200
            query(dsn, "UPDATE alembic_version SET version_num = %s", (head,))
            deadline = time.monotonic() + 5
            while httpx.get(server.base_url + "/readyz").status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        finally:
            server.stop()
