"""Evaluation at ingest over real HTTP: the response that crosses a threshold carries it."""

from __future__ import annotations

import time
import uuid

import httpx

from tests.segments.support import (
    ORIGIN,
    define,
    example,
    message,
    open_memberships,
    page,
    person_of,
    send,
    track,
)
from tests.support import Collector


def test_the_request_that_crosses_the_threshold_carries_the_segment(
    collector: Collector,
) -> None:
    define(collector.dsn, collector.site_id, example("engaged-reader"))
    visitor = "v-" + uuid.uuid4().hex
    steps = [
        [page(visitor, "/articles/one")],
        [page(visitor, "/articles/two")],
        [track(visitor, "Element Hovered", selector="#subscribe", dwell_ms=700)],
        [page(visitor, "/articles/three")],
    ]
    for batch in steps:
        body = send(collector.base_url, collector.write_key, batch)
        assert body["accepted"] == 1
        assert body["segments"] == []
    crossing = send(
        collector.base_url,
        collector.write_key,
        [track(visitor, "Element Hovered", selector="#subscribe", dwell_ms=800)],
    )
    assert crossing["segments"] == ["engaged-reader"]
    person = person_of(collector.dsn, collector.site_id, visitor)
    assert open_memberships(collector.dsn, collector.site_id) == {(person, "engaged-reader")}
    rows = collector.query(
        "SELECT version, exited_at FROM segment_memberships WHERE site_id = %s",
        (collector.site_id,),
    )
    assert rows == [{"version": 1, "exited_at": None}]
    # A retry of an old message stores nothing new, and still answers the list.
    again = send(collector.base_url, collector.write_key, steps[0])
    assert again["duplicates"] == 1 and again["segments"] == ["engaged-reader"]


def test_server_side_requests_and_sites_without_browser_segments_get_no_list(
    collector: Collector,
) -> None:
    visitor = "v-" + uuid.uuid4().hex
    plain = send(collector.base_url, collector.write_key, [page(visitor, "/articles/a")])
    assert "segments" not in plain  # no segment at all
    define(collector.dsn, collector.site_id, example("abandoned-cart"))  # server-only
    assert "segments" not in send(
        collector.base_url, collector.write_key, [page(visitor, "/articles/b")]
    )
    define(collector.dsn, collector.site_id, example("engaged-reader"))
    assert send(collector.base_url, collector.write_key, [page(visitor, "/x")])["segments"] == []
    server = send(collector.base_url, collector.write_key, [page(visitor, "/y")], browser=False)
    assert "segments" not in server


def test_browser_endpoint_answers_only_that_visitors_exposed_segments(
    collector: Collector,
) -> None:
    site, key = collector.site_id, collector.write_key
    define(collector.dsn, site, example("engaged-reader"))
    # Everyone is in this one, but it is not exposed to browsers.
    define(
        collector.dsn,
        site,
        {"key": "anyone", "expose": "server",
         "when": {"count": {"type": "page"}, "within": "1h", "gte": 1}},
    )  # fmt: skip
    reader, other = "v-" + uuid.uuid4().hex, "v-" + uuid.uuid4().hex
    batch = [page(reader, f"/articles/{i}") for i in range(3)] + [
        track(reader, "Element Hovered", selector="a.subscribe", dwell_ms=600) for _ in range(2)
    ]
    assert send(collector.base_url, key, batch)["segments"] == ["engaged-reader"]
    assert send(collector.base_url, key, [page(other, "/articles/x")])["segments"] == []

    def ask(anonymous_id: str, write_key: str = key) -> httpx.Response:
        return httpx.get(
            collector.base_url + "/v1/segments",
            params={"writeKey": write_key, "anonymousId": anonymous_id},
            headers={"Origin": ORIGIN},
            timeout=30,
        )

    mine = ask(reader)
    assert mine.status_code == 200
    assert mine.json() == {"segments": ["engaged-reader"]}
    assert mine.headers["access-control-allow-origin"] == ORIGIN
    assert ask(other).json() == {"segments": []}
    assert ask("never-seen").json() == {"segments": []}
    # Another site's key never sees this site's visitors.
    _, other_key = collector.make_site(allowed_origins=["*"])
    assert ask(reader, other_key).json() == {"segments": []}
    assert ask(reader, "wrong-key").status_code == 401
    assert ask("").status_code == 400
    assert ask("x" * 300).status_code in (400, 422)
    assert {k for _, k in open_memberships(collector.dsn, site)} == {"engaged-reader", "anyone"}


