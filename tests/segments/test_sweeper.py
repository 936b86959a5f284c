"""Time-based changes: the sweeper exits a person whose window passed and fires absences."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import psycopg

from footfall.storage.segments import Definitions, sweep_once
from tests.segments.support import ORIGIN, define, page, person_of, send, track
from tests.support import Collector


def wait_for(check, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def visitor_segments(collector: Collector, anonymous_id: str) -> list[str]:
    response = httpx.get(
        collector.base_url + "/v1/segments",
        params={"writeKey": collector.write_key, "anonymousId": anonymous_id},
        headers={"Origin": ORIGIN},
        timeout=30,
    )
    assert response.status_code == 200
    return list(response.json()["segments"])


def memberships(collector: Collector, person: int) -> list[dict]:
    return collector.query(
        "SELECT segment_key, entered_at, exited_at, exit_reason FROM segment_memberships"
        " WHERE site_id = %s AND person_id = %s ORDER BY id",
        (collector.site_id, person),
    )


def test_sweeper_exits_a_person_whose_window_passed(shop: Collector) -> None:
    define(
        shop.dsn,
        shop.site_id,
        {"key": "just-looked", "expose": "browser",
         "when": {"count": {"type": "page"}, "within": 2, "gte": 1}},
    )  # fmt: skip
    visitor = "v-" + uuid.uuid4().hex
    assert send(shop.base_url, shop.write_key, [page(visitor, "/")])["segments"] == ["just-looked"]
    person = person_of(shop.dsn, shop.site_id, visitor)
    closed = wait_for(lambda: [m for m in memberships(shop, person) if m["exited_at"]])
    assert closed, "the sweeper did not close the membership"
    (row,) = memberships(shop, person)
    assert row["exit_reason"] == "rule"
    # 2 s window, 1 s buckets: out 2-3 s after the page, plus the sweeper's lag.
    stay = (row["exited_at"] - row["entered_at"]).total_seconds()
    assert 1.5 < stay < 6, stay
    assert visitor_segments(shop, visitor) == []
    metrics = httpx.get(shop.base_url + "/metrics", timeout=30).text
    assert "footfall_segment_sweep_lag_seconds_count" in metrics


def test_absence_fires_after_t_and_an_add_to_cart_prevents_it(shop: Collector) -> None:
    define(
        shop.dsn,
        shop.site_id,
        {"key": "hesitant", "expose": "browser",
         "when": {"after": {"type": "page", "where": {"page_path": {"glob": "/product/*"}}},
                  "absent": {"event": "Product Added"}, "for": 2, "lookback": 60}},
    )  # fmt: skip
    hesitant, decided = "v-" + uuid.uuid4().hex, "v-" + uuid.uuid4().hex
    key = shop.write_key
    assert send(shop.base_url, key, [page(hesitant, "/product/7")])["segments"] == []
    assert send(shop.base_url, key, [page(decided, "/product/7")])["segments"] == []
    assert send(shop.base_url, key, [track(decided, "Product Added", sku="7")])["segments"] == []
    entered = wait_for(lambda: visitor_segments(shop, hesitant) == ["hesitant"])
    assert entered, "the absence did not fire"
    person = person_of(shop.dsn, shop.site_id, hesitant)
    (row,) = memberships(shop, person)
    page_at = shop.query(
        "SELECT max(timestamp) AS t FROM events WHERE site_id = %s AND anonymous_id = %s",
        (shop.site_id, hesitant),
    )[0]["t"]
    assert 2 <= (row["entered_at"] - page_at).total_seconds() < 6
    time.sleep(1)
    assert visitor_segments(shop, decided) == []
    # Adding to the cart later ends it, in the response of that request.
    assert send(shop.base_url, key, [track(hesitant, "Product Added", sku="7")])["segments"] == []
    assert memberships(shop, person)[0]["exit_reason"] == "rule"


def test_sweepers_of_several_collectors_never_take_the_same_person(shop: Collector) -> None:
    define(
        shop.dsn,
        shop.site_id,
        {"key": "long", "when": {"count": {"type": "page"}, "within": "1h", "gte": 1}},
    )
    visitors = ["v-" + uuid.uuid4().hex for _ in range(30)]
    send(shop.base_url, shop.write_key, [page(v, "/") for v in visitors])
    future = datetime.now(UTC) + timedelta(hours=2)

    due = shop.query("SELECT count(*) AS n FROM segment_state WHERE due_at <= %s", (future,))[0][
        "n"
    ]

    async def race() -> tuple[dict, dict]:
        async with (
            await psycopg.AsyncConnection.connect(shop.dsn) as one,
            await psycopg.AsyncConnection.connect(shop.dsn) as two,
            one.transaction(),
            two.transaction(),
        ):
            first = await sweep_once(one, Definitions(), future, limit=due // 2)
            second = await sweep_once(two, Definitions(), future, limit=due)
        return first, second

    first, second = asyncio.run(race())
    # Other tests' persons are due too; ours are split between the two, never shared.
    ours = {(shop.site_id, person_of(shop.dsn, shop.site_id, v)) for v in visitors}
    assert not set(first) & set(second)
    assert ours <= set(first) | set(second)
    rows = shop.query(
        "SELECT count(*) AS n, count(exited_at) AS closed FROM segment_memberships"
        " WHERE site_id = %s",
        (shop.site_id,),
    )[0]
    assert rows == {"n": 30, "closed": 30}
