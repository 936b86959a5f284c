"""Regression tests of issue 9: no input gives a 5xx; one bad message fails alone.

Each test names the item it covers; each fails on the code before the fix.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from footfall.pipeline.types import EventRow
from footfall.storage.outage import StorageUnavailable
from footfall.storage.sites import SiteCache
from footfall.storage.writer import Writer
from tests.support import Collector, ServerThread, collector_settings, make_site, query


def _page(**fields: Any) -> dict[str, Any]:
    return {"type": "page", "anonymousId": "a-1", "messageId": str(uuid.uuid4()), **fields}


def _post(collector: Collector, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(
        collector.base_url + path, json=body, auth=(collector.write_key, ""), timeout=30, **kwargs
    )


# -- item 1: extreme timestamps ------------------------------------------------------


def test_extreme_timestamps_fail_alone_with_invalid_timestamp(collector: Collector) -> None:
    good = [_page(), _page()]
    skewed = _page(timestamp="0001-01-01T00:00:00Z", sentAt="9999-12-31T23:59:59Z")
    zoned = _page(timestamp="0001-01-01T00:00:00Z", context={"timezone": "America/New_York"})
    late = _page(timestamp="9999-12-31T23:59:59+14:00", context={"timezone": "Pacific/Kiritimati"})
    far_sent = _page(timestamp="2026-01-01T00:00:00Z", sentAt="8999-01-01T00:00:00Z")
    batch = [good[0], skewed, zoned, late, far_sent, good[1]]
    response = _post(collector, "/v1/batch", {"batch": batch})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 2
    assert [(f["index"], f["reason"]) for f in body["failed"]] == [
        (1, "invalid_timestamp"),
        (2, "invalid_timestamp"),
        (3, "invalid_timestamp"),
        (4, "invalid_timestamp"),
    ]
    stored = {r["message_id"] for r in collector.events()}
    assert stored == {good[0]["messageId"], good[1]["messageId"]}
    assert {r["reason"] for r in collector.failed()} == {"invalid_timestamp"}
    # A Consent Updated message reads its time the same way: it fails, no 500.
    consent = {
        "type": "track",
        "event": "Consent Updated",
        "anonymousId": "a-2",
        "timestamp": "1000-01-01T00:00:00Z",
        "properties": {"analytics": True},
    }
    assert _post(collector, "/v1/track", consent).json()["failed"][0]["reason"] == (
        "invalid_timestamp"
    )


# -- item 4: a poison message id ---------------------------------------------------


def test_huge_message_id_fails_alone_and_never_503s_others(collector: Collector) -> None:
    poison = _page(messageId="m" * 5120)
    goods = [[_page()] for _ in range(40)]

    def send(batch: list[dict[str, Any]]) -> httpx.Response:
        return _post(collector, "/v1/batch", {"batch": batch})

    with ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(send, b) for b in goods[:20]]
        bad = pool.submit(send, [poison, _page()])
        futures += [pool.submit(send, b) for b in goods[20:]]
        responses = [f.result() for f in futures]
        bad_response = bad.result()
    assert [r.status_code for r in responses] == [200] * 40
    assert bad_response.status_code == 200, bad_response.text
    failed = bad_response.json()["failed"]
    assert bad_response.json()["accepted"] == 1
    assert [f["reason"] for f in failed] == ["invalid_message"]
    assert failed[0]["messageId"].startswith("ffh-")  # stored under a content hash
    assert len(collector.events()) == 41
    rows = collector.failed()
    assert [r["message_id"] for r in rows] == [failed[0]["messageId"]]
    # A retry of the same poison is deduplicated in failed_events, not stored twice.
    assert send([poison]).status_code == 200
    assert len(collector.failed()) == 1


# -- item 5: NUL and other unstorable characters before any query --------------------


@pytest.mark.parametrize("path", ["/v1/track", "/v1/page", "/v1/identify", "/v1/batch"])
def test_nul_in_ids_is_a_failure_not_a_500(collector: Collector, path: str) -> None:
    message = {"event": "e", "anonymousId": "a\u0000b", "userId": "u\u0000"}
    body = {"batch": [{**message, "type": "track"}]} if path == "/v1/batch" else message
    response = _post(collector, path, body)
    assert response.status_code == 200, response.text
    assert [f["reason"] for f in response.json()["failed"]] == ["limits_exceeded"]


def test_unstorable_write_keys_are_401(collector: Collector) -> None:
    url = collector.base_url
    nul_body = httpx.post(url + "/v1/track", json={"writeKey": "k\u0000", "event": "e"})
    assert nul_body.status_code == 401
    basic = base64.b64encode(b"\x00k:").decode()
    nul_basic = httpx.post(
        url + "/v1/track", json={"event": "e"}, headers={"Authorization": f"Basic {basic}"}
    )
    assert nul_basic.status_code == 401
    assert httpx.get(url + "/v1/pixel/track?writeKey=%00").status_code == 401
    long_key = httpx.post(url + "/v1/track", json={"writeKey": "k" * 300, "event": "e"})
    assert long_key.status_code == 401
    control = httpx.post(url + "/v1/track", json={"writeKey": "k\u0007", "event": "e"})
    assert control.status_code == 401


# -- item 9: same-origin is the configured public URL, never Host ---------------------


def test_origin_check_ignores_host(admin_dsn: str, database: str) -> None:
    _, key = make_site(database, allowed_origins=["https://shop.example"])
    settings = collector_settings(database, public_url="https://collector.example:443/ignored")
    server = ServerThread(settings).start()
    try:
        url = server.base_url + "/v1/track"
        body = {"event": "Signed Up", "anonymousId": "a", "writeKey": key}
        spoofed = httpx.post(
            url, json=body, headers={"Origin": "http://evil.example", "Host": "evil.example"}
        )
        assert spoofed.status_code == 403
        # Readable as a refusal (issue 13 item 7: CORS on 401/403 for any origin), nothing more.
        assert spoofed.json()["error"] == "origin_not_allowed"
        assert "access-control-allow-credentials" not in spoofed.headers
        own = httpx.post(url, json=body, headers={"Origin": "https://collector.example"})
        assert own.status_code == 200
        assert own.headers["access-control-allow-origin"] == "https://collector.example"
    finally:
        server.stop()


# -- item 11: IP limit before authentication; unknown keys remembered briefly ----------


def test_ip_rate_limit_comes_before_auth(database: str) -> None:
    settings = collector_settings(database, ip_rate_limit_per_s=0.5, ip_rate_limit_burst=3)
    server = ServerThread(settings).start()
    try:
        statuses = [
            httpx.post(
                server.base_url + "/v1/track",
                json={"event": "e", "anonymousId": "a"},
                auth=(f"guess-{i}", ""),
            ).status_code
            for i in range(6)
        ]
    finally:
        server.stop()
    assert statuses == [401, 401, 401, 429, 429, 429]


def test_site_cache_is_bounded_remembers_unknown_keys_and_survives_outages(
    database: str,
) -> None:
    now = [1000.0]

    async def run() -> None:
        pool = AsyncConnectionPool(database, min_size=1, max_size=2, open=False, timeout=2)
        await pool.open(wait=True)
        cache = SiteCache(pool, 30, negative_ttl_s=5, max_keys=3, clock=lambda: now[0])
        unknown = f"ffw_later_{uuid.uuid4().hex}"
        assert await cache.by_write_key(unknown) is None
        make_site(database, write_key=unknown)
        assert await cache.by_write_key(unknown) is None  # remembered as unknown ...
        now[0] += 6
        assert await cache.by_write_key(unknown) is not None  # ... for a short while
        for i in range(10):
            await cache.by_write_key(f"guess-{i}")
        assert len(cache) == 3
        _, known = make_site(database, allowed_origins=["https://known.example"])
        assert await cache.by_write_key(known) is not None
        assert await cache.any_site_allows("https://known.example")
        await pool.close()  # the database is gone for this cache
        now[0] += 60  # past every entry's lifetime
        site = await cache.by_write_key(known)
        assert site is not None  # a known key is served from memory
        assert await cache.any_site_allows("https://known.example")
        with pytest.raises(psycopg.OperationalError):
            await cache.by_write_key("never-seen")  # answered 503 by the app

    asyncio.run(run())


# -- item 10: a large batch runs in chunks, positions intact ---------------------------


def test_large_batch_in_chunks_reports_true_positions(collector: Collector) -> None:
    batch = [_page() for _ in range(2500)]
    for index in (0, 99, 100, 1234, 2499):
        batch[index] = {"type": "page", "messageId": str(uuid.uuid4())}  # no id: invalid
    response = _post(collector, "/v1/batch", {"batch": batch})
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 2495
    assert [f["index"] for f in body["failed"]] == [0, 99, 100, 1234, 2499]
    assert [f["messageId"] for f in body["failed"]] == [
        batch[i]["messageId"] for i in (0, 99, 100, 1234, 2499)
    ]


# -- item 12: the writer's fallback and callbacks --------------------------------------


def _row(site_id: int) -> EventRow:
    now = datetime.now(UTC)
    return EventRow(
        site_id=site_id, message_id=str(uuid.uuid4()), type="track", event="e", schema=None,
        timestamp=now, original_timestamp=None, sent_at=None, received_at=now,
        anonymous_id="a", user_id=None, pii_key_id=None, session_id=None, page_url=None,
        page_path=None, page_title=None, page_referrer=None, page_search=None, utm_source=None,
        utm_medium=None, utm_campaign=None, utm_term=None, utm_content=None, library_name=None,
        library_version=None, user_agent=None, locale=None, timezone=None, context={},
        properties={}, traits=None,
    )  # fmt: skip


def test_writer_fallback_maps_outages_and_survives_callbacks(database: str) -> None:
    site_id, _ = make_site(database)
    calls = {"step": 0, "commits": 0}

    async def flaky_step(conn: Any, rows: Any) -> None:
        # First the group fails on a bad value, then the database "goes away" while
        # the requests are retried one by one.
        calls["step"] += 1
        if calls["step"] == 1:
            raise psycopg.errors.InvalidTextRepresentation("bad value")
        if calls["step"] == 2:
            raise psycopg.OperationalError("server closed the connection unexpectedly")

    def broken_metrics(seconds: float, messages: int) -> None:
        calls["commits"] += 1
        raise RuntimeError("metrics broke")

    async def run() -> list[Any]:
        pool = AsyncConnectionPool(database, min_size=1, max_size=2, open=False)
        await pool.open(wait=True)
        writer = Writer(pool, linger_ms=30, steps=[flaky_step], on_commit=broken_metrics)
        writer.start()
        try:
            first = await asyncio.gather(
                writer.write([_row(site_id)], []),
                writer.write([_row(site_id)], []),
                return_exceptions=True,
            )
            # The callback raised on a successful commit: the writer still answers.
            later = await writer.write([_row(site_id)], [])
            return [*first, later]
        finally:
            await writer.close()
            await pool.close()

    first, second, later = asyncio.run(run())
    assert isinstance(first, StorageUnavailable)  # an outage: 503, never the raw error
    assert len(second.inserted) == 1
    assert len(later.inserted) == 1
    assert calls["commits"] == 1
    count = query(database, "SELECT count(*) AS n FROM events WHERE site_id = %s", (site_id,))
    assert count[0]["n"] == 2
