"""Lossless transport: retries, drops, keepalive-sized batches, the persisted queue."""

from __future__ import annotations

import json
from collections import Counter

import pytest

pytestmark = pytest.mark.browser

QUIET = {"pageviews": False, "scroll": False, "engagement": False}


def intercept(site, statuses, headers=None):
    """Answer the first len(statuses) batch requests with those statuses, then pass through."""
    seen = []

    def handle(route):
        body = json.loads(route.request.post_data)
        seen.append(body)
        if len(seen) <= len(statuses):
            route.fulfill(status=statuses[len(seen) - 1], body="{}", headers=headers or {})
        else:
            route.continue_()

    site.context.route(site.base + "/v1/batch", handle)
    return seen


def test_request_shape_is_a_simple_cors_request(site):
    requests = []
    site.page.on("request", lambda r: requests.append(r) if r.url.endswith("/v1/batch") else None)
    page = site.open("/t/shape.html", init=QUIET)
    page.evaluate("footfall('track', 'Hello', {a: 1})")
    site.wait_for("Hello")
    [req] = requests
    # fetch's type for a string body: its essence text/plain is CORS-safelisted (no preflight).
    assert req.method == "POST" and req.headers["content-type"] == "text/plain;charset=UTF-8"
    assert "authorization" not in req.headers and "cookie" not in req.headers
    body = json.loads(req.post_data)
    assert set(body) == {"batch", "sentAt", "writeKey"} and body["writeKey"] == site.write_key


def test_503_then_recovery_delivers_exactly_once(site):
    seen = intercept(site, [503, 503, 429], {"Retry-After": "0"})
    page = site.open("/t/retry.html", init=QUIET)
    page.evaluate("for (let i = 0; i < 5; i++) footfall('track', 'Retry', {i})")
    rows = site.wait_for("Retry", 5)
    site.settle(1.0)
    assert len(site.named("Retry")) == 5 and sorted(r["properties"]["i"] for r in rows) == list(
        range(5)
    )
    # The same messages (same ids) were offered each time; the collector stored them once.
    ids = [tuple(m["messageId"] for m in b["batch"]) for b in seen]
    assert len(seen) >= 4 and len(set(ids[:4])) == 1


def test_network_errors_back_off_and_retry(site):
    attempts = []

    def handle(route):
        attempts.append(1)
        route.abort() if len(attempts) <= 2 else route.continue_()

    site.context.route(site.base + "/v1/batch", handle)
    page = site.open("/t/neterr.html", init=QUIET)
    page.evaluate("footfall('track', 'Eventually')")
    site.wait_for("Eventually", timeout=15)
    assert len(attempts) == 3


def test_other_4xx_is_dropped_not_retried(site):
    seen = intercept(site, [400])
    page = site.open("/t/drop.html", init=QUIET)
    page.evaluate("footfall('track', 'Bad')")
    page.wait_for_timeout(1200)
    assert len(seen) == 1 and site.events() == []
    assert page.evaluate("footfall('stats')") == {
        "queued": 0,
        "dropped": 1,
        "refused": {},
        "failed": {},
        "errors": {"400": 1},
    }
    page.evaluate("footfall('track', 'Good')")
    site.wait_for("Good")


def test_large_volume_is_split_under_the_keepalive_limit(site):
    seen = intercept(site, [])
    page = site.open("/t/big.html", init={**QUIET, "batchSize": 100})
    page.evaluate(
        "for (let i = 0; i < 60; i++) footfall('track', 'Big', {i, pad: 'x'.repeat(4000)})"
    )
    site.wait_for("Big", 60, timeout=20)
    sizes = [len(json.dumps(b)) for b in seen]
    assert len(seen) >= 5 and max(sizes) < 64 * 1024
    assert Counter(m["messageId"] for b in seen for m in b["batch"]).most_common(1)[0][1] == 1


def test_offline_events_go_out_from_the_persisted_queue_on_the_next_page(site):
    page = site.open("/t/off1.html", init={"scroll": False})
    site.wait(lambda rs: len(rs) == 1)
    site.context.set_offline(True)
    page.evaluate("footfall('track', 'Offline', {n: 1}); footfall('track', 'Offline', {n: 2})")
    page.wait_for_timeout(500)
    stored = page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('ff_q'))")
    assert len(stored) == 1
    # Leave while still offline (the page's last words cannot go out either).
    page.evaluate("location.href = '/t/off2.html'")
    page.wait_for_timeout(300)
    site.context.set_offline(False)
    site.open("/t/off2.html", init={"scroll": False})
    site.wait(
        lambda rs: (
            len([r for r in rs if r["event"] == "Offline"]) == 2
            and len([r for r in rs if r["type"] == "page"]) == 2
        )
    )
    site.settle(1.0)
    assert sorted(r["properties"]["n"] for r in site.named("Offline")) == [1, 2]
    assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('ff_q'))") == []


def test_closed_tab_queue_is_sent_by_a_later_page(site):
    intercept(site, [503] * 100, {"Retry-After": "30"})
    page = site.open("/t/closed1.html", init=QUIET)
    page.evaluate("footfall('track', 'Survivor')")
    page.wait_for_timeout(400)
    page.close()
    site.context.unroute(site.base + "/v1/batch")
    site.page = site.context.new_page()
    site.open("/t/closed2.html", init=QUIET)
    [row] = site.wait_for("Survivor")
    assert row["page_path"] == "/t/closed1.html"
