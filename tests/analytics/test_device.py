"""Device enrichment: real User-Agent strings, client hints, bots refused or kept."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from footfall.pipeline.device import (
    ClientHints,
    detect,
    device_step,
    hints_from_context,
    hints_from_headers,
    parse_user_agent,
)
from footfall.pipeline.types import Draft, Refused, RequestContext, Site
from tests.analytics.messages import UA, page, post
from tests.support import Collector

NO_HINTS = ClientHints()


@pytest.mark.parametrize(
    ("ua", "expected"),
    [
        (
            "iphone",
            dict(
                device_type="mobile",
                browser_name="Mobile Safari",
                browser_version="17.4.1",
                os_name="iOS",
                os_version="17.4.1",
                device_brand="Apple",
                device_model="iPhone",
            ),
        ),
        (
            "android",
            dict(
                device_type="mobile",
                browser_name="Chrome Mobile",
                browser_version="124.0.6367",
                os_name="Android",
                os_version="14",
                device_brand="Google",
                device_model="Pixel 8",
            ),
        ),
        (
            "ipad",
            dict(
                device_type="tablet",
                browser_name="Mobile Safari",
                os_name="iOS",
                os_version="16.6",
                device_brand="Apple",
                device_model="iPad",
            ),
        ),
        (
            "edge",
            dict(
                device_type="desktop",
                browser_name="Edge",
                browser_version="124.0.2478",
                os_name="Windows",
                os_version="10",
                device_brand=None,
                device_model=None,
            ),
        ),
        (
            "firefox_mac",
            dict(
                device_type="desktop",
                browser_name="Firefox",
                browser_version="125.0",
                os_name="macOS",
                os_version="14.4",
                device_brand="Apple",
                device_model="Mac",
            ),
        ),
        ("googlebot", dict(device_type="bot", browser_name="Googlebot", device_brand=None)),
        ("headless", dict(device_type="bot", browser_name="HeadlessChrome", os_name="Linux")),
        (
            "android_reduced",  # Chrome's frozen UA: the model "K" is no model
            dict(device_type="mobile", os_version="10", device_brand=None, device_model=None),
        ),
    ],
)
def test_real_user_agents(ua: str, expected: dict[str, str | None]) -> None:
    device = detect(UA[ua], NO_HINTS)
    for name, value in expected.items():
        assert getattr(device, name) == value, (ua, name, device)


def test_no_user_agent_is_other() -> None:
    assert detect(None, NO_HINTS).device_type == "other"
    assert detect("curl/8.5.0", NO_HINTS).device_type == "other"


def test_parse_is_cached_per_distinct_string() -> None:
    ua = UA["edge"] + " cache-probe"
    parse_user_agent(ua)
    before = parse_user_agent.cache_info().hits
    for _ in range(5):
        parse_user_agent(ua)
    assert parse_user_agent.cache_info().hits == before + 5
    assert parse_user_agent.cache_info().maxsize == 10_000


def test_client_hint_headers_take_precedence() -> None:
    # Windows 11 sends "Windows NT 10.0" in the UA; the platform version tells.
    headers = {
        "sec-ch-ua": '"Chromium";v="124", "Microsoft Edge";v="124", "Not-A.Brand";v="99"',
        "sec-ch-ua-mobile": "?0",
        "sec-ch-ua-platform": '"Windows"',
        "sec-ch-ua-platform-version": '"15.0.0"',
        "sec-ch-ua-full-version-list": (
            '"Chromium";v="124.0.6367.91", "Microsoft Edge";v="124.0.2478.67",'
            ' "Not-A.Brand";v="99.0.0.0"'
        ),
    }
    device = detect(UA["edge"], hints_from_headers(headers))
    assert device.device_type == "desktop"
    assert (device.browser_name, device.browser_version) == ("Edge", "124.0.2478.67")
    assert (device.os_name, device.os_version) == ("Windows", "11")


def test_client_hints_fill_what_the_reduced_android_ua_hides() -> None:
    headers = {
        "sec-ch-ua": '"Google Chrome";v="124", "Chromium";v="124", "Not/A)Brand";v="24"',
        "sec-ch-ua-mobile": "?1",
        "sec-ch-ua-platform": '"Android"',
        "sec-ch-ua-platform-version": '"14.0.0"',
        "sec-ch-ua-model": '"Pixel 8"',
    }
    device = detect(UA["android_reduced"], hints_from_headers(headers))
    assert device.device_type == "mobile"
    assert device.browser_name == "Chrome Mobile"
    assert device.browser_version == "124.0.0"  # low-entropy major; the UA string has more
    assert (device.os_name, device.os_version) == ("Android", "14")
    assert device.device_model == "Pixel 8"


def test_android_tablet_from_hints() -> None:
    hints = hints_from_headers({"sec-ch-ua-mobile": "?0", "sec-ch-ua-platform": '"Android"'})
    assert detect(UA["android_reduced"], hints).device_type == "tablet"


def test_user_agent_data_in_the_message() -> None:
    hints = hints_from_context(
        {
            "brands": [
                {"brand": "Not A(Brand", "version": "99"},
                {"brand": "Google Chrome", "version": "124"},
                {"brand": "Chromium", "version": "124"},
            ],
            "mobile": False,
            "platform": "macOS",
            "platformVersion": "14.4.1",
        }
    )
    device = detect(UA["chrome_windows"], hints)
    assert (device.browser_name, device.os_name, device.os_version) == ("Chrome", "macOS", "14.4.1")
    assert device.device_type == "desktop"


def test_headless_brand_in_hints_is_a_bot() -> None:
    hints = hints_from_headers({"sec-ch-ua": '"HeadlessChrome";v="124", "Chromium";v="124"'})
    assert detect(UA["chrome_windows"], hints).device_type == "bot"


def _ctx(settings: dict | None = None, **kwargs) -> RequestContext:
    site = Site(id=1, name="s", write_key="k", settings=settings or {})
    return RequestContext(site=site, received_at=datetime.now(UTC), **kwargs)


def test_step_prefers_context_user_agent_and_refuses_bots() -> None:
    draft = Draft({"type": "page", "context": {"userAgent": UA["iphone"]}}, None)
    device_step(draft, _ctx(user_agent=UA["edge"]))
    assert draft.columns["device_type"] == "mobile"

    bot = Draft({"type": "page", "context": {"userAgent": UA["googlebot"]}}, None)
    with pytest.raises(Refused) as refused:
        device_step(bot, _ctx())
    assert refused.value.reason == "bot"

    kept = Draft({"type": "page"}, None)
    device_step(kept, _ctx({"allow_bots": True}, user_agent=UA["headless"]))
    assert kept.columns["device_type"] == "bot"


def test_request_hints_do_not_apply_to_a_server_sent_user_agent() -> None:
    # A backend forwarding a visitor's UA: the request's own hints describe the backend.
    draft = Draft({"type": "page", "context": {"userAgent": UA["iphone"]}}, None)
    device_step(draft, _ctx(headers={"sec-ch-ua-mobile": "?0", "sec-ch-ua-platform": '"Linux"'}))
    assert (draft.columns["device_type"], draft.columns["os_name"]) == ("mobile", "iOS")


def test_over_http_bots_refused_and_counted(collector: Collector) -> None:
    answer = post(
        collector.base_url,
        collector.write_key,
        [page("a-bot", ua="googlebot"), page("a-headless", ua="headless"), page("a-ok", ua="ipad")],
    )
    assert answer["accepted"] == 1
    assert answer["refused"] == {"bot": 2}
    (row,) = collector.events()
    assert (row["anonymous_id"], row["device_type"], row["device_model"]) == (
        "a-ok",
        "tablet",
        "iPad",
    )


def test_over_http_bots_kept_when_the_site_allows(collector: Collector) -> None:
    site_id, key = collector.make_site(settings={"allow_bots": True})
    answer = post(collector.base_url, key, [page("a-bot", ua="googlebot")])
    assert answer["accepted"] == 1 and not answer["refused"]
    (row,) = collector.events(site_id)
    assert row["device_type"] == "bot" and row["browser_name"] == "Googlebot"


def test_over_http_browser_request_with_client_hints(collector: Collector) -> None:
    headers = {
        "Origin": "https://example.com",
        "User-Agent": UA["edge"],
        "Sec-CH-UA": '"Chromium";v="124", "Microsoft Edge";v="124", "Not-A.Brand";v="99"',
        "Sec-CH-UA-Mobile": "?0",
        "Sec-CH-UA-Platform": '"Windows"',
        "Sec-CH-UA-Platform-Version": '"14.0.0"',
    }
    post(collector.base_url, collector.write_key, [page("a-ch")], headers=headers)
    (row,) = collector.events()
    assert (row["browser_name"], row["os_name"], row["os_version"]) == ("Edge", "Windows", "11")
    assert row["device_type"] == "desktop"
