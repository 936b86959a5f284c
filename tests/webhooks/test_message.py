"""Pure parts: signing (checked against the standardwebhooks reference), secrets,
sealing, backoff and Retry-After."""

from __future__ import annotations

import base64
import random
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from footfall.pipeline.privacy import keyring_of
from footfall.webhooks import message
from footfall.webhooks.retry import RetryPolicy, backoff_s, decide, parse_retry_after
from footfall.webhooks.sealing import SealError, seal, unseal


def test_signature_verifies_with_the_reference_library() -> None:
    secret = message.generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[6:])) == 32
    key = message.secret_key(secret)
    body = message.body(
        "segment.entered", datetime(2026, 12, 1, 12, 0, tzinfo=UTC), {"segment": "s", "n": 1}
    )
    headers = message.headers(key, "seg_1_2_3", int(time.time()), body)
    payload = Webhook(secret).verify(body, headers)
    assert payload == {
        "type": "segment.entered",
        "timestamp": "2026-12-01T12:00:00.000Z",
        "data": {"n": 1, "segment": "s"},
    }
    with pytest.raises(WebhookVerificationError):
        Webhook(message.generate_secret()).verify(body, headers)  # another secret
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b'"n":1', b'"n":2'), headers)  # altered body
    stale = message.headers(key, "seg_1_2_3", int(time.time()) - 3600, body)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(body, stale)


def test_signature_matches_the_spec_by_hand() -> None:
    """The spec's construction, spelled out with the stdlib (as docs/webhooks.md shows it)."""
    import hashlib
    import hmac

    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(
        hmac.new(
            key, b'msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{"test": 2432232314}', hashlib.sha256
        ).digest()
    ).decode()
    got = message.signature(
        key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    )
    assert got == "v1," + expected
    # The value published with the spec's reference test vector.
    assert got == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "starts with"),
        ("whsec_not base64!", "base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "bytes"),
    ],
)
def test_bad_secrets_are_refused_without_echoing_them(secret: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as info:
        message.secret_key(secret)
    assert secret.removeprefix("whsec_") not in str(info.value)


@pytest.mark.parametrize(
    ("name", "url", "problem"),
    [
        ("CRM", "https://x.example/h", "endpoint name"),
        ("crm", "ftp://x.example/h", "http"),
        ("crm", "https:///h", "http"),
        ("crm", "https://user:pw@x.example/h", "credentials"),
        ("crm", "https://x.example/" + "a" * 3000, "longer"),
    ],
)
def test_bad_endpoints_are_refused(name: str, url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        message.check_endpoint(name, url)
    message.check_endpoint("crm", "https://x.example/h")


def test_sealed_secret_opens_only_with_its_key_and_row() -> None:
    ring = keyring_of("k2", "new-key-" + "x" * 32, [("k1", "old-key-" + "y" * 32)])
    secret = message.generate_secret()
    sealed = seal(secret, ring.previous[0], 7, "crm")
    assert secret.encode() not in sealed and secret[6:].encode() not in sealed
    # Sealed under a retired key: still opens while that key is configured.
    assert unseal(sealed, "k1", ring, 7, "crm") == secret
    with pytest.raises(SealError, match="'k1'"):
        unseal(sealed, "k1", keyring_of("k2", "new-key-" + "x" * 32), 7, "crm")
    with pytest.raises(SealError, match="does not open"):
        unseal(sealed, "k1", ring, 7, "cms")  # copied to another endpoint's row
    with pytest.raises(SealError, match="does not open"):
        unseal(sealed, "k1", ring, 8, "crm")  # or another site's
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(SealError):
        unseal(tampered, "k1", ring, 7, "crm")


def test_backoff_is_exponential_with_full_jitter() -> None:
    policy = RetryPolicy(max_attempts=10, base_s=2.0, max_delay_s=100.0)
    rng = random.Random(1)
    for attempts, ceiling in [(1, 2.0), (2, 4.0), (3, 8.0), (6, 64.0), (7, 100.0), (9, 100.0)]:
        samples = [backoff_s(attempts, policy, rng) for _ in range(2000)]
        assert 0 <= min(samples) < ceiling * 0.05  # full jitter reaches down to zero
        assert ceiling * 0.95 < max(samples) <= ceiling


def test_decide_dead_letter_and_retry_after() -> None:
    policy = RetryPolicy(max_attempts=3, base_s=1.0, max_delay_s=50.0)
    rng = random.Random(2)
    assert not decide(1, 500, None, policy, rng).dead
    assert not decide(2, None, None, policy, rng).dead
    assert decide(3, 500, None, policy, rng).dead
    assert decide(1, 429, 30.0, policy, rng).delay_s == 30.0
    assert decide(1, 503, 30.0, policy, rng).delay_s == 30.0
    assert decide(1, 429, 9999.0, policy, rng).delay_s == 50.0  # capped
    # Retry-After on other statuses is not a promise the spec makes: plain backoff.
    assert decide(1, 500, 30.0, policy, rng).delay_s <= 1.0


def test_parse_retry_after() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(" 7 ", now) == 7.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90
    assert parse_retry_after(format_datetime(now - timedelta(seconds=90), usegmt=True), now) == 0
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("-5", now) is None
