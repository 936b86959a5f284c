"""The tracker's side of the segments contract: footfall('segments', cb), the
footfall:segments window event, footfall('anonymousId'), against the real collector."""

from __future__ import annotations

import json

import psycopg
import pytest

pytestmark = pytest.mark.browser

QUIET = {"scroll": False, "engagement": False}

RECORD_EVENTS = (
    "window.segmentEvents = [];"
    "addEventListener('footfall:segments', e => segmentEvents.push(e.detail.segments));"
)


def answers(site) -> list[dict]:
    """The JSON bodies of the collector's ingest answers, as the page received them."""
    seen: list[dict] = []

    def on_response(response):
        if response.url.endswith("/v1/batch") and response.status == 200:
            seen.append(json.loads(response.body()))

    site.page.on("response", on_response)
    return seen


def test_the_tracker_keeps_whatever_segments_the_collector_answers(site):
    """Whatever the real collector answers (a list, or no field when the site exposes no
    segments), the tracker's state and events follow it."""
    received = answers(site)
    page = site.open("/t/seg-any.html", init=QUIET, before_init=RECORD_EVENTS)
    site.wait(lambda rs: len(rs) == 1)
    page.wait_for_timeout(300)
    assert received
    lists = [a["segments"] for a in received if "segments" in a]
    events = page.evaluate("segmentEvents")
    if lists:
        assert events and events[-1] == lists[-1]
    else:
        assert events == []
    assert page.evaluate("footfall('anonymousId')") == site.events()[0]["anonymous_id"]


def test_no_segments_request_before_consent(site):
    requests = []
    site.context.on(
        "request", lambda r: requests.append(r.url) if "/v1/segments" in r.url else None
    )
    page = site.open("/t/seg-consent.html", init={**QUIET, "requireConsent": True})
    result = page.evaluate("new Promise(done => footfall('segments', done))")
    assert result == [] and requests == []


try:
    from footfall.storage import segments as segments_storage
except ImportError:  # the collector side of segments (issue 10) is not in this tree
    segments_storage = None
needs_segments = pytest.mark.skipif(
    segments_storage is None, reason="segments not on this collector"
)

TWO_PAGES = {
    "key": "two-pages",
    "expose": "browser",
    "when": {"count": {"type": "page"}, "within": "1h", "gte": 2},
}


@needs_segments
def test_segments_arrive_with_answers_and_on_request(site):
    with psycopg.connect(site.collector.dsn) as conn, conn.transaction():
        segments_storage.create_segment(conn, site.site_id, TWO_PAGES)
    page = site.open("/t/seg", init=QUIET, before_init=RECORD_EVENTS)
    site.wait(lambda rs: len(rs) == 1)
    page.wait_for_function("segmentEvents.length === 1")
    assert page.evaluate("segmentEvents") == [[]]  # known, and not a member yet
    page.evaluate("history.pushState({}, '', '/t/seg/2')")
    page.wait_for_function("segmentEvents.length === 2")
    assert page.evaluate("segmentEvents") == [[], ["two-pages"]]
    assert page.evaluate("new Promise(done => footfall('segments', done))") == ["two-pages"]
    # A new page asks GET /v1/segments before any answer came back.
    requests = []
    site.context.on(
        "request", lambda r: requests.append(r.url) if "/v1/segments" in r.url else None
    )
    page = site.open("/t/seg/3", init={**QUIET, "pageviews": False})
    assert page.evaluate("new Promise(done => footfall('segments', done))") == ["two-pages"]
    anonymous_id = page.evaluate("footfall('anonymousId')")
    assert len(requests) == 1 and f"anonymousId={anonymous_id}" in requests[0]