def test_an_identity_merge_combines_both_persons_windows(shop: Collector) -> None:
    define(shop.dsn, shop.site_id, example("engaged-reader"))
    laptop, phone = "v-" + uuid.uuid4().hex, "v-" + uuid.uuid4().hex
    key, url = shop.write_key, shop.base_url
    hover = {"selector": "#subscribe", "dwell_ms": 900}
    send(url, key, [page(laptop, "/articles/a"), page(laptop, "/articles/b")])
    send(url, key, [track(laptop, "Element Hovered", **hover)] * 1)
    send(url, key, [track(laptop, "Element Hovered", **hover)])
    assert send(url, key, [page(phone, "/articles/c")])["segments"] == []
    first, second = (
        person_of(shop.dsn, shop.site_id, laptop),
        person_of(shop.dsn, shop.site_id, phone),
    )
    assert first != second
    user = "u-" + uuid.uuid4().hex
    assert send(url, key, [message("identify", laptop, userId=user)])["segments"] == []
    # The phone's visitor logs in as the same user: one person, whose windows now
    # hold 3 articles and 2 hovers.
    merged = send(url, key, [message("identify", phone, userId=user)])
    assert merged["segments"] == ["engaged-reader"]
    survivor = person_of(shop.dsn, shop.site_id, phone)
    assert survivor == person_of(shop.dsn, shop.site_id, laptop)
    assert open_memberships(shop.dsn, shop.site_id) == {(survivor, "engaged-reader")}
    states = shop.query("SELECT person_id FROM segment_state WHERE site_id = %s", (shop.site_id,))
    assert states == [{"person_id": survivor}]


def test_the_server_side_profile_lists_every_segment(shop: Collector) -> None:
    from tests.analytics.test_profile_api import secret_key

    define(shop.dsn, shop.site_id, example("engaged-reader"))
    define(
        shop.dsn,
        shop.site_id,
        {"key": "anyone", "expose": "server",
         "when": {"count": {"type": "page"}, "within": "1h", "gte": 1}},
    )  # fmt: skip
    visitor = "v-" + uuid.uuid4().hex
    browser_view = send(shop.base_url, shop.write_key, [page(visitor, "/articles/a")])
    assert browser_view["segments"] == []  # "anyone" is not for browsers
    key = secret_key(shop.dsn, shop.site_id)
    answer = httpx.get(
        f"{shop.base_url}/v1/persons/{visitor}/profile",
        params={"kind": "anonymous"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["segments"] == ["anyone"]


def test_entries_and_exits_are_queued_for_the_segments_webhooks(shop: Collector) -> None:
    define(
        shop.dsn,
        shop.site_id,
        {"key": "looked", "webhooks": ["crm"],
         "when": {"count": {"type": "page"}, "within": 2, "gte": 1}},
    )  # fmt: skip
    visitor = "v-" + uuid.uuid4().hex
    send(shop.base_url, shop.write_key, [page(visitor, "/a")])
    send(shop.base_url, shop.write_key, [page(visitor, "/b")])  # still a member: no new entry
    person = person_of(shop.dsn, shop.site_id, visitor)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        rows = shop.query(
            "SELECT endpoint, event_type, message_id, data FROM webhook_outbox"
            " WHERE site_id = %s ORDER BY id",
            (shop.site_id,),
        )
        if len(rows) == 2:
            break
        time.sleep(0.2)
    assert [(r["endpoint"], r["event_type"]) for r in rows] == [
        ("crm", "segment.entered"),
        ("crm", "segment.exited"),
    ]
    assert rows[0]["data"]["person_id"] == person and rows[0]["data"]["segment"] == "looked"
    assert rows[0]["message_id"].endswith("_entered") and rows[1]["message_id"].endswith("_exited")


def test_segments_the_events_cannot_change_keep_their_answers(shop: Collector) -> None:
    """A commit evaluates only the segments its events can change (and profile tests);
    the response still lists every segment the visitor is in."""
    site, key = shop.site_id, shop.write_key
    define(
        shop.dsn,
        site,
        {
            "key": "reader",
            "expose": "browser",
            "when": {"count": {"type": "page"}, "within": "1h", "gte": 1},
        },
    )
    define(
        shop.dsn,
        site,
        {
            "key": "no-cart",
            "expose": "browser",
            "when": {"not": {"count": {"event": "Product Added"}, "within": "1h", "gte": 1}},
        },
    )
    define(
        shop.dsn,
        site,
        {
            "key": "hoverer",
            "expose": "browser",
            "when": {"count": {"event": "Element Hovered"}, "within": "1h", "gte": 1},
        },
    )
    visitor = "v-" + uuid.uuid4().hex
    first = send(shop.base_url, key, [page(visitor, "/a")])
    assert first["segments"] == ["no-cart", "reader"]  # a new person: every segment
    hovered = send(
        shop.base_url, key, [track(visitor, "Element Hovered", selector="#buy", dwell_ms=500)]
    )
    assert hovered["segments"] == ["hoverer", "no-cart", "reader"]
    added = send(shop.base_url, key, [track(visitor, "Product Added", sku="1")])
    assert added["segments"] == ["hoverer", "reader"]
    person = person_of(shop.dsn, site, visitor)
    assert open_memberships(shop.dsn, site) == {(person, "hoverer"), (person, "reader")}
