"""Privacy step: keyed pseudonymization, schema PII rules, scrubbing, no raw IPs.

Everything that can name a person is replaced before anything is stored:
userId, previousId and PII traits by HMAC-SHA256(key, value) (the key id travels
with the row, so keys can rotate); properties a schema marks
``"x-footfall-pii"`` are hashed, dropped or redacted; every other string has
emails, phone numbers and IP addresses redacted and secret URL parameters removed
(failed events too, and their error texts); the IP is
kept only as a truncated network (or not at all) and used raw only in memory.
A draft the consent step marked ``anonymous`` keeps no identifier at all and
gets the cookieless daily visitor hash instead. docs/privacy.md lists every
field and what happens to it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

import orjson

from footfall.pipeline.scrub import (
    REDACTED_MARK,
    ParamPolicy,
    language_tag,
    redact_text,
    scrub_string,
    scrub_value,
    zone_name,
)
from footfall.pipeline.types import Draft, RequestContext, RequestMemo, Site
from footfall.schemas.registry import SchemaRegistry

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

# Fields that are ids, times or technical values: never free text to scrub.
_TOP_LEVEL_KEPT = frozenset(
    {"type", "messageId", "anonymousId", "userId", "previousId", "timestamp",
     "originalTimestamp", "sentAt", "receivedAt", "writeKey", "integrations", PSEUDONYMIZED_MARK}
)  # fmt: skip
_CONTEXT_KEPT = frozenset(
    {"userAgent", "userAgentData", "library", "consent", "schema", "sessionId", "screen", "os",
     "app", "network"}
)  # fmt: skip
# Kept strings that are not scrubbed either: the dedup key, the session, the device.
_VERBATIM = frozenset({"messageId", "sessionId", "userAgent"})
# Kept fields that hold an object when valid; the others hold a string or a number.
_OBJECT_FIELDS = frozenset(
    {"integrations", "userAgentData", "library", "consent", "screen", "os", "app", "network"}
)
# Identifiers of the device itself: gone from an anonymous message.
_DEVICE_IDS = ("id", "advertisingId", "adTrackingEnabled", "token")
IP_STORAGE = ("network", "none")


@dataclass(frozen=True, slots=True)
class PiiKey:
    """The HMAC secret and its public id."""

    key_id: str
    secret: bytes

    def hash(self, value: str) -> str:
        return hmac.new(self.secret, value.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Keyring:
    """The current key (hashes new data) and retired ones (still match old rows)."""

    current: PiiKey
    previous: tuple[PiiKey, ...] = ()

    @property
    def keys(self) -> tuple[PiiKey, ...]:
        return (self.current, *self.previous)

    def user_hashes(self, user_id: Any) -> list[str]:
        """What a raw userId is stored as, under every key (for look-ups)."""
        return [key.hash(str(user_id)) for key in self.keys]

    def anonymous_ids(self, anonymous_id: Any) -> list[str]:
        """What a raw anonymousId is stored as, under every key (for look-ups).

        The value as sent too: versions before 2026-12-01 kept an IP address used as
        anonymousId unhashed, and erasure must still find those rows.
        """
        stored = (stored_anonymous_id(anonymous_id, k) for k in self.keys)
        return list(dict.fromkeys([*stored, str(anonymous_id)]))


class MemoKey:
    """A :class:`PiiKey` that remembers its results for one request (:func:`memo_key`).

    An id that several messages of a batch carry (the visitor's userId on each of
    them) costs one HMAC per request instead of one per message; an anonymousId
    is checked for personal data once. The results are the key's own: same key,
    same value, same hash.
    """

    __slots__ = ("_hashes", "_stored", "key", "key_id")

    def __init__(self, key: PiiKey) -> None:
        self.key = key
        self.key_id = key.key_id
        self._hashes: dict[str, str] = {}
        self._stored: dict[str, str] = {}

    def hash(self, value: str) -> str:
        found = self._hashes.get(value)
        if found is None:
            found = self._hashes[value] = self.key.hash(value)
        return found

    def stored_anonymous_id(self, text: str) -> str:
        found = self._stored.get(text)
        if found is None:
            found = self._stored[text] = self.hash(text) if _looks_personal(text) else text
        return found


# A key, or the same key remembering its results for the request.
Hasher = PiiKey | MemoKey
_MEMO_KEY = "privacy.key"  # RequestMemo keys
_SCRUB = "privacy.scrub"
_VISITOR = "privacy.visitor"


def memo_key(key: Hasher, memo: RequestMemo) -> MemoKey:
    """``key`` with its results kept in the request's memo (one per key and request)."""
    if isinstance(key, MemoKey):
        return key
    return memo.of(_MEMO_KEY, key, lambda: MemoKey(key))


