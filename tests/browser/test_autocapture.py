"""Automatic events, asserted on what the real collector stored."""

from __future__ import annotations

import json
import re
import uuid

import pytest

pytestmark = pytest.mark.browser

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_page_view_and_message_envelope(site):
    site.open("/t/home.html?q=1", "<p>hello</p>", title="Home")
    [page] = [
        r for r in site.wait(lambda rs: any(r["type"] == "page" for r in rs)) if r["type"] == "page"
    ]
    url = site.base + "/t/home.html?q=1"
    assert page["properties"] == {
        "url": url,
        "path": "/t/home.html",
        "referrer": "",
        "title": "Home",
        "search": "?q=1",
    }
    assert UUID4.match(page["message_id"]) and UUID4.match(page["anonymous_id"])
    ctx = page["context"]
    assert ctx["library"]["name"] == "footfall.js"
    assert ctx["page"]["url"] == url
    assert isinstance(ctx["sessionId"], str) and ctx["sessionStart"] is True
    assert ctx["screen"] == {"width": 1000, "height": 700}
    assert ctx["timezone"] and ctx["locale"] and ctx["userAgent"]
    assert page["session_id"] == ctx["sessionId"]


def test_preload_queue_is_drained_in_order(site):
    # Calls made before the script loads (even before init) go out once it does, in order.
    sent: list[str] = []

    def seen(request):
        if "/v1/batch" in request.url:
            sent.extend(m["event"] for m in json.loads(request.post_data)["batch"])

    site.context.on("request", seen)
    site.open(
        "/t/q.html",
        before_init="footfall('track','Early',{n:1});",
        init={"pageviews": False, "scroll": False},
    )
    site.page.evaluate("footfall('track', 'Late', {n: 2})")
    rows = site.wait(lambda rs: len(rs) >= 2)
    site.page.wait_for_timeout(100)  # delivers request events still queued in Playwright
    assert sent == ["Early", "Late"]
    # The stored timestamps may not show that order: the collector corrects each request's
    # timestamps by that request's own delay (receivedAt - (sentAt - timestamp)), so two
    # events a few ms apart that went out in two requests can be stored either way round.
    # The browser's clock (original_timestamp) keeps the order they were recorded in.
    early, late = sorted(rows, key=lambda r: r["properties"]["n"])
    assert [early["event"], late["event"]] == ["Early", "Late"]
    assert early["original_timestamp"] <= late["original_timestamp"]
    assert early["context"]["sessionStart"] is True
    assert "sessionStart" not in late["context"]
    assert late["context"]["sessionId"] == early["context"]["sessionId"]


CLICK_PAGE = """
<script>document.addEventListener('click', e => e.preventDefault())</script>
<nav class="top main"><a id="home" href="/t/other.html">  Other
   page </a></nav>
<a class="ext" href="https://example.org/x">Outbound</a>
<a href="/files/Report.PDF">Annual report</a>
<button class="btn primary" type="button">Buy <b>now</b></button>
<div role="button">Role button</div>
<form><input type="password" id="pw" value="secret"><input type="submit" id="go" value="Send secret"></form>
<section data-ff-track><span id="inner">Tracked section</span></section>
<p>plain paragraph</p>
<div data-ff-ignore><button id="quiet">Silent</button></div>
<a href="/t/x.html" data-ff-ignore>Ignored link</a>
"""


