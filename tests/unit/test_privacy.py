"""Keyed pseudonymization is stable per key, differs across keys, records the key id."""

from __future__ import annotations

import hashlib
import hmac

from footfall.pipeline.privacy import PSEUDONYMIZED_MARK, PiiKey, pseudonymize

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
        "traits": {"email": "e@example.com", "plan": "pro", "name": "Eve"},
        "context": {"ip": "198.51.100.7", "traits": {"phone": "+49 170 1234567"}, "locale": "de"},
    }
    out = pseudonymize(message, K1)
    assert out["userId"] == K1.hash("42")
    assert out["anonymousId"] == "anon-1"
    assert out["traits"] == {
        "email": K1.hash("e@example.com"),
        "plan": "pro",
        "name": K1.hash("Eve"),
    }
    assert "ip" not in out["context"]
    assert out["context"]["traits"]["phone"] == K1.hash("+49 170 1234567")
    assert out[PSEUDONYMIZED_MARK] == "k1"
    assert message["userId"] == 42  # the input is not modified
    assert pseudonymize(out, K2) is out  # never hashed twice
