"""The official Segment Python SDK, pointed at the collector, just works."""

from __future__ import annotations

import segment.analytics as analytics

from tests.support import Collector


def test_segment_python_sdk_track_page_identify(collector: Collector) -> None:
    site_id, key = collector.make_site(settings={"allow_undeclared_events": True})
    client = analytics.Client(
        write_key=key, host=collector.base_url, sync_mode=True, max_retries=1, timeout=15
    )
    errors: list = []
    client.on_error = lambda error, items: errors.append(error)
    client.track("user-42", "Order Completed", {"revenue": 39.5, "currency": "EUR"})
    client.page("user-42", "Docs", "Getting Started", {"url": "https://shop.example/docs"})
    client.identify("user-42", {"email": "dave@example.com", "plan": "pro"})
    client.alias("anon-9", "user-42")
    client.flush()
    assert errors == []

    rows = collector.events(site_id)
    by_type = {r["type"]: r for r in rows}
    assert set(by_type) == {"track", "page", "identify", "alias"}
    track = by_type["track"]
    assert track["event"] == "Order Completed"
    assert track["properties"] == {"revenue": 39.5, "currency": "EUR"}
    assert track["library_name"] == "analytics-python"
    assert track["sent_at"] is not None and track["original_timestamp"] is not None
    assert by_type["page"]["event"] == "Getting Started"
    assert by_type["page"]["page_url"] == "https://shop.example/docs"
    # Identifiers and PII traits arrive pseudonymized.
    assert {r["user_id"] for r in rows} == {track["user_id"]}
    assert track["user_id"] != "user-42"
    assert by_type["identify"]["traits"]["plan"] == "pro"
    assert by_type["identify"]["traits"]["email"] != "dave@example.com"
    assert len({r["message_id"] for r in rows}) == 4
