"""The demo page served by the collector: snippet filled in, events stored and shown."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def test_demo_page_tracks_and_shows_events(site):
    page = site.page
    page.goto(site.base + "/demo")
    page.wait_for_function("window.footfall && window.footfall.v")
    html = page.content()
    assert "{{" not in html
    anon = page.evaluate(
        "new Promise(r => setTimeout(() => r(JSON.parse(localStorage.ff_a)), 300))"
    )
    page.click("#cta")
    page.hover("#plan-pro")
    page.wait_for_timeout(700)
    page.mouse.move(1, 1)

    def stored(rows):
        names = {r["event"] or r["type"] for r in rows}
        return {"page", "Element Clicked", "Element Hovered"} <= names

    rows = site.collector.query("SELECT type, event FROM events WHERE anonymous_id = %s", (anon,))
    for _ in range(100):
        if stored(rows):
            break
        page.wait_for_timeout(100)
        rows = site.collector.query(
            "SELECT type, event FROM events WHERE anonymous_id = %s", (anon,)
        )
    assert stored(rows), rows
    # The panel polls the recent-events feed.
    page.wait_for_function(
        "document.getElementById('rows').textContent.includes('Element Clicked')", timeout=6000
    )
