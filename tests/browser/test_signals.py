"""Impressions, forms and frustration signals, asserted on what the collector stored
and, for what must never leave the browser, on the requests themselves."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.browser

QUIET = {"pageviews": False, "scroll": False, "engagement": False, "clicks": False}


def sent_bodies(site) -> list[str]:
    """Every body the browser sends to the collector from now on (all pages of the context)."""
    bodies: list[str] = []

    def seen(request):
        if "/v1/" in request.url and request.post_data:
            bodies.append(request.post_data)

    site.context.on("request", seen)
    return bodies


VIEW_PAGE = """
<div id="hero" data-ff-view class="banner big">Summer <b>sale</b></div>
<div style="height:2000px"></div>
<div id="passed" data-ff-view>Scrolled past</div>
<div style="height:2000px"></div>
<div id="skipped" data-ff-ignore><p data-ff-view>ignored</p></div>
"""


def test_element_viewed_once_after_a_second_and_not_on_a_fast_scroll(site):
    page = site.open("/t/views.html", VIEW_PAGE, init=QUIET)
    [hero] = site.wait_for("Element Viewed")
    props = hero["properties"]
    assert props["selector"] == "#hero" and props["id"] == "hero" and props["tag"] == "div"
    assert props["text"] == "Summer sale" and props["classes"] == ["banner", "big"]
    assert 1000 <= props["visible_ms"] < 3000
    # A fast scroll past #passed: visible for ~200 ms only.
    page.evaluate("document.getElementById('passed').scrollIntoView()")
    page.wait_for_timeout(200)
    page.evaluate("scrollTo(0, 0)")
    # An element added later is observed too; #hero, back in view, is not sent twice.
    page.evaluate(
        "const el = document.createElement('section'); el.id = 'late';"
        "el.setAttribute('data-ff-view', ''); el.textContent = 'Late';"
        "document.body.prepend(el)"
    )
    site.wait_for("Element Viewed", 2)
    page.wait_for_timeout(1500)
    site.settle()
    assert sorted(r["properties"]["id"] for r in site.named("Element Viewed")) == ["hero", "late"]
    # Seen long enough, #passed counts.
    page.evaluate("document.getElementById('passed').scrollIntoView()")
    site.wait_for("Element Viewed", 3)
    page.wait_for_timeout(300)
    site.settle()
    ids = sorted(r["properties"]["id"] for r in site.named("Element Viewed"))
    assert ids == ["hero", "late", "passed"]


def test_element_viewed_again_in_a_new_page_view(site):
    page = site.open("/t/spa-views", VIEW_PAGE, init={**QUIET, "pageviews": True})
    site.wait_for("Element Viewed")
    page.evaluate("history.pushState({}, '', '/t/spa-views/2')")
    rows = site.wait_for("Element Viewed", 2)
    assert [r["page_path"] for r in rows] == ["/t/spa-views", "/t/spa-views/2"]


FORMS_PAGE = """
<form id="signup" name="signup-form" onsubmit="event.preventDefault()">
  <input name="email"><input type="password" name="pw">
  <input name="secret_answer" data-ff-ignore><textarea name="message"></textarea>
  <button>Join</button>
</form>
<form name="survey"><input name="city"><input type="password" name="pin2"></form>
<a id="away" href="/t/forms-next.html">next</a>
"""


def test_forms_started_submitted_abandoned_without_values(site):
    bodies = sent_bodies(site)
    page = site.open("/t/forms.html", FORMS_PAGE, init=QUIET)
    page.fill("[name=email]", "alice@example.com")
    page.fill("[name=pw]", "hunter2-pass")
    page.fill("[name=secret_answer]", "blue-whale")
    page.fill("[name=message]", "hello-there")
    page.wait_for_timeout(150)
    page.click("text=Join")
    site.wait_for("Form Submitted")
    # The second form is started (its last field a password: never named) and abandoned.
    page.fill("[name=city]", "Lisbon-town")
    page.fill("[name=pin2]", "9876")
    site.wait_for("Form Started", 2)
    site.serve("/t/forms-next.html", "<p>next</p>", init=QUIET)
    page.click("#away")
    [abandoned] = site.wait_for("Form Abandoned")
    started = {r["properties"]["form_name"]: r["properties"] for r in site.named("Form Started")}
    [submitted] = site.named("Form Submitted")

    first = dict(started["signup-form"])
    assert first.pop("ms_since_start") < 50
    assert first == {
        "form_id": "signup",
        "form_name": "signup-form",
        "selector": "#signup",
        "fields_touched": 1,
        "last_field": "email",
    }
    sub = submitted["properties"]
    assert sub["form_id"] == "signup" and sub["fields_touched"] == 4
    # The password and the data-ff-ignore field count as touched but are never named.
    assert sub["last_field"] == "message" and sub["ms_since_start"] >= 100
    # Sent by a keepalive request from a page being left (which Playwright may not report):
    # its stored properties are exactly these, no value among them.
    ab = dict(abandoned["properties"])
    assert ab.pop("ms_since_start") >= 0
    assert ab == {
        "form_id": "",
        "form_name": "survey",
        "selector": "form:nth-child(2)",
        "fields_touched": 2,
        "last_field": "city",
    }
    assert len(site.named("Form Abandoned")) == 1  # the submitted form is not abandoned
    sent = "\n".join(bodies)
    assert "Form Submitted" in sent
    for value in (
        "alice@example.com",
        "hunter2-pass",
        "blue-whale",
        "hello-there",
        "Lisbon-town",
        "9876",
    ):
        assert value not in sent


GET_FORM = """
<form action="/t/results.html" method="get">
  <input name="q" value="red shoes"><input name="access_token" value="tok-SECRET-1">
  <input name="userEmail" value="bob@example.com"><input name="extra_k" value="kept-or-not">
  <button id="go">Search</button>
