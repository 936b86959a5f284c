"""Page lifecycle and delivery: bfcache restores, hash routing, a slow collector at
pagehide, and a wrong write key."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from tests.browser.conftest import CHROMIUM, Site, desktop_user_agent, snippet

pytestmark = pytest.mark.browser

QUIET = {"pageviews": False, "scroll": False, "engagement": False}


def page_views(site) -> list[dict]:
    return [r for r in site.events() if r["type"] == "page"]


@pytest.fixture
def bfcache_site(browser, collector) -> Iterator[Site]:
    """A site in a second Chromium with the back/forward cache on (Playwright's default
    arguments turn it off)."""
    with_cache = browser.browser_type.launch(
        executable_path=CHROMIUM,
        args=["--no-sandbox", "--disable-background-networking"],
        ignore_default_args=["--disable-back-forward-cache"],
    )
    site_id, write_key = collector.make_site(
        allowed_origins=["*"], settings={"allow_undeclared_events": True, "allow_bots": True}
    )
    context = with_cache.new_context(user_agent=desktop_user_agent(with_cache))
    yield Site(collector, context, context.new_page(), site_id, write_key)
    with_cache.close()


def test_bfcache_restore_is_a_new_page_view(bfcache_site):
    site = bfcache_site
    page = site.open(
        "/t/bf-a.html", "<a id=next href='/t/bf-b.html'>next</a>", init={"scroll": False}
    )
    page.evaluate("addEventListener('pageshow', e => { window.restored = e.persisted })")
    site.wait(lambda rs: len(rs) == 1)
    site.serve("/t/bf-b.html", "<p>b</p>", init={"scroll": False})
    page.click("#next")
    site.wait(lambda rs: len([r for r in rs if r["type"] == "page"]) == 2)
    page.go_back(wait_until="commit")  # a restore fires no load event
    page.wait_for_function("window.restored !== undefined")
    assert page.evaluate("window.restored") is True  # really restored from the cache
    site.wait(lambda rs: len([r for r in rs if r["type"] == "page"]) == 3)
    site.settle()
    views = page_views(site)
    assert [v["page_path"] for v in views] == ["/t/bf-a.html", "/t/bf-b.html", "/t/bf-a.html"]
    assert len({v["message_id"] for v in views}) == 3
    assert views[2]["properties"]["referrer"] == site.base + "/t/bf-a.html"


def test_hash_routing_page_views_keyed_by_full_url(site):
    url = site.serve(
        "/t/hash.html", "<main>app</main>", init={"scroll": False, "hashRouting": True}
    )
    page = site.page
    page.goto(url + "#/home")
    site.wait(lambda rs: len(rs) == 1)
    page.evaluate("location.hash = '#/products'")
    page.wait_for_timeout(50)
    page.evaluate("location.hash = '#/products'")  # same URL: no new view
    page.evaluate("location.hash = '#/cart'")
    site.wait(lambda rs: len([r for r in rs if r["type"] == "page"]) == 3)
    site.settle()
    urls = [v["properties"]["url"] for v in page_views(site)]
    base = site.base + "/t/hash.html"
    assert urls == [base + "#/home", base + "#/products", base + "#/cart"]
    assert page_views(site)[2]["properties"]["referrer"] == base + "#/products"


def test_manual_page_after_a_hash_change_has_the_new_url(site):
    page = site.open("/t/manual.html", "<main>app</main>", init={**QUIET})
    page.evaluate("location.hash = '#/step-2'; footfall('page')")
    site.wait(lambda rs: len(rs) == 1)
    [view] = page_views(site)
    assert view["properties"]["url"] == site.base + "/t/manual.html#/step-2"
    assert view["context"]["page"]["url"] == site.base + "/t/manual.html#/step-2"


class SlowProxy:
    """A real HTTP proxy in front of the collector that answers after `delay` seconds."""

    def __init__(self, target: str, delay: float) -> None:
        target_parts = urlsplit(target)
        self.posts: list[float] = []  # when each POST arrived
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _forward(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                if self.command == "POST":
                    outer.posts.append(time.monotonic())
                    time.sleep(delay)
                upstream = http.client.HTTPConnection(
                    target_parts.hostname, target_parts.port, timeout=30
                )
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

            do_POST = _forward
            do_GET = _forward
            do_OPTIONS = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slow_proxy(collector) -> Iterator[SlowProxy]:
    proxy = SlowProxy(collector.base_url, 1.5)
    yield proxy
    proxy.close()


def test_events_queued_behind_a_slow_request_leave_at_pagehide(site, slow_proxy):
    # The page and the script come through the proxy too: pages served by Playwright count
    # as public, and Chromium refuses their requests to another loopback origin.
    options = {**site.options(scroll=False, engagement=False), "endpoint": slow_proxy.url}
    html = "<!doctype html><title>slow</title>" + snippet(slow_proxy.url + "/a/s.js", options)
    url = slow_proxy.url + "/t/slow.html"
    site.context.route(url, lambda route: route.fulfill(body=html, content_type="text/html"))
    page = site.page
    page.goto(url)
    # The page view's request is on its way (the collector answers in 1.5 s) ...
    deadline = time.monotonic() + 5
    while not slow_proxy.posts and time.monotonic() < deadline:
        page.wait_for_timeout(20)
    assert len(slow_proxy.posts) == 1
    # ... when 20 more events are queued and the visitor leaves for another site.
    page.evaluate("for (let i = 0; i < 20; i++) footfall('track', 'Behind', {i})")
    page.goto("about:blank")
    # Nothing of the site runs any more; the keepalive requests deliver anyway.
    rows = site.wait(lambda rs: len([r for r in rs if r["event"] == "Behind"]) == 20, timeout=15)
    assert sorted(r["properties"]["i"] for r in rows if r["event"] == "Behind") == list(range(20))
    assert len([r for r in rows if r["type"] == "page"]) == 1


def test_wrong_write_key_one_request_no_retry_counted_and_logged(site):
    requests = []
    console = []
    site.context.on("request", lambda r: requests.append(r) if "/v1/batch" in r.url else None)
    site.page.on("console", lambda m: console.append(m.text))
    page = site.open(
        "/t/wrongkey.html", init={"scroll": False, "debug": True, "writeKey": "ffw_wrong_key"}
    )
    page.wait_for_function("footfall('stats').errors.invalid_write_key === 1")
    page.evaluate("for (let i = 0; i < 3; i++) footfall('track', 'AfterRefusal', {i})")
    page.evaluate("footfall('flush')")
    page.wait_for_timeout(1500)
    assert len(requests) == 1  # the page view's; no retry, nothing after it
    stats = page.evaluate("footfall('stats')")
    assert stats["errors"] == {"invalid_write_key": 1}
    assert stats["dropped"] == 4 and stats["queued"] == 0
    assert any(
        "footfall: errors invalid_write_key 401 unknown write key" in text for text in console
    ), console
    assert site.events() == []


def test_refusals_and_failures_are_counted_and_logged(site, collector):
    # Bots refused (no allow_bots), declared events only (strict).
    _, strict_key = collector.make_site(allowed_origins=["*"], settings={"strict": True})
    console = []
    site.page.on("console", lambda m: console.append(m.text))
    page = site.open("/t/refused.html", init={**QUIET, "debug": True, "writeKey": strict_key})
    page.evaluate("footfall('track', 'Not Declared Anywhere', {a: 1})")
    page.wait_for_function("Object.keys(footfall('stats').failed).length > 0")
    stats = page.evaluate("footfall('stats')")
    assert stats["failed"] == {"unknown_event": 1}, stats
    assert any("failed unknown_event" in text for text in console), console


PRERENDERING = """
Object.defineProperty(document, 'prerendering', {get: () => !window.shown, configurable: true});
"""


def test_prerendered_page_sends_nothing_until_shown(site):
    """Chromium under Playwright does not prerender (speculation rules are ignored), so
    this emulates the API a prerendered page sees: document.prerendering true until the
    prerenderingchange event."""
    requests = []
    site.context.on("request", lambda r: requests.append(r.url) if "/v1/" in r.url else None)
    site.context.add_init_script(PRERENDERING)
    page = site.open("/t/prerendered.html", init={"scroll": False})
    page.evaluate("footfall('track', 'DuringPrerender')")
    page.wait_for_timeout(800)
    assert requests == [] and site.events() == []
    page.evaluate("window.shown = true; document.dispatchEvent(new Event('prerenderingchange'))")
    rows = site.wait(lambda rs: len(rs) == 2)
    assert {(r["type"], r["event"]) for r in rows} == {("page", None), ("track", "DuringPrerender")}
