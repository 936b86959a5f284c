"""Consent: nothing stored or sent before a decision; held events go out on grant, vanish on deny."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.browser

STORAGE = "() => ({ls: Object.keys(localStorage), cookie: document.cookie})"
CLICKABLE = '<script>document.addEventListener("click", e => e.preventDefault())</script><a href="/x">Link</a>'


def sent_batches(page):
    batches = []
    page.on(
        "request",
        lambda r: (
            batches.append(json.loads(r.post_data)["batch"])
            if r.url.endswith("/v1/batch")
            else None
        ),
    )
    return batches


def test_nothing_before_decision_then_held_events_sent_on_grant(site):
    batches = sent_batches(site.page)
    page = site.open("/t/consent.html", CLICKABLE, init={"requireConsent": True, "scroll": False})
    page.evaluate("footfall('identify', 'user-7', {plan: 'pro'})")
    page.click("text=Link")
    page.wait_for_timeout(600)
    assert batches == [] and site.events() == []
    assert page.evaluate(STORAGE) == {"ls": [], "cookie": ""}

    page.evaluate("footfall('consent', {analytics: true, marketing: 0, policy_version: 2})")
    rows = site.wait(lambda rs: len(rs) >= 4)
    site.settle()
    assert [(r["type"], r["event"]) for r in site.events()] == [
        ("page", None),
        ("identify", None),
        ("track", "Element Clicked"),
        ("track", "Consent Updated"),
    ]
    consent = site.named("Consent Updated")[0]
    assert consent["properties"] == {"analytics": True, "marketing": False, "policy_version": "2"}
    for r in rows:
        assert r["context"]["consent"] == {
            "categoryPreferences": {"analytics": True, "marketing": False}
        }
    assert len({r["anonymous_id"] for r in rows}) == 1
    assert {"ff_a", "ff_c", "ff_s", "ff_u"} <= set(page.evaluate(STORAGE)["ls"])
    # The decision is remembered: the next page view goes out without asking again.
    site.open("/t/consent2.html", init={"requireConsent": True, "scroll": False})
    site.wait(lambda rs: len([r for r in rs if r["type"] == "page"]) == 2)


def test_deny_discards_held_events_and_stores_no_identifier(site):
    batches = sent_batches(site.page)
    page = site.open("/t/deny.html", CLICKABLE, init={"requireConsent": True, "scroll": False})
    page.click("text=Link")
    page.evaluate("footfall('consent', {analytics: false})")
    page.click("text=Link")
    page.evaluate("footfall('track', 'After')")
    page.wait_for_timeout(800)
    # Only the decision itself is sent (for the consent ledger), none of the events.
    assert [m["event"] for b in batches for m in b] == ["Consent Updated"]
    assert batches[0][0]["properties"] == {"analytics": False}
    assert all(r["event"] == "Consent Updated" for r in site.events())
    assert page.evaluate(STORAGE) == {"ls": ["ff_c"], "cookie": ""}


def test_withdrawal_stops_collection_and_wipes_identifiers(site):
    page = site.open("/t/withdraw.html", init={"scroll": False})
    site.wait(lambda rs: len(rs) == 1)
    assert "ff_a" in page.evaluate(STORAGE)["ls"]
    page.evaluate("footfall('consent', {analytics: false}); footfall('track', 'Ignored')")
    site.wait_for("Consent Updated")
    site.settle()
    assert not site.named("Ignored")
    assert page.evaluate(STORAGE)["ls"] == ["ff_c"]


def test_global_privacy_control_is_an_opt_out(site):
    site.context.add_init_script(
        "Object.defineProperty(navigator, 'globalPrivacyControl', {get: () => true})"
    )
    batches = sent_batches(site.page)
    page = site.open("/t/gpc.html", init={})
    page.evaluate("footfall('track', 'Nope')")
    page.wait_for_timeout(600)
    assert batches == [] and page.evaluate(STORAGE) == {"ls": [], "cookie": ""}
    # An explicit choice on the site's banner still wins.
    page.evaluate("footfall('consent', {analytics: true}); footfall('track', 'Yes')")
    site.wait_for("Yes")


def test_gpc_can_be_ignored_by_option(site):
    site.context.add_init_script(
        "Object.defineProperty(navigator, 'globalPrivacyControl', {get: () => true})"
    )
    site.open("/t/gpc2.html", init={"respectGPC": False})
    site.wait(lambda rs: any(r["type"] == "page" for r in rs))
