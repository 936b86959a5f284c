"""Privacy step: keyed pseudonymization of identifiers and PII traits, no raw IPs.

Every identifier that can name a person is replaced by HMAC-SHA256(key, value)
before anything is stored; the key id travels with the row so keys can rotate.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

# Trait names (Segment's reserved traits and common variants) that carry PII.
PII_TRAITS = frozenset(
    {
        "email",
        "phone",
        "name",
        "firstName",
        "first_name",
        "lastName",
        "last_name",
        "username",
        "address",
        "birthday",
        "ip",
    }
)
PSEUDONYMIZED_MARK = "_footfall_pseudonymized"


@dataclass(frozen=True, slots=True)
class PiiKey:
    """The HMAC secret and its public id."""

    key_id: str
    secret: bytes

    def hash(self, value: str) -> str:
        return hmac.new(self.secret, value.encode(), hashlib.sha256).hexdigest()


def _hash_id(value: Any, key: PiiKey) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return value  # left for validation to reject
    return key.hash(str(value))


def _hash_traits(traits: Any, key: PiiKey) -> Any:
    if not isinstance(traits, dict):
        return traits
    return {
        name: (_hash_id(value, key) if name in PII_TRAITS and value is not None else value)
        for name, value in traits.items()
    }


def pseudonymize(message: dict[str, Any], key: PiiKey) -> dict[str, Any]:
    """A copy of ``message`` with userId, previousId and PII traits hashed, context.ip gone."""
    if message.get(PSEUDONYMIZED_MARK):
        return message
    out = dict(message)
    for field in ("userId", "previousId"):
        if out.get(field) is not None:
            out[field] = _hash_id(out[field], key)
    if "traits" in out:
        out["traits"] = _hash_traits(out["traits"], key)
    context = out.get("context")
    if isinstance(context, dict):
        context = dict(context)
        context.pop("ip", None)
        if "traits" in context:
            context["traits"] = _hash_traits(context["traits"], key)
        out["context"] = context
    out[PSEUDONYMIZED_MARK] = key.key_id
    return out
