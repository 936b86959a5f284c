"""Token buckets per client IP (requests/s, before authentication), per site
(messages/s) and, where a site sets its own, per client IP and site: 429s.

Buckets live in the memory of each worker process and are not shared: with N
workers (or N collectors) a client can get up to N times the configured rate.
The limits are a guard against floods and runaway clients, not a billing meter
(docs/operations.md). Memory is bounded: buckets are kept in least-recently-used
order, idle buckets that have filled up again (which behave exactly like new
ones) are evicted as requests come, and past ``max_buckets`` the least recently
used go.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from footfall.errors import RateLimited
from footfall.pipeline.types import Site
from footfall.settings import Settings


@dataclass(frozen=True, slots=True)
class Limit:
    rate: float  # tokens per second; 0 means unlimited
    burst: float

    @classmethod
    def of(cls, rate: float, burst: float) -> Limit:
        rate = max(rate, 0.0)
        return cls(rate, burst if burst > 0 else max(2 * rate, 1.0))


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    limit: Limit

    def refill(self, now: float) -> None:
        self.tokens = min(self.limit.burst, self.tokens + (now - self.updated) * self.limit.rate)
        self.updated = now

    def full_at(self) -> float:
        return self.updated + (self.limit.burst - self.tokens) / self.limit.rate


def _number(value: object, default: float) -> float:
    return (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default
    )


class RateLimiter:
    """One per process; :meth:`check` admits a request or raises :class:`RateLimited`."""

    def __init__(
        self,
        site: Limit = Limit(0.0, 0.0),
        ip: Limit = Limit(0.0, 0.0),
        *,
        max_buckets: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        on_limited: Callable[[str, int], None] | None = None,
    ) -> None:
        self._site = site
        self._ip = ip
        self._max = max_buckets
        self._clock = clock
        self._on_limited = on_limited
        self._buckets: OrderedDict[tuple[object, ...], _Bucket] = OrderedDict()

    @classmethod
    def from_settings(
        cls, settings: Settings, on_limited: Callable[[str, int], None] | None = None
    ) -> RateLimiter:
        return cls(
            Limit.of(settings.rate_limit_per_s, settings.rate_limit_burst),
            Limit.of(settings.ip_rate_limit_per_s, settings.ip_rate_limit_burst),
            max_buckets=settings.rate_limit_max_buckets,
            on_limited=on_limited,
        )

    def limits_for(self, site: Site) -> tuple[Limit, Limit]:
        """The site's limits: its settings where given, else the collector's defaults."""
        s = site.settings
        return (
            Limit.of(
                _number(s.get("rate_limit_per_s"), self._site.rate),
                _number(s.get("rate_limit_burst"), self._site.burst),
            ),
            Limit.of(
                _number(s.get("ip_rate_limit_per_s"), self._ip.rate),
                _number(s.get("ip_rate_limit_burst"), self._ip.burst),
            ),
        )

    def check_ip(self, ip: str | None) -> None:
        """The collector's per-IP limit, before the write key is even looked up."""
        if self._ip.rate > 0 and ip:
            now = self._clock()
            self._take([("ip", self._bucket(("ip", ip), self._ip, now), 1.0)], 1)
            self._evict(now)

    def check(self, site: Site, ip: str | None, messages: int) -> None:
        """Take ``messages`` tokens from the site's bucket and, if the site sets its
        own IP limit, one from its (site, IP) bucket, or raise."""
        site_limit, ip_limit = self.limits_for(site)
        now = self._clock()
        wanted: list[tuple[str, _Bucket, float]] = []
        if site_limit.rate > 0:
            # A batch larger than the burst passes when the bucket is full.
            cost = min(float(max(messages, 1)), site_limit.burst)
            wanted.append(("site", self._bucket(("site", site.id), site_limit, now), cost))
        own_ip_limit = (
            "ip_rate_limit_per_s" in site.settings or "ip_rate_limit_burst" in site.settings
        )
        if own_ip_limit and ip_limit.rate > 0 and ip:
            wanted.append(("ip", self._bucket(("ip", site.id, ip), ip_limit, now), 1.0))
        self._take(wanted, messages)
        self._evict(now)

    def _take(self, wanted: list[tuple[str, _Bucket, float]], messages: int) -> None:
        for scope, bucket, cost in wanted:
            if bucket.tokens < cost:
                if self._on_limited is not None:
                    self._on_limited(scope, messages)
                wait = (cost - bucket.tokens) / bucket.limit.rate
                raise RateLimited(
                    f"{scope} rate limit exceeded; retry later",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
        for _, bucket, cost in wanted:
            bucket.tokens -= cost

    def _bucket(self, key: tuple[object, ...], limit: Limit, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(limit.burst, now, limit)
        else:
            self._buckets.move_to_end(key)
            bucket.limit = limit  # the site's settings may have changed
            bucket.refill(now)
        return bucket

    def _evict(self, now: float) -> None:
        # Oldest first: stop at the first bucket still refilling (at most a few per call).
        while self._buckets:
            key, bucket = next(iter(self._buckets.items()))
            if len(self._buckets) <= self._max and bucket.full_at() > now:
                return
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)
