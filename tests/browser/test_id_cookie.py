"""The first-party id cookie: with localStorage blocked (as ITP or a browser setting
leaves it), the collector-set ff_id cookie keeps the visitor's anonymousId across pages;
under required consent nothing is set before consent and a refusal removes it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.conftest import Site, desktop_user_agent
from tests.support import Collector, ServerThread, collector_settings, make_site

pytestmark = pytest.mark.browser

BLOCK_STORAGE = """
Object.defineProperty(window, 'localStorage', {
  get() { throw new DOMException('The operation is insecure.', 'SecurityError') },
})
"""


@pytest.fixture(scope="module")
def cookie_server(database: str) -> Iterator[ServerThread]:
    thread = ServerThread(collector_settings(database, id_cookie=True)).start()
    yield thread
    thread.stop()


def _site(browser: Any, server: ServerThread, database: str, **site_kwargs: Any) -> Site:
    site_id, key = make_site(
        database, allowed_origins=["*"], settings={"allow_undeclared_events": True}, **site_kwargs
    )
    collector = Collector(
        base_url=server.base_url, dsn=database, write_key=key, site_id=site_id, server=server
    )
    context = browser.new_context(user_agent=desktop_user_agent(browser))
    context.add_init_script(BLOCK_STORAGE)
    return Site(collector, context, context.new_page(), site_id, key)


@pytest.fixture
def blocked_site(browser, cookie_server, database) -> Iterator[Site]:
    site = _site(browser, cookie_server, database)
    yield site
    site.context.close()


def _ff_id(site: Site) -> dict[str, Any] | None:
    return next((c for c in site.context.cookies() if c["name"] == "ff_id"), None)


def test_cookie_keeps_the_anonymous_id_when_storage_is_blocked(blocked_site):
    site = blocked_site
    page = site.open("/t/itp1.html", init={"scroll": False})
    assert page.evaluate(
        "(() => { try { localStorage; return 'open' } catch (e) { return e.name } })()"
    ) == ("SecurityError")
    [first] = site.wait(lambda rs: len(rs) == 1)
    cookie = _ff_id(site)
    assert cookie is not None and cookie["value"] == first["anonymous_id"]
    assert cookie["sameSite"] == "Lax" and cookie["httpOnly"] is False and cookie["secure"] is False
    site.open("/t/itp2.html", init={"scroll": False})
    site.open("/t/itp3.html", init={"scroll": False})
    rows = site.wait(lambda rs: len(rs) == 3)
    assert [r["page_path"] for r in rows] == ["/t/itp1.html", "/t/itp2.html", "/t/itp3.html"]
    assert {r["anonymous_id"] for r in rows} == {first["anonymous_id"]}
    assert site.page.evaluate("footfall('anonymousId')") == first["anonymous_id"]


def test_without_the_cookie_blocked_storage_means_a_new_id_per_page(browser, collector, database):
    # The same pages against a collector that sets no cookie: every page is a new visitor.
    site = _site(browser, collector.server, database)
    try:
        site.open("/t/nocookie1.html", init={"scroll": False})
        site.open("/t/nocookie2.html", init={"scroll": False})
        rows = site.wait(lambda rs: len(rs) == 2)
        assert _ff_id(site) is None and len({r["anonymous_id"] for r in rows}) == 2
    finally:
        site.context.close()


def test_no_cookie_before_consent_and_none_after_a_refusal(browser, cookie_server, database):
    site = _site(browser, cookie_server, database, consent_mode="required")
    try:
        page = site.open("/t/consent-cookie.html", init={"scroll": False, "requireConsent": True})
        page.evaluate("footfall('track', 'Waiting')")
        page.wait_for_timeout(600)
        assert _ff_id(site) is None and site.events() == []
        page.evaluate("footfall('consent', {analytics: true})")
        site.wait(lambda rs: len(rs) >= 3)
        anonymous_id = page.evaluate("footfall('anonymousId')")
        assert _ff_id(site)["value"] == anonymous_id
        page.evaluate("footfall('consent', {analytics: false})")
        page.wait_for_function("footfall('stats').queued === 0")
        page.wait_for_timeout(300)
        assert _ff_id(site) is None
    finally:
        site.context.close()
