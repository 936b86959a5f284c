"""Ingest over real HTTP into real PostgreSQL: dedup, failures, auth, CORS, bodies, pixel."""

from __future__ import annotations

import base64
import gzip
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta

import httpx

from tests.support import (
    Collector,
    ServerThread,
    collector_settings,
    make_site,
    query,
    scratch_database,
)


def _click(**overrides):
    message = {
        "type": "track",
        "event": "Element Clicked",
        "messageId": str(uuid.uuid4()),
        "anonymousId": "anon-1",
        "properties": {"selector": "a.buy", "tag": "a", "text": "Buy"},
    }
    message.update(overrides)
    return message


def _post(collector: Collector, body, path="/v1/batch", **kwargs) -> httpx.Response:
    kwargs.setdefault("auth", (collector.write_key, ""))
    return httpx.post(collector.base_url + path, json=body, timeout=30, **kwargs)


def test_batch_posted_twice_is_stored_once(collector: Collector) -> None:
    batch = {
        "batch": [
            _click(),
            _click(),
            {"type": "page", "anonymousId": "anon-1", "messageId": str(uuid.uuid4())},
        ]
    }
    first = _post(collector, batch)
    second = _post(collector, batch)
    assert first.status_code == 200, first.text
    assert first.json()["accepted"] == 3 and first.json()["duplicates"] == 0
    assert second.json()["accepted"] == 0 and second.json()["duplicates"] == 3
    assert len(collector.events()) == 3


def test_concurrent_retries_from_many_clients_store_once(collector: Collector) -> None:
    batches = [{"batch": [_click() for _ in range(20)]} for _ in range(5)]
    results: list[dict] = []
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(auth=(collector.write_key, ""), timeout=30) as http:
            for batch in batches:
                response = http.post(collector.base_url + "/v1/batch", json=batch)
                assert response.status_code == 200
                with lock:
                    results.append(response.json())

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r["accepted"] for r in results) == 100
    assert sum(r["duplicates"] for r in results) == 7 * 100
    stored = collector.query(
        "SELECT count(*) AS n, count(DISTINCT message_id) AS d FROM events WHERE site_id = %s",
        (collector.site_id,),
    )[0]
    assert stored == {"n": 100, "d": 100}


def test_invalid_message_fails_alone_with_its_error_paths(collector: Collector) -> None:
    # Strict: an event without a schema fails too (before the site is first cached).
    collector.query(
        """UPDATE sites SET settings = settings || '{"strict": true}' WHERE id = %s""",
        (collector.site_id,),
    )
    bad = _click(properties={"selector": "a", "tag": 7})
    unknown = _click(event="Totally Custom")
    response = _post(collector, {"batch": [_click(), bad, _click(), unknown, "oops"]})
    body = response.json()
    assert response.status_code == 200
    assert body["accepted"] == 2
    failed = {f["index"]: f for f in body["failed"]}
    assert failed[1]["reason"] == "invalid_properties"
    assert failed[1]["errors"] == [
        {"path": "/properties/tag", "message": "must be of type string (type)"}
    ]
    assert failed[1]["messageId"] == bad["messageId"]
    assert failed[3]["reason"] == "unknown_event"
    assert failed[4]["reason"] == "not_an_object"

    rows = {r["message_id"]: r for r in collector.failed()}
    assert set(rows) == {bad["messageId"], unknown["messageId"], failed[4]["messageId"]}
    stored = rows[bad["messageId"]]
    assert stored["reason"] == "invalid_properties"
    assert stored["errors"][0]["path"] == "/properties/tag"
    assert stored["schema"] == "element_clicked/1-0-0"
    assert stored["raw"]["properties"]["tag"] == 7
    assert stored["collector_version"]
    assert len(collector.events()) == 2