def test_element_clicked(site):
    page = site.open(
        "/t/clicks.html",
        CLICK_PAGE,
        init={"pageviews": False, "scroll": False, "engagement": False},
    )
    for sel in [
        "#home",
        ".ext",
        "text=Annual report",
        "button.btn",
        "[role=button]",
        "#pw",
        "#go",
        "#inner",
        "p",
        "#quiet",
        "text=Ignored link",
    ]:
        page.click(sel)
    clicks = site.wait_for("Element Clicked", 7)
    site.settle()
    props = [r["properties"] for r in site.named("Element Clicked")]
    assert len(props) == 7, props
    by_text = {p["text"]: p for p in props}
    home = by_text["Other page"]
    assert home["tag"] == "a" and home["id"] == "home" and home["selector"] == "#home"
    assert home["href"] == site.base + "/t/other.html"
    assert (
        home["outbound"] is False
        and home["file_download"] is False
        and "file_extension" not in home
    )
    assert by_text["Outbound"]["outbound"] is True and by_text["Outbound"]["classes"] == ["ext"]
    pdf = by_text["Annual report"]
    assert (
        pdf["file_download"] is True and pdf["file_extension"] == "pdf" and pdf["outbound"] is False
    )
    button = by_text["Buy now"]
    assert button["tag"] == "button" and button["classes"] == ["btn", "primary"]
    assert button["selector"].startswith("button.btn.primary")
    assert "href" not in button
    assert by_text["Role button"]["tag"] == "div"
    assert by_text["Tracked section"]["tag"] == "section"
    submit = [p for p in props if p["tag"] == "input"]
    assert len(submit) == 1 and submit[0]["id"] == "go" and submit[0]["text"] == ""
    # Never a field's value, never the ignored elements.
    assert "secret" not in str(props).lower()
    assert not {"Silent", "Ignored link", "plain paragraph"} & set(by_text)
    assert all(c["context"]["page"]["path"] == "/t/clicks.html" for c in clicks)


def test_spa_navigation_page_views(site):
    page = site.open("/t/app", "<main>app</main>", init={"scroll": False})
    site.wait(lambda rs: any(r["type"] == "page" for r in rs))
    page.evaluate("history.pushState({}, '', '/t/app/a'); document.title = 'A'")
    page.evaluate("history.replaceState({}, '', '/t/app/a')")  # same URL: no new page view
    page.evaluate("location.hash = '#section'")  # hash only: no new page view
    page.evaluate("history.pushState({}, '', '/t/app/b?x=1')")
    page.wait_for_timeout(100)
    page.go_back()  # -> /t/app/a#section (popstate)
    page.wait_for_timeout(100)
    page.go_back()  # -> /t/app/a: same page view
    rows = site.wait(lambda rs: len([r for r in rs if r["type"] == "page"]) >= 4)
    site.settle()
    pages = [r["properties"] for r in site.events() if r["type"] == "page"]
    assert [p["path"] for p in pages] == ["/t/app", "/t/app/a", "/t/app/b", "/t/app/a"], pages
    assert pages[1]["referrer"] == site.base + "/t/app" and pages[1]["title"] == "A"
    assert pages[2]["search"] == "?x=1" and pages[2]["referrer"] == site.base + "/t/app/a"
    assert len({r["session_id"] for r in rows}) == 1


def _marks(site):
    return sorted(r["properties"]["depth_percent"] for r in site.named("Scroll Depth Reached"))


def test_scroll_depth_on_a_growing_page(site):
    page = site.open(
        "/t/long.html",
        '<div id="c" style="height:2800px">top</div>',
        init={"pageviews": False, "engagement": False},
    )
    page.evaluate("scrollTo(0, 1050 - innerHeight)")  # bottom of viewport at 1050 / 2800 ~ 37 %
    site.wait_for("Scroll Depth Reached", 1)
    page.evaluate("scrollTo(0, 1400 - innerHeight)")  # 50 %
    site.wait_for("Scroll Depth Reached", 2)
    # Lazy content doubles the page: 50 % of the old page is 25 % of the new one,
    # nothing new fires, and nothing fires twice.
    page.evaluate("document.getElementById('c').style.height = '5600px'; scrollTo(0, 0)")
    page.wait_for_timeout(300)
    page.evaluate("scrollTo(0, 4200 - innerHeight)")  # 75 % of the grown page
    site.wait_for("Scroll Depth Reached", 3)
    page.evaluate("scrollTo(0, document.documentElement.scrollHeight)")
    rows = site.wait_for("Scroll Depth Reached", 5)
    site.settle()
    assert _marks(site) == [25, 50, 75, 90, 100]
    by_mark = {r["properties"]["depth_percent"]: r["properties"] for r in rows}
    assert by_mark[25]["page_height"] == 2800 and by_mark[75]["page_height"] == 5600
    assert by_mark[100]["viewport_height"] == 700


