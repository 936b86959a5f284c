"""Token buckets per site and per client IP: 429 with Retry-After, bounded memory."""

from __future__ import annotations

import uuid

import httpx
import pytest

from footfall.api.ratelimit import Limit, RateLimiter
from footfall.errors import RateLimited
from footfall.pipeline.types import Site
from tests.ops.metrics_text import sample
from tests.support import Collector


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_site_bucket_counts_messages_and_refills() -> None:
    clock = Clock()
    limiter = RateLimiter(Limit.of(10, 20), clock=clock)
    site = Site(1, "s", "k")
    limiter.check(site, "10.0.0.1", 15)
    limiter.check(site, "10.0.0.2", 5)
    with pytest.raises(RateLimited) as refused:
        limiter.check(site, "10.0.0.3", 5)
    assert refused.value.headers["Retry-After"] == "1"  # 5 tokens at 10/s
    clock.now += 0.5
    limiter.check(site, "10.0.0.3", 5)
    # A batch larger than the burst passes when the bucket is full, never otherwise.
    clock.now += 100
    limiter.check(site, None, 500)
    with pytest.raises(RateLimited) as refused:
        limiter.check(site, None, 500)
    assert refused.value.headers["Retry-After"] == "2"


def test_ip_bucket_before_auth_and_site_override() -> None:
    clock = Clock()
    limiter = RateLimiter(ip=Limit.of(1, 2), clock=clock)
    # The collector's IP limit is checked before the write key is known.
    limiter.check_ip("192.0.2.1")
    limiter.check_ip("192.0.2.1")
    with pytest.raises(RateLimited):
        limiter.check_ip("192.0.2.1")
    limiter.check_ip("192.0.2.2")  # another client
    # A site's own IP limit is a (site, IP) bucket on top; without one, nothing more.
    a = Site(1, "a", "ka")
    for _ in range(10):
        limiter.check(a, "192.0.2.1", 1)
    c = Site(2, "c", "kc", settings={"ip_rate_limit_per_s": 1, "ip_rate_limit_burst": 1})
    limiter.check(c, "192.0.2.9", 1)
    with pytest.raises(RateLimited):
        limiter.check(c, "192.0.2.9", 1)
    b = Site(3, "b", "kb", settings={"ip_rate_limit_per_s": 0})
    for _ in range(10):
        limiter.check(b, "192.0.2.9", 1)  # site b turned its IP limit off
    strict = Site(4, "d", "kd", settings={"rate_limit_per_s": 1, "rate_limit_burst": 1})
    limiter.check(strict, None, 1)
    with pytest.raises(RateLimited):
        limiter.check(strict, None, 1)


def test_memory_is_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter(ip=Limit.of(1, 5), max_buckets=100, clock=clock)
    for i in range(1000):
        limiter.check_ip(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter) <= 100
    # Idle buckets that filled up again go first, without waiting for the cap.
    clock.now += 10
    limiter.check_ip("10.9.9.9")
    assert len(limiter) == 1


def _track(base_url: str, key: str) -> httpx.Response:
    body = {"event": "Signed Up", "anonymousId": "a", "messageId": str(uuid.uuid4())}
    return httpx.post(base_url + "/v1/track", json=body, auth=(key, ""))


def test_429_with_retry_after_from_site_settings(collector: Collector) -> None:
    url = collector.base_url
    _, key = collector.make_site(
        settings={"allow_undeclared_events": True, "rate_limit_per_s": 0.2, "rate_limit_burst": 3}
    )
    labels = {"outcome": "refused", "reason": "rate_limited"}
    before = sample(url, "footfall_messages_total", **labels)
    assert [_track(url, key).status_code for _ in range(5)] == [200, 200, 200, 429, 429]
    refused = _track(url, key)
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    assert sample(url, "footfall_messages_total", **labels) - before == 3

    ip_limited = {"allow_undeclared_events": True, "ip_rate_limit_per_s": 0.2}
    _, ip_key = collector.make_site(settings={**ip_limited, "ip_rate_limit_burst": 2})
    assert [_track(url, ip_key).status_code for _ in range(3)] == [200, 200, 429]