def test_missing_ids_and_bad_types_are_reported(collector: Collector) -> None:
    response = _post(
        collector,
        {
            "batch": [
                {
                    "type": "track",
                    "event": "Element Clicked",
                    "properties": {"selector": "a", "tag": "a"},
                },
                {"type": "bogus", "anonymousId": "a"},
                {"type": "page", "anonymousId": {"x": 1}},
                {"type": "page", "anonymousId": "a", "timestamp": "yesterday-ish"},
            ]
        },
    )
    reasons = [
        (f["index"], f["reason"], [e["path"] for e in f["errors"]])
        for f in response.json()["failed"]
    ]
    assert reasons == [
        (0, "invalid_message", [""]),
        (1, "invalid_message", ["/type"]),
        (2, "invalid_message", ["", "/anonymousId"]),
        (3, "invalid_timestamp", ["/timestamp"]),
    ]
    assert (
        response.json()["failed"][0]["errors"][0]["message"] == "anonymousId or userId is required"
    )


def test_single_message_endpoints_long_and_short_paths(collector: Collector) -> None:
    for path, message in [
        ("/v1/track", {"event": "Element Clicked", "properties": {"selector": "b", "tag": "b"}}),
        ("/v1/t", {"event": "Element Clicked", "properties": {"selector": "b", "tag": "b"}}),
        ("/v1/page", {"name": "Home"}),
        ("/v1/p", {"name": "Home"}),
        ("/v1/identify", {"traits": {"plan": "pro"}}),
        ("/v1/i", {"traits": {"plan": "pro"}}),
        ("/v1/screen", {"name": "Main"}),
        ("/v1/s", {"name": "Main"}),
        ("/v1/group", {"groupId": "acme"}),
        ("/v1/g", {"groupId": "acme"}),
        ("/v1/alias", {"previousId": "anon-1", "userId": "u-1"}),
        ("/v1/a", {"previousId": "anon-1", "userId": "u-1"}),
    ]:
        body = {"anonymousId": "anon-1", "messageId": str(uuid.uuid4()), **message}
        response = _post(collector, body, path=path)
        assert response.status_code == 200, (path, response.text)
        assert response.json()["accepted"] == 1, (path, response.text)
    response = _post(collector, {"batch": [_click()]}, path="/v1/b")
    assert response.json()["accepted"] == 1
    types = [r["type"] for r in collector.events()]
    assert sorted(types) == sorted(
        ["track"] * 3
        + ["page"] * 2
        + ["identify"] * 2
        + ["screen"] * 2
        + ["group"] * 2
        + ["alias"] * 2
    )


def test_write_key_by_basic_header_or_body(collector: Collector) -> None:
    url = collector.base_url + "/v1/batch"
    by_header = httpx.post(
        url, json={"batch": [_click()]}, headers={"X-Write-Key": collector.write_key}
    )
    by_body = httpx.post(url, json={"batch": [_click()], "writeKey": collector.write_key})
    by_basic = httpx.post(url, json={"batch": [_click()]}, auth=(collector.write_key, ""))
    assert [r.status_code for r in (by_header, by_body, by_basic)] == [200, 200, 200]
    assert len(collector.events()) == 3


def test_text_plain_and_gzip_bodies(collector: Collector) -> None:
    url = collector.base_url + "/v1/batch"
    body = json.dumps({"batch": [_click()], "writeKey": collector.write_key}).encode()
    beacon = httpx.post(url, content=body, headers={"Content-Type": "text/plain;charset=UTF-8"})
    zipped = httpx.post(
        url,
        content=gzip.compress(json.dumps({"batch": [_click()]}).encode()),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        auth=(collector.write_key, ""),
    )
    assert beacon.status_code == 200 and beacon.json()["accepted"] == 1
    assert zipped.status_code == 200 and zipped.json()["accepted"] == 1


def test_clock_skew_is_corrected_and_all_timestamps_stored(collector: Collector) -> None:
    # The client's clock is 2 hours fast; the event happened 10 s before sending.
    client_now = datetime.now(UTC) + timedelta(hours=2)
    original = client_now - timedelta(seconds=10)
    message = _click(timestamp=original.isoformat())
    _post(collector, {"batch": [message], "sentAt": client_now.isoformat()})
    row = collector.events()[0]
    assert row["original_timestamp"] == original
    assert row["sent_at"] == client_now
    delta = row["received_at"] - row["timestamp"]
    assert timedelta(seconds=9.9) <= delta <= timedelta(seconds=10.1)