def test_scroll_depth_short_page_fires_all_marks_once(site):
    page = site.open("/t/short.html", "<p>short</p>", init={"pageviews": False})
    site.wait_for("Scroll Depth Reached", 5)
    page.evaluate("scrollTo(0, 10); dispatchEvent(new Event('resize'))")
    site.settle()
    assert _marks(site) == [25, 50, 75, 90, 100]


HOVER_PAGE = """
<div style="height:200px">space</div>
<div id="card" class="card" data-ff-hover style="width:300px;height:100px">Pricing <span>card</span></div>
<div style="height:200px">space</div>
<div id="quick" data-ff-hover style="width:300px;height:100px">Quick</div>
<div data-ff-ignore><div id="silent" data-ff-hover style="width:300px;height:100px">Silent</div></div>
"""


def test_element_hovered_threshold(site):
    page = site.open(
        "/t/hover.html", HOVER_PAGE, init={"pageviews": False, "scroll": False, "engagement": False}
    )
    page.hover("#quick")
    page.wait_for_timeout(150)
    page.mouse.move(5, 5)
    page.hover("#silent")
    page.wait_for_timeout(700)
    page.mouse.move(5, 5)
    page.hover("#card")
    page.wait_for_timeout(350)
    page.hover("#card span")  # moving inside the element keeps the same hover
    page.wait_for_timeout(350)
    page.mouse.move(5, 5)
    [row] = site.wait_for("Element Hovered")
    site.settle()
    assert len(site.named("Element Hovered")) == 1
    p = row["properties"]
    assert (
        p["id"] == "card"
        and p["selector"] == "#card"
        and p["tag"] == "div"
        and p["text"] == "Pricing card"
    )
    assert isinstance(p["dwell_ms"], int) and 650 <= p["dwell_ms"] < 3000


def test_hover_threshold_is_configurable(site):
    page = site.open(
        "/t/hover2.html",
        '<button class="b" style="width:200px;height:50px">Go</button>',
        init={"pageviews": False, "hoverSelector": "button", "hoverMs": 100, "clicks": False},
    )
    page.hover("button")
    page.wait_for_timeout(200)
    page.mouse.move(500, 500)
    [row] = site.wait_for("Element Hovered")
    assert (
        row["properties"]["selector"].startswith("button.b")
        and row["properties"]["dwell_ms"] >= 100
    )


def test_page_engaged_on_leaving(site):
    page = site.open(
        "/t/engaged.html", '<div style="height:3000px">long</div>', init={"pageviews": False}
    )
    for i in range(6):
        page.mouse.move(100 + i * 10, 100)
        page.wait_for_timeout(150)
    page.evaluate("scrollTo(0, 700)")
    page.wait_for_timeout(200)
    site.open("/t/next.html", "<p>next</p>", init={"pageviews": False, "scroll": False})
    [row] = site.wait_for("Page Engaged")
    site.settle(1.0)
    assert len(site.named("Page Engaged")) == 1
    p = row["properties"]
    assert 800 <= p["engaged_ms"] < 30000
    assert p["max_scroll_percent"] == 47  # (700 + 700) / 3000
    assert row["page_path"] == "/t/engaged.html"


def test_data_layer_bridge(site):
    page = site.open(
        "/t/dl.html",
        before_init="window.dataLayer=[{event:'signup',plan:'early'}];",
        init={"pageviews": False, "scroll": False, "dataLayerEvents": ["signup", "purchase"]},
    )
    page.evaluate(
        "dataLayer.push({event: 'purchase', value: 12, 'gtm.uniqueEventId': 3}, {event: 'gtm.click'})"
    )
    site.wait(lambda rs: len(rs) >= 2)
    site.settle()
    assert [(r["event"], r["properties"]) for r in site.events()] == [
        ("signup", {"plan": "early"}),
        ("purchase", {"value": 12}),
    ]


def test_unique_message_ids(site):
    page = site.open("/t/ids.html", init={"pageviews": False, "scroll": False})
    page.evaluate("for (let i = 0; i < 45; i++) footfall('track', 'Bulk', {i})")
    rows = site.wait(lambda rs: len(rs) >= 45)
    assert len({r["message_id"] for r in rows}) == 45
    assert all(uuid.UUID(r["message_id"]).version == 4 for r in rows)
