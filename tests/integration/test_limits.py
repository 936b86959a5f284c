"""Every limit and malformed input gets its documented 4xx; the collector stays healthy."""

from __future__ import annotations

import gzip
import json
import uuid

import httpx
import pytest

from tests.support import Collector


def _msg(**extra):
    return {"type": "page", "anonymousId": "a", "messageId": str(uuid.uuid4()), **extra}


def _post_raw(collector: Collector, content: bytes, headers=None, auth=True) -> httpx.Response:
    return httpx.post(
        collector.base_url + "/v1/batch",
        content=content,
        headers={"Content-Type": "application/json", **(headers or {})},
        auth=(collector.write_key, "") if auth else None,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("content", "status", "error"),
    [
        (b"{not json", 400, "bad_request"),
        (b"", 400, "bad_request"),
        (b'{"batch": "nope"}', 400, "bad_request"),
        (b'"just a string"', 400, "bad_request"),
        (b'{"batch": [{"type": "page", "anonymousId": "\\ud800"}]}', 400, "bad_request"),
    ],
)
def test_malformed_bodies_are_400(collector: Collector, content, status, error) -> None:
    response = _post_raw(collector, content)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error


def test_body_over_limit_is_413(collector: Collector) -> None:
    big = json.dumps({"batch": [_msg(properties={"x": "y" * 4000}) for _ in range(200)]}).encode()
    assert len(big) > 500 * 1024
    response = _post_raw(collector, big)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


def test_body_over_limit_without_content_length_is_413(collector: Collector) -> None:
    big = json.dumps({"batch": [_msg(properties={"x": "y" * 4000}) for _ in range(200)]}).encode()

    def chunks():
        for i in range(0, len(big), 16384):
            yield big[i : i + 16384]

    response = httpx.post(
        collector.base_url + "/v1/batch",
        content=chunks(),
        auth=(collector.write_key, ""),
        timeout=30,
    )
    assert response.status_code == 413


def test_gzip_bomb_is_refused_without_buffering(collector: Collector) -> None:
    bomb = gzip.compress(b'{"batch": [' + b" " * (200 * 1024 * 1024) + b"]}", compresslevel=9)
    assert len(bomb) < 500 * 1024  # small on the wire, 200 MB inflated
    response = _post_raw(collector, bomb, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 413


def test_corrupt_gzip_and_unknown_encoding(collector: Collector) -> None:
    assert (
        _post_raw(collector, b"not gzip", headers={"Content-Encoding": "gzip"}).status_code == 400
    )
    assert _post_raw(collector, b"{}", headers={"Content-Encoding": "br"}).status_code == 415


def test_too_many_messages_is_413(collector: Collector) -> None:
    body = json.dumps({"batch": [{"type": "page"}] * 2501}).encode()
    assert _post_raw(collector, body).status_code == 413


def test_oversized_message_fails_alone(collector: Collector) -> None:
    big = _msg(properties={"blob": "z" * 7000, "more": ["y" * 7000] * 4})
    response = _post_raw(collector, json.dumps({"batch": [_msg(), big]}).encode())
    body = response.json()
    assert response.status_code == 200
    assert body["accepted"] == 1
    assert [f["reason"] for f in body["failed"]] == ["too_large"]


def test_deep_nesting_and_long_strings_fail_the_message(collector: Collector) -> None:
    deep: dict = {}
    node = deep
    for _ in range(30):
        node["n"] = {}
        node = node["n"]
    response = _post_raw(
        collector,
        json.dumps({"batch": [_msg(properties=deep), _msg(name="x" * 9000), _msg()]}).encode(),
    )
    body = response.json()
    assert body["accepted"] == 1
    assert [f["reason"] for f in body["failed"]] == ["limits_exceeded", "limits_exceeded"]
    assert "nested deeper" in body["failed"][0]["errors"][0]["message"]
    assert body["failed"][1]["errors"][0]["path"] == "/name"


def test_absurdly_deep_body_is_400_and_deep_entry_fails_alone(collector: Collector) -> None:
    # Deeper than the JSON parser's own limit (1024): the body is refused whole.
    body = b'{"batch": [' + b"[" * 5000 + b"]" * 5000 + b', {"type": "page", "anonymousId": "a"}]}'
    response = _post_raw(collector, body)
    assert response.status_code == 400, response.text
    assert "depth" in response.json()["detail"]
    # Deeper than our limit (20) but parseable: that entry fails, the rest is stored.
    body = b'{"batch": [' + b"[" * 500 + b"]" * 500 + b', {"type": "page", "anonymousId": "a"}]}'
    response = _post_raw(collector, body)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    assert [f["reason"] for f in response.json()["failed"]] == ["limits_exceeded"]


def test_nul_characters_do_not_break_the_batch(collector: Collector) -> None:
    response = _post_raw(collector, json.dumps({"batch": [_msg(name="a\u0000b"), _msg()]}).encode())
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 1
    assert [f["reason"] for f in body["failed"]] == ["limits_exceeded"]


@pytest.mark.parametrize(
    ("auth", "status", "error"),
    [
        (None, 401, "invalid_write_key"),
        (("ffw_not_a_real_key", ""), 401, "invalid_write_key"),
        (("k" * 5000, ""), 401, "invalid_write_key"),
    ],
)
def test_bad_keys(collector: Collector, auth, status, error) -> None:
    response = httpx.post(
        collector.base_url + "/v1/batch", json={"batch": [_msg()]}, auth=auth, timeout=30
    )
    assert response.status_code == status
    assert response.json() == {"error": error, "detail": response.json()["detail"]}


def test_malformed_basic_auth_is_401(collector: Collector) -> None:
    response = httpx.post(
        collector.base_url + "/v1/batch",
        json={"batch": [_msg()]},
        headers={"Authorization": "Basic !!!not-base64"},
    )
    assert response.status_code == 401


def test_wrong_origin_is_403(collector: Collector) -> None:
    _, key = collector.make_site(allowed_origins=["https://mine.example"])
    response = httpx.post(
        collector.base_url + "/v1/batch",
        json={"batch": [_msg()]},
        auth=(key, ""),
        headers={"Origin": "https://theirs.example"},
    )
    assert response.status_code == 403
    assert response.json()["error"] == "origin_not_allowed"


def test_collector_healthy_after_abuse(collector: Collector) -> None:
    for content in (b"{", b"[" * 100000, gzip.compress(b"x" * 10_000_000)):
        _post_raw(
            collector,
            content,
            headers={"Content-Encoding": "gzip"} if content[:2] == b"\x1f\x8b" else None,
        )
    assert httpx.get(collector.base_url + "/healthz").status_code == 200
    ok = _post_raw(collector, json.dumps({"batch": [_msg()]}).encode())
    assert ok.status_code == 200 and ok.json()["accepted"] == 1