def test_future_timestamp_is_clamped_to_received_at(collector: Collector) -> None:
    future = datetime.now(UTC) + timedelta(days=3)
    _post(collector, {"batch": [_click(timestamp=future.isoformat())]})
    row = collector.events()[0]
    assert row["timestamp"] == row["received_at"]
    assert row["original_timestamp"] == future


def test_message_without_message_id_still_deduplicates(collector: Collector) -> None:
    message = _click(timestamp="2026-01-01T00:00:00Z")
    del message["messageId"]
    first = _post(collector, {"batch": [message], "sentAt": "2026-01-01T00:00:01Z"})
    second = _post(collector, {"batch": [message], "sentAt": "2026-01-01T00:00:05Z"})
    assert first.json()["accepted"] == 1 and second.json()["duplicates"] == 1
    assert collector.events()[0]["message_id"].startswith("ffh-")


def test_cors_only_for_allowed_origins(admin_dsn: str) -> None:
    # Its own database: preflights consult every site's origins, so no "*" site may exist.
    with scratch_database(admin_dsn) as dsn:
        server = ServerThread(collector_settings(dsn, demo=False)).start()
        try:
            _check_cors(server.base_url, dsn)
        finally:
            server.stop()


def _check_cors(base_url: str, dsn: str) -> None:
    site_id, key = make_site(dsn, allowed_origins=["https://shop.example"])
    url = base_url + "/v1/batch"
    allowed = httpx.post(
        url, json={"batch": [_click()]}, auth=(key, ""), headers={"Origin": "https://shop.example"}
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
    # Nothing reads cookies: no credentialed CORS (issue 9 item 18).
    assert "access-control-allow-credentials" not in allowed.headers

    denied = httpx.post(
        url, json={"batch": [_click()]}, auth=(key, ""), headers={"Origin": "https://evil.example"}
    )
    assert denied.status_code == 403
    # The refusal is readable by the page (issue 13 item 7), and carries nothing but the reason.
    assert denied.headers["access-control-allow-origin"] == "https://evil.example"
    assert denied.json() == {
        "error": "origin_not_allowed",
        "detail": "origin https://evil.example is not allowed for this site",
    }
    assert (
        query(dsn, "SELECT count(*) AS n FROM events WHERE site_id = %s", (site_id,))[0]["n"] == 1
    )

    preflight = httpx.options(
        url,
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
    assert "Authorization" in preflight.headers["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in preflight.headers
    bad_preflight = httpx.options(url, headers={"Origin": "https://nobody-allows-me.example"})
    assert bad_preflight.status_code == 403
    assert "access-control-allow-origin" not in bad_preflight.headers


def test_pixel_endpoint_answers_a_gif_and_stores(collector: Collector) -> None:
    message = {
        "anonymousId": "px-1",
        "name": "Landing",
        "messageId": str(uuid.uuid4()),
        "writeKey": collector.write_key,
    }
    data = base64.urlsafe_b64encode(json.dumps(message).encode()).decode().rstrip("=")
    response = httpx.get(collector.base_url + "/v1/pixel/page", params={"data": data})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    assert response.content.startswith(b"GIF89a")
    rows = collector.events()
    assert [(r["type"], r["event"], r["anonymous_id"]) for r in rows] == [
        ("page", "Landing", "px-1")
    ]


def test_no_raw_ip_or_user_id_stored(collector: Collector) -> None:
    message = _click(userId="alice@example.com", context={"ip": "203.0.113.9"})
    _post(collector, {"batch": [message]})
    row = collector.events()[0]
    assert row["user_id"] != "alice@example.com" and len(row["user_id"]) == 64
    assert row["pii_key_id"] == "k1"
    assert "ip" not in row["context"]
    dump = json.dumps({k: str(v) for k, v in row.items()})
    assert "203.0.113.9" not in dump and "alice@example.com" not in dump
