"""GET /v1/persons/{id}/profile over real HTTP, with the site's secret key."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from footfall.storage.engine import create_sync_engine
from footfall.storage.sites import rotate_secret_key
from tests.analytics.messages import T0, identify, page, post, track
from tests.cli.test_cli import footfall
from tests.support import Collector, make_site


def secret_key(dsn: str, site_id: int) -> str:
    engine = create_sync_engine(dsn)
    try:
        with engine.begin() as conn:
            return rotate_secret_key(conn, site_id)
    finally:
        engine.dispose()


def get(collector: Collector, person: str, key: str | None, **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(
        f"{collector.base_url}/v1/persons/{person}/profile",
        params=params,
        headers=headers,
        timeout=30,
    )


@pytest.fixture
def site(collector: Collector) -> tuple[int, str, str]:
    site_id, write_key = make_site(collector.dsn, settings={"allow_undeclared_events": True})
    campaign = {"campaign": {"source": "news", "medium": "email", "name": "spring"}}
    batch = [
        page("dev-1", "/landing", session="s1", ua="iphone", context=campaign, minutes=0),
        track("dev-1", "Element Clicked", {"selector": "a", "tag": "a"}, session="s1",
              ua="iphone", minutes=1),
        track("dev-1", "Page Engaged", {"engaged_ms": 4000, "max_scroll_percent": 60},
              session="s1", ua="iphone", minutes=2),
        identify("dev-1", "carol", session="s1", ua="iphone", minutes=3),
        page("dev-2", "/pricing", session="s2", ua="edge", userId="carol", minutes=600),
        page("lurker", "/", session="s3", ua="edge", minutes=5),
    ]  # fmt: skip
    post(collector.base_url, write_key, batch)
    post(collector.base_url, write_key, batch[:3])  # a retry: counts nothing
    return site_id, write_key, secret_key(collector.dsn, site_id)


def test_profile_by_user_id(collector: Collector, site: tuple[int, str, str]) -> None:
    site_id, _, key = site
    answer = get(collector, "carol", key)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["segments"] == []
    profile = body["profile"]
    assert profile["site_id"] == site_id and profile["identified"] is True
    assert (profile["events"], profile["pages"], profile["clicks"]) == (5, 2, 1)
    assert (profile["sessions"], profile["engaged_ms"], profile["max_scroll_percent"]) == (
        2,
        4000,
        60,
    )
    assert profile["first_seen"] == T0.isoformat()
    assert profile["last_seen"] == (T0 + timedelta(minutes=600)).isoformat()
    assert (profile["utm_source"], profile["utm_medium"], profile["utm_campaign"]) == (
        "news",
        "email",
        "spring",
    )
    assert profile["last_page_path"] == "/pricing" and profile["device_type"] == "desktop"
    assert profile["sessions_by_device"] == {"mobile": 1, "tablet": 0, "desktop": 1, "other": 0}
    # 09:00 and 19:00 UTC (no zone sent): a morning and an evening session.
    assert profile["sessions_by_day_part"] == {
        "night": 0,
        "morning": 1,
        "afternoon": 0,
        "evening": 1,
    }
    # The same person through a device of theirs.
    by_device = get(collector, "dev-2", key, kind="anonymous").json()
    assert by_device["person_id"] == body["person_id"]


def test_profile_by_anonymous_id(collector: Collector, site: tuple[int, str, str]) -> None:
    _, _, key = site
    default = get(collector, "lurker", key)  # not a userId: tried as an anonymousId
    assert default.status_code == 200, default.text
    assert default.json()["profile"]["identified"] is False
    assert default.json()["profile"]["events"] == 1
    as_user = get(collector, "lurker", key, kind="user")
    assert as_user.status_code == 404 and as_user.json()["error"] == "unknown_person"


def test_profile_errors(collector: Collector, site: tuple[int, str, str]) -> None:
    site_id, write_key, key = site
    assert get(collector, "carol", None).status_code == 401
    assert get(collector, "carol", write_key).status_code == 401  # a write key is public
    refused = get(collector, "carol", key + "x")
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_secret_key"
    assert get(collector, "nobody", key).status_code == 404
    assert get(collector, "carol", key, kind="email").status_code == 400
    assert get(collector, "x" * 5000, key).status_code == 400
    # Another site's secret key does not see this site's persons.
    other_id, _ = make_site(collector.dsn)
    assert get(collector, "carol", secret_key(collector.dsn, other_id)).status_code == 404
    # A rotated key stops working.
    new_key = secret_key(collector.dsn, site_id)
    assert get(collector, "carol", key).status_code == 401
    assert get(collector, "carol", new_key).status_code == 200


def test_secret_key_command(collector: Collector, site: tuple[int, str, str]) -> None:
    site_id, _, old_key = site
    (name,) = [r["name"] for r in collector.query("SELECT name FROM sites WHERE id = %s",
                                                  (site_id,))]  # fmt: skip
    out = footfall("sites", "secret-key", name, dsn=collector.dsn).stdout
    key = out.strip().rsplit(" ", 1)[-1]
    assert key.startswith("ffsk_") and key != old_key
    assert get(collector, "carol", key).status_code == 200
    assert get(collector, "carol", old_key).status_code == 401
    stored = collector.query("SELECT secret_key_hash FROM sites WHERE id = %s", (site_id,))
    assert key not in str(stored)  # only its hash is stored