def keyring_of(key_id: str, secret: str, previous: Iterable[tuple[str, str]] = ()) -> Keyring:
    """The keyring from configuration (``FOOTFALL_PII_KEY[_ID]``, ``…_PREVIOUS_KEYS``)."""
    return Keyring(
        PiiKey(key_id, secret.encode()), tuple(PiiKey(i, s.encode()) for i, s in previous)
    )


def _looks_personal(value: str) -> bool:
    return "@" in value or redact_text(value) != value


def stored_anonymous_id(value: Any, key: Hasher) -> str:
    """anonymousId as stored: kept (a random device id), hashed if it is an email, a phone
    number or an IP address.

    The choice depends on the value alone, so one id is always stored the same way.
    """
    text = str(value)
    if isinstance(key, MemoKey):
        return key.stored_anonymous_id(text)
    return key.hash(text) if _looks_personal(text) else text


def _hash_id(value: Any, key: Hasher) -> Any:
    """An id field hashed by value: a scalar's text, or an array's or object's JSON.

    A non-string id fails validation, but the message is still kept in
    failed_events, so an e-mail inside ``["jane@example.org"]`` must not be.
    """
    if value is None or isinstance(value, bool):
        return value  # nothing that names anyone
    return _hash_any(value, key)


def _anonymous_id(value: Any, key: Hasher) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str | int | float):
        return stored_anonymous_id(value, key)
    return _hash_any(value, key)  # an array or object: hashed whole, like any non-string id


def _hash_any(value: Any, key: Hasher) -> str:
    """A scalar's text, or an object's canonical JSON (e.g. an address), hashed."""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return key.hash(str(value))
    return key.hash(orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode())


@dataclass(frozen=True, slots=True)
class Policy:
    """One site's privacy rules: the site-wide ones with its ``sites.settings`` applied."""

    params: ParamPolicy = field(default_factory=ParamPolicy)
    hash_traits: frozenset[str] = frozenset()  # trait_key() of the names to hash
    ip_storage: str = "network"  # "network" (/24, /48) or "none"

    @classmethod
    def of(cls, settings: dict[str, Any], extra_params: Iterable[str] = ()) -> Policy:
        ip_storage = settings.get("ip_storage", "network")
        return cls(
            params=ParamPolicy(
                [*extra_params, *_names(settings.get("sensitive_params"))],
                _names(settings.get("keep_params")),
            ),
            hash_traits=frozenset(
                map(trait_key, PII_TRAITS | set(_names(settings.get("hash_traits"))))
            ),
            ip_storage=ip_storage if ip_storage in IP_STORAGE else "none",
        )


