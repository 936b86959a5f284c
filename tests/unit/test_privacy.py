"""Pure privacy functions: keyed hashing, scrubbing, schema PII rules, client IP, consent rules."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from footfall.api.client_ip import client_ip
from footfall.pipeline.consent import (
    DENIED,
    GRANTED,
    UNDECIDED,
    ConsentDecision,
    LedgerView,
    analytics_consent,
    claimed_analytics,
    consent_step,
)
from footfall.pipeline.privacy import (
    PSEUDONYMIZED_MARK,
    PiiKey,
    apply_schema_rules,
    ip_network,
    keyring_of,
    pseudonymize,
    stored_anonymous_id,
)
from footfall.pipeline.scrub import ParamPolicy, scrub_string
from footfall.pipeline.types import Draft, Refused, RequestContext, Site
from footfall.schemas.registry import check_dir, pii_paths
from footfall.settings import DEV_PII_KEY, Settings

K1 = PiiKey("k1", b"secret-one-0123456789abcdef0123456789")
K2 = PiiKey("k2", b"secret-two-0123456789abcdef0123456789")


def test_hash_is_keyed_hmac_sha256() -> None:
    expected = hmac.new(K1.secret, b"user-1", hashlib.sha256).hexdigest()
    assert K1.hash("user-1") == expected
    assert K1.hash("user-1") == K1.hash("user-1")
    assert K1.hash("user-1") != K2.hash("user-1")
    assert K1.hash("user-1") != hashlib.sha256(b"user-1").hexdigest()  # not an unkeyed hash


def test_pseudonymize_message() -> None:
    message = {
        "type": "identify",
        "userId": 42,
        "anonymousId": "anon-1",
        "traits": {"Email": "e@example.com", "plan": "pro", "name": "Eve", "bio": "mail e@x.io"},
        "context": {"ip": "198.51.100.7", "traits": {"phone": "+49 170 1234567"}, "locale": "de"},
    }
    out = pseudonymize(message, K1)
    assert out["userId"] == K1.hash("42")
    assert out["anonymousId"] == "anon-1"
    assert out["traits"] == {
        "Email": K1.hash("e@example.com"),  # trait names compared case-insensitively
        "plan": "pro",
        "name": K1.hash("Eve"),
        "bio": "mail [email]",
    }
    assert "ip" not in out["context"]
    assert out["context"]["traits"]["phone"] == K1.hash("+49 170 1234567")
    assert out[PSEUDONYMIZED_MARK] == "k1"
    assert message["userId"] == 42  # the input is not modified
    assert pseudonymize(out, K2) == out  # never hashed twice


def test_anonymous_id_hashed_only_when_it_is_an_email_or_phone() -> None:
    assert stored_anonymous_id("3f1c-uuid-like", K1) == "3f1c-uuid-like"
    assert stored_anonymous_id("jo@example.com", K1) == K1.hash("jo@example.com")
    assert stored_anonymous_id("+44 20 7946 0958", K1) == K1.hash("+44 20 7946 0958")
    assert stored_anonymous_id("203.0.113.77", K1) == K1.hash("203.0.113.77")  # no raw IPs
    assert stored_anonymous_id("2001:db8::1", K1) == K1.hash("2001:db8::1")
    # Look-ups also try the value as sent (earlier versions stored an IP-like id raw).
    ring = keyring_of("k1", K1.secret.decode())
    assert ring.anonymous_ids("203.0.113.77") == [K1.hash("203.0.113.77"), "203.0.113.77"]
    assert ring.anonymous_ids("dev-1") == ["dev-1"]
    ring = keyring_of("k2", "new", [("k1", "old")])
    assert [k.key_id for k in ring.keys] == ["k2", "k1"]
    assert len(set(ring.user_hashes("u"))) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to ann@example.com", "write to [email]"),
        ("ann%40example.com", "[email]"),
        ("call +49 170 1234567 or (555) 123-4567", "call [phone] or [phone]"),
        ("0170 1234567", "[phone]"),
        ("https://x.example/r?token=abc&page=2", "https://x.example/r?page=2"),
        ("https://x.example/#access_token=abc&state=1", "https://x.example/#state=1"),
        ("https://u:pw@x.example/?apiKey=1&sessionid=2&q=shoes", "https://x.example/?q=shoes"),
        ("?email=a%40b.co&utm_source=n", "?utm_source=n"),
        # IP addresses, v4 and v6, like e-mails (issue 9, item 16).
        ("from 192.168.100.200.", "from [ip]."),
        ("peer=203.0.113.77&x=1", "peer=[ip]&x=1"),
        ("http://10.0.0.1:8080/admin?peer=10.0.0.2", "http://10.0.0.1:8080/admin?peer=[ip]"),
        ("v6 2001:db8::8a2e:370:7334, fe80::1%eth0 and ::1", "v6 [ip], [ip] and [ip]"),
        ("2001:0db8:0000:0000:0000:ff00:0042:8329", "[ip]"),
        ("mapped ::ffff:198.51.100.23", "mapped ::ffff:[ip]"),
    ],
)
def test_scrub_redacts_and_strips(text: str, expected: str) -> None:
    assert scrub_string(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-22T12:00:00.000Z",
        "2026-11-22 12:00",
        "at 12:30:45",
        "Chrome/120.0.0.0 Safari/537.36",
        "version v1.2.3.4",
        "999.1.1.1",
        "1.2.3.4.5",
        "00:1a:2b:3c:4d:5e",
        "std::vector",
        "550e8400-e29b-41d4-a716-446655440000",
        "order 12345678",
        "1732275600000",
        "Chrome/120.0.6099.109",
        "price 1234567.89",
        "https://x.example/p?page=2&monkey=1&utm_term=shoes",
        # A URL's host is the site's server, not a person (browser tests load 127.0.0.1 pages).
        "http://127.0.0.1:8000/t/app?x=1",
        "http://[::1]:8000/t/app",
    ],
)
def test_scrub_leaves_ordinary_values_alone(text: str) -> None:
    assert scrub_string(text) == text


def test_param_policy_is_configurable() -> None:
    policy = ParamPolicy(extra=["ref"], keep=["code"])
    assert policy.strip("/p?ref=1&code=SPRING&token=x&a=1") == "/p?code=SPRING&a=1"


def test_schema_pii_rules() -> None:
    schema = {
        "type": "object",
        "properties": {
            "email": {"type": "string", "x-footfall-pii": "hash"},
            "phone": {"type": "string", "x-footfall-pii": "drop"},
            "lines": {
                "type": "array",
                "items": {"properties": {"note": {"x-footfall-pii": "redact"}}},
            },
        },
    }
    rules = pii_paths(schema)
    assert rules == [(("email",), "hash"), (("phone",), "drop"), (("lines", "*", "note"), "redact")]
    props = {"email": "a@b.co", "phone": "1", "lines": [{"note": "x", "n": 1}], "other": 1}
    out = apply_schema_rules(props, rules, K1, anonymous=False)
    assert out == {
        "email": K1.hash("a@b.co"),
        "lines": [{"note": "[redacted]", "n": 1}],
        "other": 1,
    }
    anonymous = apply_schema_rules(props, rules, K1, anonymous=True)
    assert "email" not in anonymous  # a hash still links: anonymous messages keep none


def test_ip_network() -> None:
    assert ip_network("203.0.113.77") == "203.0.113.0/24"
    assert ip_network("2001:db8:abcd:12::1") == "2001:db8:abcd::/48"
    assert ip_network("::ffff:203.0.113.77") == "203.0.113.0/24"
    assert ip_network("not-an-ip") is None


PROXIES = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32")]


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        ("203.0.113.5", {"x-forwarded-for": "1.2.3.4"}, "203.0.113.5"),  # untrusted peer
        ("10.0.0.2", {"x-forwarded-for": "1.2.3.4"}, "1.2.3.4"),
        ("10.0.0.2", {"x-forwarded-for": "6.6.6.6, 1.2.3.4, 10.0.0.9"}, "1.2.3.4"),  # forged left
        ("10.0.0.2", {}, "10.0.0.2"),
        ("10.0.0.2", {"forwarded": 'for="[2001:db8::7]:443";proto=https'}, "2001:db8::7"),
        ("10.0.0.2", {"forwarded": "for=unknown, for=10.0.0.5"}, "10.0.0.5"),
        ("127.0.0.1", {"x-forwarded-for": "1.2.3.4:5678"}, "1.2.3.4"),
    ],
)
def test_client_ip(peer: str, headers: dict, expected: str) -> None:
    assert client_ip(peer, headers, PROXIES) == expected
    assert client_ip(peer, headers, []) == peer


def _ctx(mode: str = "implied", ledger: LedgerView | None = None, **headers: str) -> RequestContext:
    site = Site(id=1, name="s", write_key="k", consent_mode=mode)
    return RequestContext(
        site=site, received_at=datetime.now(UTC), headers=headers, ledger=ledger or LedgerView()
    )


def test_consent_claims_and_ledger() -> None:
    assert claimed_analytics({"context": {"consent": {"categoryPreferences": {"Analytics": True}}}})
    assert claimed_analytics({"context": {"consent": {"analytics": False}}}) is False
    assert claimed_analytics({"context": {}}) is None
    granted = {"anonymousId": "a", "context": {"consent": {"analytics": True}}}
    assert analytics_consent({"anonymousId": "a"}, _ctx()) == UNDECIDED
    assert analytics_consent(granted, _ctx()) == GRANTED
    assert analytics_consent({"anonymousId": "a"}, _ctx(**{"sec-gpc": "1"})) == DENIED
    assert analytics_consent(granted, _ctx(**{"sec-gpc": "1"})) == GRANTED
    withdrawn = LedgerView(by_anonymous_id={"a": ConsentDecision(False, datetime.now(UTC))})
    assert analytics_consent(granted, _ctx(ledger=withdrawn)) == DENIED


def test_consent_step_per_mode() -> None:
    step = consent_step(K1)
    message = {"type": "track", "event": "X", "anonymousId": "a"}
    step(Draft(dict(message), None), _ctx("implied"))
    draft = Draft(dict(message), None)
    step(draft, _ctx("anonymous"))
    assert draft.anonymous
    with pytest.raises(Refused, match="consent"):
        step(Draft(dict(message), None), _ctx("required"))
    suppressed = LedgerView(suppressed_anonymous_ids={"a"})
    with pytest.raises(Refused, match="erased"):
        step(Draft(dict(message), None), _ctx("implied", ledger=suppressed))


def test_settings_refuse_default_key_outside_development() -> None:
    Settings(env="development")
    Settings(env="test")
    with pytest.raises(ValidationError, match="FOOTFALL_PII_KEY"):
        Settings(env="production")
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(env="production", pii_key="short")
    with pytest.raises(ValidationError, match="PREVIOUS_KEYS"):
        Settings(pii_previous_keys="k1:x")  # the current key's id
    with pytest.raises(ValidationError, match="PREVIOUS_KEYS"):
        Settings(env="production", pii_key="x" * 40, pii_previous_keys=f"k0:{DEV_PII_KEY}")
    with pytest.raises(ValidationError):
        Settings(trusted_proxies="10.0.0.0/8, nonsense")
    ok = Settings(env="production", pii_key="x" * 40, pii_previous_keys="k0:old-secret")
    assert ok.previous_pii_keys == [("k0", "old-secret")]


def test_schemas_check_rejects_unknown_pii_marks(tmp_path) -> None:
    folder = tmp_path / "signed_up"
    folder.mkdir()
    (folder / "1-0-0.json").write_text(
        '{"type": "object", "properties": {"email": {"x-footfall-pii": "encrypt"}}}'
    )
    (problem,) = check_dir(tmp_path)
    assert "/properties/email: x-footfall-pii must be one of hash, drop, redact" in problem
