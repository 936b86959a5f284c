"""Browser fixtures: real Chromium (Debian's, no download) against the real collector.

Test pages are served from the collector's own origin by Playwright routing
(``site.page(path, body)``), so the tracker runs first-party exactly as on a
site that serves it from the collector's host.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support import Collector

CHROMIUM = os.environ.get("FOOTFALL_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.skip("no Chromium at " + CHROMIUM)
    with playwright_api.sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-background-networking",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        yield b
        b.close()


# Small intervals keep tests fast; each test can override any of them. Frustration
# signals are off unless a test asks for them: a test page's links and buttons mostly
# do nothing, which would add a Dead Click to every click.
FAST = {"flushInterval": 100, "retryDelay": 200, "frustration": False}


def snippet(tracker_url: str, options: dict[str, Any], before_init: str = "") -> str:
    """The documented two-line snippet plus init with the given options."""
    return (
        "<script>window.footfall=window.footfall||function(){(footfall.q=footfall.q||[]).push(arguments)};"
        f"{before_init}footfall('init',{json.dumps(options)});</script>"
        f'<script async src="{tracker_url}"></script>'
    )


@dataclass
class Site:
    """A test site on the collector's origin, with helpers to read what was stored.

    It has its own site row that accepts custom (undeclared) events too, and
    automated browsers: a keepalive request that outlives its page may go out
    with Chromium's own "HeadlessChrome" identity, which the collector refuses
    as a bot by default.
    """

    collector: Collector
    context: Any
    page: Any
    site_id: int
    write_key: str

    @property
    def base(self) -> str:
        # By name, not by address: the collector redacts IP addresses in stored URLs.
        return self.collector.base_url.replace("//127.0.0.1:", "//localhost:")

    @property
    def tracker_url(self) -> str:
        return self.base + self.collector.tracker_url.removeprefix(self.collector.base_url)

    def options(self, **extra: Any) -> dict[str, Any]:
        return {"writeKey": self.write_key, "endpoint": self.base, **FAST, **extra}

    def serve(
        self,
        path: str,
        body: str,
        *,
        init: dict[str, Any] | None = None,
        head: str = "",
        before_init: str = "",
        title: str = "Test page",
        with_query: bool = False,
    ) -> str:
        """Serve an HTML page at base_url + path (with_query: and path?anything) with the
        snippet; returns its URL."""
        tag = snippet(self.tracker_url, self.options(**(init or {})), before_init)
        html = (
            f"<!doctype html><html><head><meta charset=utf-8><title>{title}</title>{head}{tag}"
            f"</head><body style='margin:0'>{body}</body></html>"
        )
        url = self.base + path
        self.context.route(
            url + "?*" if with_query else url,
            lambda route: route.fulfill(status=200, body=html, content_type="text/html"),
        )
        return url

    def open(self, path: str, body: str = "", **kwargs: Any) -> Any:
        url = self.serve(path, body, **kwargs)
        self.page.goto(url)
        self.page.wait_for_function("window.footfall && window.footfall.v")
        return self.page

    def events(self) -> list[dict[str, Any]]:
        return self.collector.query(
            "SELECT * FROM events WHERE site_id = %s ORDER BY timestamp, message_id",
            (self.site_id,),
        )

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e["event"] == event]

    def wait(
        self, check: Callable[[list[dict[str, Any]]], Any], timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """Poll the database until check(events) is truthy; return the events."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.events()
            if check(rows):
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out; stored: {[(r['type'], r['event']) for r in rows]}"
                )
            self.page.wait_for_timeout(100)  # also lets Playwright run route handlers and events

    def wait_for(self, event: str, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        rows = self.wait(lambda rs: len([r for r in rs if r["event"] == event]) >= count, timeout)
        return [r for r in rows if r["event"] == event]

    def settle(self, seconds: float = 0.6) -> list[dict[str, Any]]:
        """Give in-flight sends time to land, then read everything."""
        self.page.evaluate("footfall('flush')")
        self.page.wait_for_timeout(seconds * 1000)
        return self.events()


def desktop_user_agent(browser: Any) -> str:
    """The collector refuses bots, and "HeadlessChrome" is one: present as the desktop
    browser it is."""
    return (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        f"Chrome/{browser.version} Safari/537.36"
    )


@pytest.fixture
def site(browser: Any, collector: Collector) -> Iterator[Site]:
    site_id, write_key = collector.make_site(
        allowed_origins=["*"], settings={"allow_undeclared_events": True, "allow_bots": True}
    )
    context = browser.new_context(
        viewport={"width": 1000, "height": 700}, user_agent=desktop_user_agent(browser)
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield Site(collector, context, page, site_id, write_key)
    context.close()
    assert not errors, errors