def _names(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


@lru_cache(maxsize=4096)
def trait_key(name: str) -> str:
    """Trait names compared case- and separator-insensitively: Email, first_name, firstName."""
    return name.lower().replace("_", "").replace("-", "").replace(" ", "")


DEFAULT_POLICY = Policy(hash_traits=frozenset(map(trait_key, PII_TRAITS)))


class PrivacyPolicy:
    """The collector's privacy policy: built once from settings, asked for each site's rules.

    The one object both stored rows (the privacy step) and failed events
    (:func:`failure_record`, and through it replay) take their rules from, so a
    site-wide sensitive parameter (``FOOTFALL_SENSITIVE_PARAMS``) or a site's
    ``sensitive_params`` / ``keep_params`` / ``hash_traits`` applies to both alike.
    Each site's :class:`Policy` is parsed once per settings value and kept here
    (the Pipeline holds this object; nothing is cached at module level).
    """

    __slots__ = ("_max_sites", "_sites", "sensitive_params")

    def __init__(self, sensitive_params: Iterable[str] = (), *, max_sites: int = 10_000) -> None:
        self.sensitive_params = frozenset(p.lower() for p in sensitive_params)
        self._sites: dict[int, tuple[dict[str, Any], Policy]] = {}
        self._max_sites = max_sites

    def for_site(self, site: Site) -> Policy:
        """The rules for ``site`` (its settings as cached with the Site)."""
        cached = self._sites.get(site.id)
        # Compared by value: a reloaded site with changed settings gets new rules.
        if cached is not None and (cached[0] is site.settings or cached[0] == site.settings):
            return cached[1]
        policy = Policy.of(site.settings, self.sensitive_params)
        if len(self._sites) >= self._max_sites:
            self._sites.clear()
        self._sites[site.id] = (site.settings, policy)
        return policy


def _traits(
    traits: Any, key: Hasher, policy: Policy, scrub: Callable[[str], str], hashed: bool
) -> Any:
    if not isinstance(traits, dict):
        return scrub_value(traits, scrub)
    return {
        name: (
            (value if hashed else _hash_any(value, key))
            if value is not None and trait_key(name) in policy.hash_traits
            else scrub_value(value, scrub)
        )
        for name, value in traits.items()
    }


def _kept(name: str, value: Any, key: Hasher, scrub: Callable[[str], str]) -> Any:
    """A field kept as sent (an id, a time, a technical value), if it holds what it should.

    Where a string or number belongs, anything else is hashed whole (it may hold an
    e-mail in an array); an object (``library``, ``consent`` …) has its strings scrubbed.
    Idempotent (a hash is a string; scrubbed text scrubs to itself), so it also runs on
    a replayed failure.
    """
    if isinstance(value, str):
        # A time or a type holds no e-mail when valid, so scrubbing costs nothing then;
        # ids that must stay as sent (dedup, sessions, device detection) are kept.
        return value if name in _VERBATIM else scrub(value)
    if value is None or isinstance(value, int | float | bool):
        return value
    if name in _OBJECT_FIELDS:
        return scrub_value(value, scrub)
    return _hash_any(value, key)


def pseudonymize(
    message: dict[str, Any],
    key: Hasher,
    policy: Policy = DEFAULT_POLICY,
    memo: RequestMemo | None = None,
) -> dict[str, Any]:
    """A copy of ``message`` safe to store: ids and PII traits hashed, text scrubbed, no IP.

    Used on every valid message (by the privacy step) and on every failed one
    (process.py), so failed_events hold no raw PII either. Idempotent: a message
    already marked (a replayed failure) is not hashed again, but its text is
    scrubbed again under ``policy``, so rules added since it failed (a new
    sensitive parameter) apply when it is replayed. With the request's ``memo``, an id
    is hashed and a string scrubbed once per request (the same results).
    """
    hashed = bool(message.get(PSEUDONYMIZED_MARK))
    if memo is not None:
        key = memo_key(key, memo)
        scrub = scrubber(policy, memo)
    else:

        def scrub(text: str) -> str:
            return scrub_string(text, policy.params)

    out: dict[str, Any] = {}
    for name, value in message.items():
        if name in ("userId", "previousId", "anonymousId") and hashed:
            # Hashes are strings: an array or object here was never pseudonymized (a
            # failure stored by an earlier version), so it is hashed now.
            out[name] = _hash_any(value, key) if isinstance(value, list | dict) else value
        elif name in ("userId", "previousId"):
            out[name] = _hash_id(value, key)
        elif name == "anonymousId":
            out[name] = _anonymous_id(value, key)
        elif name == "traits":
            out[name] = _traits(value, key, policy, scrub, hashed)
        elif name == "context" and isinstance(value, dict):
            context: dict[str, Any] = {}
            for cname, cvalue in value.items():
                if cname == "ip":
                    continue  # the raw IP is never stored
                if cname == "traits":
                    context[cname] = _traits(cvalue, key, policy, scrub, hashed)
                elif cname == "timezone":
                    if (zone := zone_name(cvalue)) is not None:
                        context[cname] = zone  # only an IANA zone: anything else is dropped
                elif cname == "locale":
                    if (tag := language_tag(cvalue)) is not None:
                        context[cname] = tag  # only a BCP 47 tag: anything else is dropped
                elif cname in _CONTEXT_KEPT:
                    context[cname] = _kept(cname, cvalue, key, scrub)
                else:
                    context[cname] = scrub_value(cvalue, scrub)
            out[name] = context
        elif name in _TOP_LEVEL_KEPT:
            out[name] = _kept(name, value, key, scrub)
        else:
            out[name] = scrub_value(value, scrub)  # properties, event, name, groupId, ...
    out[PSEUDONYMIZED_MARK] = message.get(PSEUDONYMIZED_MARK) or key.key_id
    return out


def scrubber(policy: Policy, memo: RequestMemo) -> Callable[[str], str]:
    """:func:`scrub_string` under ``policy``, each distinct string scrubbed once per request.

    A batch repeats most of its strings (the page, the referrer, the library,
    property names): the memo's table maps each to its scrubbed text.
    """
    return memo.of(_SCRUB, policy, lambda: _Scrubbed(policy.params).__getitem__)


class _Scrubbed(dict[str, str]):
    """Text -> scrubbed text, filled on first use: a hit is a plain dict look-up."""

    __slots__ = ("params",)

    def __init__(self, params: ParamPolicy) -> None:
        super().__init__()
        self.params = params

    def __missing__(self, text: str) -> str:
        scrubbed = self[text] = scrub_string(text, self.params)
        return scrubbed


# --- schema annotations ("x-footfall-pii") ---------------------------------------------


def _apply_rule(
    value: Any, path: tuple[str, ...], action: str, key: Hasher, anonymous: bool
) -> Any:
    """``value`` (a properties object) with ``action`` applied at ``path``."""
    if not path:
        return REDACTED_MARK if action == "redact" else _hash_any(value, key)
    head, rest = path[0], path[1:]
    if head == "*":
        if isinstance(value, list):
            if not rest and (action == "drop" or (anonymous and action == "hash")):
                return []
            return [_apply_rule(item, rest, action, key, anonymous) for item in value]
        return value
    if not isinstance(value, dict) or head not in value:
        return value
    out = dict(value)
    if not rest and (action == "drop" or (anonymous and action == "hash")):
        del out[head]  # a hash still links: an anonymous message keeps none
    elif out[head] is not None:
        out[head] = _apply_rule(out[head], rest, action, key, anonymous)
    return out


def apply_schema_rules(
    properties: Any, rules: Iterable[tuple[tuple[str, ...], str]], key: Hasher, anonymous: bool
) -> Any:
    """Hash, drop or redact the properties a schema marks ``x-footfall-pii``."""
    for path, action in rules:
        properties = _apply_rule(properties, path, action, key, anonymous)
    return properties


# --- IP and the cookieless visitor hash --------------------------------------------------


@lru_cache(maxsize=4096)
def ip_network(ip: str) -> str | None:
    """The /24 (IPv4) or /48 (IPv6) network of ``ip``; None if it is not an address."""
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def visitor_hash(salt: bytes, site_id: int, ip: str, user_agent: str) -> str:
    """HMAC-SHA256(daily salt, site|IP|user agent): one visitor, one site, one day."""
    message = f"{site_id}|{ip}|{user_agent}".encode()
    return hmac.new(salt, message, hashlib.sha256).hexdigest()


class SaltRing:
    """The secret daily salts this process knows (today's and yesterday's), in memory.

    storage/salts.py creates, loads and deletes them; the step only reads.
    """

    def __init__(self) -> None:
        self._salts: dict[date, bytes] = {}
        self.loaded_for: date | None = None

    def set(self, day: date, salts: dict[date, bytes]) -> None:
        self._salts = {d: s for d, s in salts.items() if d in (day, day - timedelta(days=1))}
        self.loaded_for = day

    def pair(self, day: date) -> tuple[bytes | None, bytes | None]:
        """(salt of ``day``, salt of the day before), None where unknown."""
        return self._salts.get(day), self._salts.get(day - timedelta(days=1))


# --- the step ------------------------------------------------------------------------------


def strip_identifiers(message: dict[str, Any]) -> dict[str, Any]:
    """``message`` without anything that links it to a person or a device."""
    out = {k: v for k, v in message.items() if k not in ("anonymousId", "userId", "previousId")}
    out.pop("traits", None)
    context = out.get("context")
    if isinstance(context, dict):
        context = {k: v for k, v in context.items() if k not in ("sessionId", "traits", "ip")}
        device = context.get("device")
        if isinstance(device, dict):
            context["device"] = {k: v for k, v in device.items() if k not in _DEVICE_IDS}
        out["context"] = context
    if isinstance(out.get("properties"), dict) and out.get("type") == "alias":
        out["properties"] = {k: v for k, v in out["properties"].items() if k != "previousId"}
    return out


def privacy_step(
    key: PiiKey,
    policies: PrivacyPolicy,
    *,
    salts: SaltRing | None = None,
) -> Callable[[Draft, RequestContext], None]:
    """The privacy step (see the module docstring); pure, per message.

    ``policies`` must be the Pipeline's own, so failures get the same rules as rows.
    """

    def step(draft: Draft, ctx: RequestContext) -> None:
        policy = policies.for_site(ctx.site)
        hasher = memo_key(key, ctx.memo)
        message = draft.message
        rules = (
            draft.pii
            if isinstance(message.get("properties"), dict)
            and not message.get(PSEUDONYMIZED_MARK)  # a replayed failure: applied already
            else ()
        )
        if rules:
            message = {
                **message,
                "properties": apply_schema_rules(
                    message["properties"], rules, hasher, draft.anonymous
                ),
            }
        if draft.anonymous:
            message = strip_identifiers(message)
        pseudonymized = pseudonymize(message, hasher, policy, ctx.memo)
        draft.message = pseudonymized
        hashed = _holds_hashes(message, pseudonymized, policy, rules, draft.anonymous)
        draft.columns["pii_key_id"] = key.key_id if hashed else None
        if draft.anonymous:
            draft.columns["ip_network"] = None
            draft.columns["visitor_hash"] = _visitor(draft, ctx, salts)
        elif ctx.ip and policy.ip_storage == "network":
            draft.columns["ip_network"] = ip_network(ctx.ip)

    return step


def _holds_hashes(
    before: dict[str, Any],
    after: dict[str, Any],
    policy: Policy,
    rules: Iterable[tuple[tuple[str, ...], str]],
    anonymous: bool,
) -> bool:
    """Whether the stored message holds a value hashed with the key (then its id is kept)."""
    if after.get("userId") is not None or after.get("previousId") is not None:
        return True
    if after.get("anonymousId") != before.get("anonymousId"):
        return True
    if not anonymous and any(action == "hash" for _, action in rules):
        return True
    context = before.get("context")
    for traits in (
        before.get("traits"),
        context.get("traits") if isinstance(context, dict) else None,
    ):
        if isinstance(traits, dict) and any(
            value is not None and trait_key(name) in policy.hash_traits
            for name, value in traits.items()
        ):
            return True
    return False


def _visitor(draft: Draft, ctx: RequestContext, salts: SaltRing | None) -> str | None:
    if salts is None or not ctx.ip:
        return None
    current, previous = salts.pair(ctx.received_at.date())
    if current is None:
        return None
    context = draft.message.get("context")
    agent = context.get("userAgent") if isinstance(context, dict) else None
    user_agent = agent if isinstance(agent, str) else (ctx.user_agent or "")
    site_id, ip, memo = ctx.site.id, ctx.ip, ctx.memo
    if previous is not None:
        # The writer keeps yesterday's hash for a visitor active across midnight
        # (storage/salts.py, continue_visitors).
        draft.extras["previous_visitor_hash"] = memo.once(
            (_VISITOR, previous, site_id, ip, user_agent),
            lambda: visitor_hash(previous, site_id, ip, user_agent),
        )
    return memo.once(
        (_VISITOR, current, site_id, ip, user_agent),
        lambda: visitor_hash(current, site_id, ip, user_agent),
    )


def failure_record(
    message: dict[str, Any],
    key: PiiKey,
    ctx: RequestContext,
    policy: Policy,
    registry: SchemaRegistry | None = None,
) -> dict[str, Any]:
    """What failed_events.raw keeps of a message: pseudonymized like a stored one (the
    event schema's PII marks applied when its schema is known, even though the message
    failed it), and without identifiers when the visitor's consent does not allow them."""
    from footfall.pipeline.consent import may_identify

    if message.get(PSEUDONYMIZED_MARK):
        # A replayed failure: scrubbed again only.
        return pseudonymize(message, key, policy, ctx.memo)
    anonymous = not may_identify(message, ctx)
    event = message.get("event")
    if (
        registry is not None
        and isinstance(event, str)
        and isinstance(message.get("properties"), dict)
    ):
        schema = registry.event_schema(event, None, ctx.site.schema_dir)
        if schema is not None and schema.pii:
            properties = apply_schema_rules(
                message["properties"], schema.pii, memo_key(key, ctx.memo), anonymous
            )
            message = {**message, "properties": properties}
    if anonymous:
        message = strip_identifiers(message)
    return pseudonymize(message, key, policy, ctx.memo)


def scrub_errors(errors: list[dict[str, str]], policy: Policy) -> list[dict[str, str]]:
    """Error texts as stored: scrubbed like any free text, as a last line behind the
    validator's value-free messages (a JSON Pointer holds the message's own keys)."""
    return [
        {name: scrub_string(text, policy.params) if isinstance(text, str) else text
         for name, text in error.items()}
        for error in errors
    ]  # fmt: skip
