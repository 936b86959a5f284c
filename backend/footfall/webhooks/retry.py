"""When to try a failed delivery again (pure): exponential backoff with full jitter,
the receiver's ``Retry-After`` on 429 and 503, and the dead letter after N attempts."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RETRY_AFTER_STATUSES = frozenset({429, 503})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 15
    base_s: float = 10.0
    max_delay_s: float = 21600.0


@dataclass(frozen=True, slots=True)
class Decision:
    """``dead``: no more attempts; else try again in ``delay_s``."""

    dead: bool
    delay_s: float = 0.0


def backoff_s(attempts: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Full jitter (AWS's "Exponential Backoff and Jitter"): uniform in [0, min(cap, base·2^(n-1))].

    The jitter spreads the retries of many messages that failed together (a
    receiver's outage) instead of sending them back in one wave.
    """
    ceiling = min(policy.max_delay_s, policy.base_s * 2.0 ** max(attempts - 1, 0))
    return rng.uniform(0, ceiling)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max((moment - now).total_seconds(), 0.0)


def decide(
    attempts: int,
    status: int | None,
    retry_after_s: float | None,
    policy: RetryPolicy,
    rng: random.Random,
) -> Decision:
    """After a failed attempt (``attempts`` made so far, this one included)."""
    if attempts >= policy.max_attempts:
        return Decision(dead=True)
    if status in RETRY_AFTER_STATUSES and retry_after_s is not None:
        # The receiver said when; capped so a bad header cannot park a message for ever.
        return Decision(dead=False, delay_s=min(retry_after_s, policy.max_delay_s))
    return Decision(dead=False, delay_s=backoff_s(attempts, policy, rng))