</form>
"""


def test_get_form_secrets_are_stripped_before_sending(site):
    bodies = sent_bodies(site)
    init = {"scroll": False, "engagement": False, "sensitiveParams": ["extra_k"]}
    site.open("/t/search.html", GET_FORM, init=init)
    site.serve("/t/results.html", "<p>results</p>", init=init, with_query=True)
    site.page.click("#go")
    site.page.wait_for_url("**/t/results.html?*")
    rows = site.wait(lambda rs: len([r for r in rs if r["type"] == "page"]) == 2)
    site.settle()
    [results] = [r for r in rows if r["type"] == "page" and r["page_path"] == "/t/results.html"]
    assert results["properties"]["url"] == site.base + "/t/results.html?q=red+shoes"
    assert results["properties"]["search"] == "?q=red+shoes"
    sent = "\n".join(bodies)
    assert "red+shoes" in sent
    for secret in ("tok-SECRET-1", "bob%40example.com", "kept-or-not", "access_token"):
        assert secret not in sent


FRUSTRATION_PAGE = """
<div id="box" style="width:300px;height:100px;background:#eee">Price table</div>
<button id="nothing">Does nothing</button>
<button id="opens" onclick="document.getElementById('panel').hidden = false">Opens panel</button>
<div id="panel" hidden>Panel</div>
<a id="go" href="/t/frustration-next.html">Next page</a>
<a id="void" href="javascript:void(0)">Broken link</a>
"""


def test_rage_click_versus_double_click(site):
    page = site.open("/t/rage.html", FRUSTRATION_PAGE, init={**QUIET, "frustration": True})
    box = page.locator("#box")
    box.dblclick()
    page.wait_for_timeout(1300)
    for _ in range(4):
        box.click(position={"x": 20, "y": 20}, delay=10)
    # Three clicks spread over more than 30 px are no rage either.
    for x in (10, 60, 110):
        box.click(position={"x": x, "y": 50})
    [rage] = site.wait_for("Rage Click")
    page.wait_for_timeout(1300)
    site.settle()
    assert len(site.named("Rage Click")) == 1
    props = rage["properties"]
    assert props["clicks"] == 4 and props["selector"] == "#box" and props["text"] == "Price table"


def test_dead_click_versus_working_button_and_followed_link(site):
    page = site.open("/t/dead.html", FRUSTRATION_PAGE, init={**QUIET, "frustration": True})
    page.click("#opens")
    page.click("#nothing")
    page.click("#void")
    dead = site.wait_for("Dead Click", 2)
    assert [(d["properties"]["selector"], d["properties"]["tag"]) for d in dead] == [
        ("#nothing", "button"),
        ("#void", "a"),
    ]
    site.serve("/t/frustration-next.html", "<p>next</p>", init={**QUIET, "pageviews": True})
    # The next page answers slowly (1.5 s): a followed link is still no dead click.
    site.context.route(
        site.base + "/t/frustration-next.html",
        lambda route: (page.wait_for_timeout(1500), route.fallback()),
    )
    page.click("#go")
    site.wait(lambda rs: any(r["type"] == "page" for r in rs))
    site.settle(1.2)
    assert [r["properties"]["selector"] for r in site.named("Dead Click")] == ["#nothing", "#void"]


def test_the_tracker_strips_exactly_what_the_collector_scrubs(site):
    """The tracker's list is a copy of the collector's: every collector word (bare and in
    compound names) is stripped before sending, and names that merely contain one are not."""
    from footfall.pipeline.scrub import SENSITIVE_PARAMS

    names = sorted(SENSITIVE_PARAMS)
    query = "&".join(
        [f"{n}=v{i}" for i, n in enumerate(names)]
        + ["user_" + names[0] + "=x", "my" + names[1].capitalize() + "=y"]
        + ["keyboard=ok1", "passage=ok2", "authors=ok3", "page=ok4"]
    )
    bodies = sent_bodies(site)
    site.serve("/t/params.html", "<p>p</p>", init={"scroll": False}, with_query=True)
    site.page.goto(site.base + "/t/params.html?" + query)
    site.wait(lambda rs: len(rs) == 1)
    [body] = [json.loads(b) for b in bodies if '"page"' in b]
    url = body["batch"][0]["context"]["page"]["url"]
    assert url == site.base + "/t/params.html?keyboard=ok1&passage=ok2&authors=ok3&page=ok4"
