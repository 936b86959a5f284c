"""Identity and sessions: anonymousId, identify/alias/reset, session timeout."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

QUIET = {"pageviews": False, "scroll": False, "engagement": False}


def test_identify_persists_user_and_reset_starts_over(site):
    page = site.open("/t/id.html", init=QUIET)
    page.evaluate(
        "footfall('track', 'Before'); footfall('identify', 'u-42', {plan: 'pro'}); footfall('track', 'During')"
    )
    site.wait_for("During")
    # The user id survives a page load.
    page = site.open("/t/id2.html", init=QUIET)
    page.evaluate("footfall('track', 'NextPage'); footfall('reset'); footfall('track', 'After')")
    site.wait_for("After")
    rows = {(r["event"] or r["type"]): r for r in site.settle()}
    before, identify, during, nxt, after = (
        rows[k] for k in ["Before", "identify", "During", "NextPage", "After"]
    )
    assert (
        before["user_id"] is None
        and identify["user_id"]
        and during["user_id"] == identify["user_id"]
    )
    assert nxt["user_id"] == identify["user_id"]
    assert identify["traits"] is not None
    assert len({before["anonymous_id"], during["anonymous_id"], nxt["anonymous_id"]}) == 1
    assert after["user_id"] is None and after["anonymous_id"] != before["anonymous_id"]
    assert after["session_id"] != nxt["session_id"] and after["context"]["sessionStart"] is True
    assert page.evaluate("JSON.parse(localStorage.ff_a)") == after["anonymous_id"]


def test_alias_links_previous_id(site):
    page = site.open("/t/alias.html", init=QUIET)
    page.evaluate("footfall('alias', 'new-id'); footfall('track', 'Later')")
    rows = site.wait(lambda rs: len(rs) == 2)
    alias = next(r for r in rows if r["type"] == "alias")
    assert alias["user_id"] and alias["context"] is not None
    assert next(r for r in rows if r["event"] == "Later")["user_id"] == alias["user_id"]


def test_session_slides_and_expires_after_idle_timeout(site):
    page = site.open("/t/sess.html", init={**QUIET, "sessionTimeout": 1500})
    page.evaluate("footfall('track', 'One')")
    page.wait_for_timeout(1000)
    page.evaluate("footfall('track', 'Two')")  # within the timeout: same session, slides
    page.wait_for_timeout(1000)
    page.evaluate("footfall('track', 'Three')")  # 2 s after One, 1 s after Two: still the same
    page.wait_for_timeout(1800)
    page.evaluate("footfall('track', 'Four')")  # idle longer than the timeout: new session
    site.wait_for("Four")
    rows = {r["event"]: r for r in site.settle()}
    assert rows["One"]["session_id"] == rows["Two"]["session_id"] == rows["Three"]["session_id"]
    assert rows["Four"]["session_id"] != rows["One"]["session_id"]
    assert rows["One"]["context"]["sessionStart"] and rows["Four"]["context"]["sessionStart"]
    assert "sessionStart" not in rows["Two"]["context"]


def test_session_max_age_caps_a_busy_session(site):
    page = site.open("/t/cap.html", init={**QUIET, "sessionMaxAge": 800})
    for name in ["A", "B", "C"]:
        page.evaluate(f"footfall('track', '{name}')")
        page.wait_for_timeout(500)
    site.wait_for("C")
    rows = {r["event"]: r for r in site.settle()}
    assert rows["A"]["session_id"] == rows["B"]["session_id"] != rows["C"]["session_id"]
