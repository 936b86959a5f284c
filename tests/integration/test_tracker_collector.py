"""The collector's side of the tracker over real HTTP: the compressed script,
refusals readable from any origin, and the first-party id cookie."""

from __future__ import annotations

import gzip
import http.client
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from footfall.api.site_assets import accepted_codings, tracker_file
from tests.support import Collector, ServerThread, collector_settings, make_site

DIST = Path(__file__).resolve().parents[2] / "tracker_js" / "dist"


def _page(anonymous_id: str, **overrides):
    message = {
        "type": "page",
        "messageId": str(uuid.uuid4()),
        "anonymousId": anonymous_id,
        "properties": {"path": "/"},
    }
    message.update(overrides)
    return message


def _raw_get(
    base_url: str, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    """GET without any decoding, to see the bytes that cross the network."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_script_is_served_brotli_gzip_or_plain_as_accepted(collector: Collector) -> None:
    plain = tracker_file().read_bytes()
    answers = {}
    for accept in ("br, gzip", "gzip", "identity", "gzip;q=0, br;q=0"):
        status, headers, body = _raw_get(collector.base_url, "/a/s.js", {"Accept-Encoding": accept})
        assert status == 200 and headers["vary"] == "Accept-Encoding"
        answers[accept] = (headers, body)
    (br_headers, br_body), (gz_headers, gz_body) = answers["br, gzip"], answers["gzip"]
    assert br_headers["content-encoding"] == "br" and gz_headers["content-encoding"] == "gzip"
    # What crosses the network is the precomputed file; it unpacks to the very script
    # (brotli's round trip is checked by `npm run check`).
    assert br_body == (DIST / "footfall.min.js.br").read_bytes() and len(br_body) < len(plain)
    assert gz_body == (DIST / "footfall.min.js.gz").read_bytes()
    assert gzip.decompress(gz_body) == plain
    for accept in ("identity", "gzip;q=0, br;q=0"):
        headers, body = answers[accept]
        assert "content-encoding" not in headers and body == plain
    # Each representation has its own ETag, so caches never mix them up.
    etags = {answers[a][0]["etag"] for a in ("br, gzip", "gzip", "identity")}
    assert len(etags) == 3
    status, headers, _ = _raw_get(
        collector.base_url,
        "/a/s.js",
        {"Accept-Encoding": "gzip", "If-None-Match": gz_headers["etag"]},
    )
    assert status == 304 and headers["vary"] == "Accept-Encoding"


def test_accept_encoding_parsing() -> None:
    assert accepted_codings("gzip, deflate, br, zstd") == {"gzip", "deflate", "br", "zstd"}
    assert accepted_codings("br;q=0, gzip;q=0.5") == {"gzip"}
    assert accepted_codings("br;q=x") == set()
    assert accepted_codings(None) == set()


@pytest.mark.parametrize(
    ("auth", "body", "status"),
    [
        (("ffw_wrong", ""), {"batch": []}, 401),
        (None, {"batch": []}, 401),
        ("own", b"{not json", 400),
    ],
)
def test_refusals_carry_cors_headers_for_any_origin(collector, auth, body, status) -> None:
    origin = "https://some-blog.example"
    kwargs = {"auth": (collector.write_key, "") if auth == "own" else auth}
    if isinstance(body, bytes):
        kwargs["content"] = body
    else:
        kwargs["json"] = body
    response = httpx.post(
        collector.base_url + "/v1/batch",
        headers={"Origin": origin, "Content-Type": "text/plain"},
        timeout=10,
        **kwargs,
    )
    assert response.status_code == status
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["vary"] == "Origin"
    # Only the reason, no data.
    assert set(response.json()) == {"error", "detail"}


def test_forbidden_origin_and_too_large_are_readable(collector: Collector) -> None:
    _, key = collector.make_site(allowed_origins=["https://shop.example"])
    origin = "https://evil.example"
    forbidden = httpx.post(
        collector.base_url + "/v1/batch",
        json={"batch": [_page("a-1")]},
        auth=(key, ""),
        headers={"Origin": origin},
        timeout=10,
    )
    assert forbidden.status_code == 403
    assert forbidden.headers["access-control-allow-origin"] == origin
    assert forbidden.json()["error"] == "origin_not_allowed"
    too_large = httpx.post(
        collector.base_url + "/v1/batch",
        content=b"x" * (600 * 1024),
        auth=(key, ""),
        headers={"Origin": origin},
        timeout=10,
    )
    assert too_large.status_code == 413
    assert too_large.headers["access-control-allow-origin"] == origin


@pytest.fixture(scope="module")
def cookie_server(database: str) -> Iterator[ServerThread]:
    thread = ServerThread(collector_settings(database, id_cookie=True)).start()
    yield thread
    thread.stop()


def _post(server: ServerThread, key: str, messages, origin: str | None) -> httpx.Response:
    headers = {"Origin": origin} if origin else {}
    return httpx.post(
        server.base_url + "/v1/batch",
        json={"batch": messages},
        auth=(key, ""),
        headers=headers,
        timeout=10,
    )


def test_id_cookie_first_party_only_and_after_consent(cookie_server, database) -> None:
    _, implied = make_site(database, allowed_origins=["*"])
    same_origin = cookie_server.base_url
    response = _post(cookie_server, implied, [_page("anon-abc-1")], same_origin)
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("ff_id=anon-abc-1;") and "SameSite=Lax" in cookie
    assert "Max-Age=34560000" in cookie and "Secure" not in cookie and "HttpOnly" not in cookie
    assert response.headers["access-control-allow-credentials"] == "true"
    # Another site's page (a third-party context) and server-side senders get no cookie.
    assert (
        "set-cookie"
        not in _post(cookie_server, implied, [_page("x-2")], "https://other.example").headers
    )
    assert "set-cookie" not in _post(cookie_server, implied, [_page("x-3")], None).headers

    _, required = make_site(database, allowed_origins=["*"], consent_mode="required")
    # Consent required and not given: the event is refused and nothing is set.
    undecided = _post(cookie_server, required, [_page("anon-req-1")], same_origin)
    assert undecided.json()["refused"] == {"consent": 1} and "set-cookie" not in undecided.headers
    granted = {"categoryPreferences": {"analytics": True}}
    given = _post(
        cookie_server, required, [_page("anon-req-1", context={"consent": granted})], same_origin
    )
    assert given.headers["set-cookie"].startswith("ff_id=anon-req-1;")
    refusal = {
        "type": "track",
        "event": "Consent Updated",
        "messageId": str(uuid.uuid4()),
        "anonymousId": "anon-req-1",
        "properties": {"analytics": False},
    }
    withdrawn = _post(cookie_server, required, [refusal], same_origin)
    assert (
        withdrawn.headers["set-cookie"].startswith("ff_id=;")
        and "Max-Age=0" in withdrawn.headers["set-cookie"]
    )
    # After the withdrawal the ledger says no: a later claim-less message sets nothing.
    later = _post(cookie_server, required, [_page("anon-req-1")], same_origin)
    assert "set-cookie" not in later.headers


def test_id_cookie_domain_and_secure(database) -> None:
    settings = collector_settings(database, id_cookie=True, id_cookie_domain="127.0.0.1")
    thread = ServerThread(settings).start()
    try:
        _, key = make_site(database, allowed_origins=["*"])
        response = _post(thread, key, [_page("anon-dom-1")], "https://127.0.0.1")
        cookie = response.headers["set-cookie"]
        assert "Domain=127.0.0.1" in cookie and "Secure" in cookie
        # Its answers set a cookie: credentialed CORS, so credentials: 'include' can read them.
        assert response.headers["access-control-allow-credentials"] == "true"
    finally:
        thread.stop()
