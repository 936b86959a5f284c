"""Admin API bodies are checked like ingest bodies: a documented 4xx, never a 500 (issue 9, item 6)."""

from __future__ import annotations

import httpx
import pytest

from tests.privacy.conftest import ADMIN_TOKEN

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("export", {"anonymous_id": "a\u0000b"}),
        ("erase", {"user_id": "u\u0000"}),
        ("consent", {"anonymous_id": "a", "purposes": {"analy\u0000tics": False}}),
        (
            "consent",
            {"anonymous_id": "a", "purposes": {"analytics": False}, "policy_version": "\u0000"},
        ),
        ("export", {"anonymous_id": "x" * 256}),
        ("erase", {"user_id": "tab\tcontrol"}),
        ("export", {"user_id": 12345}),
        ("export", {"person": "not-a-number"}),
        ("export", {"anonymous_id": ["a"]}),
        ("consent", {"anonymous_id": "a", "purposes": {"analytics": "maybe"}}),
        ("consent", {"anonymous_id": "a", "purposes": {}}),
        ("consent", {"purposes": {"analytics": False}}),
        ("consent", {"anonymous_id": "a", "purposes": {f"p{i}": True for i in range(51)}}),
        ("erase", {"user_id": "u", "suppress": "later"}),
        ("export", {"user_id": "u", "usr_id": "typo"}),
    ],
)
def test_bad_admin_bodies_are_400_with_the_documented_shape(
    new_site, path: str, body: dict
) -> None:
    site = new_site()
    response = site.admin(path, body)
    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["error"] == "invalid_request"
    assert payload["detail"]
    # The offending value is not echoed back (it may be an e-mail or an id).
    assert "\u0000" not in response.text and "x" * 256 not in response.text


def test_nul_in_the_site_name_is_a_400_not_a_500(new_site) -> None:
    site = new_site()
    response = site.admin("export", {"anonymous_id": "a"} | {"site": "sh\u0000op"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_lone_surrogate_is_a_400_not_a_500(new_site) -> None:
    site = new_site()
    # Written out as JSON: the escape "\\ud800" decodes to a lone surrogate on the server.
    body = '{"site": "' + site.name + '", "anonymous_id": "lone \\ud800 surrogate"}'
    response = httpx.post(
        site.base_url + "/admin/privacy/export",
        content=body.encode(),
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"


def test_admin_body_that_is_not_json_or_too_large(new_site) -> None:
    site = new_site()
    url = site.base_url + "/admin/privacy/export"
    not_json = httpx.post(
        url, content=b"{nope", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert not_json.status_code == 400
    assert not_json.json()["error"] == "invalid_request"
    huge = {"site": site.name, "anonymous_id": "a", "pad": "x" * 70_000}
    assert httpx.post(url, json=huge, headers=AUTH).status_code == 413


def test_valid_admin_requests_still_work(new_site) -> None:
    site = new_site()
    site.post([{"type": "track", "event": "Thing Happened", "anonymousId": "adm-1"}])
    exported = site.admin("export", {"anonymous_id": "adm-1"})
    assert exported.status_code == 200
    assert len(exported.json()["tables"]["events"]) == 1
    consent = site.admin("consent", {"anonymous_id": "adm-1", "purposes": {"analytics": False}})
    assert consent.status_code == 200 and consent.json()["denied"] == ["analytics"]
    unknown = site.admin("export", {"anonymous_id": "a"} | {"site": "no-such-site"})
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_site"


def test_the_token_is_checked_before_the_body_is_read(new_site) -> None:
    site = new_site()
    url = site.base_url + "/admin/privacy/export"
    huge = {"site": site.name, "anonymous_id": "a", "pad": "x" * 70_000}
    assert httpx.post(url, json=huge).status_code == 401
    nul = {"site": "a\u0000", "anonymous_id": "a"}
    assert httpx.post(url, json=nul, headers={"Authorization": "Bearer nope"}).status_code == 401
