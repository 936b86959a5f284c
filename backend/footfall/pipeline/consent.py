"""Consent step: the site's consent mode decides whether a message is kept, kept
without identifiers, or refused.

What the visitor agreed to comes from, strongest first:

1. the consent ledger (``consent_log``): the latest recorded decision for the
   message's anonymousId or userId. A withdrawal there beats whatever a later
   message claims; the http layer loads the batch's entries into
   ``RequestContext.ledger`` before the pipeline runs (storage/consent.py), and
   a ``Consent Updated`` message earlier in the same batch updates that view;
2. the message's own claim, ``context.consent`` (Segment's
   ``{"categoryPreferences": {"analytics": true}}`` or a flat ``{"analytics": true}``);
3. an opt-out signal: the ``Sec-GPC: 1`` header (site setting ``honor_gpc``,
   default on) or ``DNT: 1`` (``honor_dnt``, default off). An explicit grant
   (claim or ledger) beats the signal, as the tracker does.

Then, per ``sites.consent_mode`` (docs/privacy.md has the full matrix):

============  ==========  =====================  =====================
mode          granted     no decision            denied / opt-out
============  ==========  =====================  =====================
implied       stored      stored                 refused ``consent``
anonymous     stored      stored, anonymous      stored, anonymous
required      stored      refused ``consent``    refused ``consent``
============  ==========  =====================  =====================

"Anonymous" means stripped of every identifier (privacy step) and counted by
the cookieless visitor hash; identify and alias messages, which are nothing but
identifiers, are refused instead. A ``Consent Updated`` message is the decision
itself: it is always kept (its ids go to the ledger; the event row is anonymous
unless analytics is granted). Ids erased with suppression are refused ``erased``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from footfall.pipeline.normalize import corrected_timestamp, parse_timestamp
from footfall.pipeline.privacy import Hasher, PiiKey, memo_key, stored_anonymous_id
from footfall.pipeline.types import Draft, Refused, RequestContext
from footfall.pipeline.validate import Invalid
from footfall.schemas.registry import slugify

REFUSED_CONSENT = "consent"  # the consent mode does not allow the message
REFUSED_ERASED = "erased"  # the id was erased with suppression

CONSENT_EVENT = "consent_updated"  # slug of the tracker's "Consent Updated" event
ANALYTICS = "analytics"
MODES = ("implied", "anonymous", "required")

GRANTED, DENIED, UNDECIDED = "granted", "denied", "undecided"


@dataclass(frozen=True, slots=True)
class ConsentDecision:
    """A recorded choice about analytics (None: the decision did not cover analytics)."""

    analytics: bool | None
    decided_at: datetime


@dataclass(slots=True)
class LedgerView:
    """The ledger's latest analytics decisions for one batch's ids, keyed by the raw ids.

    Built by storage/consent.py (one query per request); mutable so a decision
    earlier in the batch governs the messages after it.
    """

    by_anonymous_id: dict[str, ConsentDecision] = field(default_factory=dict)
    by_user_id: dict[str, ConsentDecision] = field(default_factory=dict)
    suppressed_anonymous_ids: set[str] = field(default_factory=set)
    suppressed_user_ids: set[str] = field(default_factory=set)

    def latest(self, anonymous_id: str | None, user_id: str | None) -> ConsentDecision | None:
        if not self.by_anonymous_id and not self.by_user_id:
            return None  # the usual case: nobody in the batch ever decided
        found = [
            d
            for d in (
                self.by_anonymous_id.get(anonymous_id) if anonymous_id is not None else None,
                self.by_user_id.get(user_id) if user_id is not None else None,
            )
            if d is not None
        ]
        return max(found, key=lambda d: d.decided_at) if found else None

    def record(
        self, anonymous_id: str | None, user_id: str | None, decision: ConsentDecision
    ) -> None:
        """Take ``decision`` unless the ledger already holds a later one (a stale replay)."""
        for table, subject in ((self.by_anonymous_id, anonymous_id), (self.by_user_id, user_id)):
            if subject is None:
                continue
            known = table.get(subject)
            if known is None or decision.decided_at >= known.decided_at:
                table[subject] = decision

    def suppressed(self, anonymous_id: str | None, user_id: str | None) -> bool:
        return (anonymous_id is not None and anonymous_id in self.suppressed_anonymous_ids) or (
            user_id is not None and user_id in self.suppressed_user_ids
        )


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """A ``consent_log`` row to append, as the writer's TxStep inserts it."""

    anonymous_id: str | None  # as stored in events
    user_id: str | None  # hashed
    pii_key_id: str | None
    granted: tuple[str, ...]
    denied: tuple[str, ...]
    analytics: bool | None
    policy_version: str | None
    decided_at: datetime


def subject_ids(message: dict[str, Any]) -> tuple[str | None, str | None]:
    """The raw (anonymousId, userId) of a message, as strings."""
    return _id_text(message.get("anonymousId")), _id_text(message.get("userId"))


def _id_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    if value is None or isinstance(value, bool | dict | list):
        return None
    return str(value)


def claimed_analytics(message: dict[str, Any]) -> bool | None:
    """What ``context.consent`` says about analytics (None: nothing)."""
    context = message.get("context")
    consent = context.get("consent") if isinstance(context, dict) else None
    if not isinstance(consent, dict):
        return None
    preferences = consent.get("categoryPreferences")
    if not isinstance(preferences, dict):
        preferences = consent
    for name, value in preferences.items():
        if isinstance(name, str) and name.lower() == ANALYTICS and isinstance(value, bool):
            return value
    return None


def opted_out(ctx: RequestContext) -> bool:
    """Sec-GPC (if the site honors it, the default) or DNT (if it opted in) says no."""
    settings = ctx.site.settings
    headers = ctx.headers
    gpc, dnt = ctx.memo.of(_SIGNALS, headers, lambda: _signals(headers))
    return bool(settings.get("honor_gpc", True) and gpc) or bool(
        settings.get("honor_dnt", False) and dnt
    )


_SIGNALS = "consent.signals"  # RequestMemo key


def _signals(headers: Mapping[str, str]) -> tuple[bool, bool]:
    """(Sec-GPC: 1, DNT: 1) of a request, read once per request."""
    return headers.get("sec-gpc", "").strip() == "1", headers.get("dnt", "").strip() == "1"


def analytics_consent(message: dict[str, Any], ctx: RequestContext) -> str:
    """GRANTED, DENIED or UNDECIDED for ``message`` (see the module docstring)."""
    return _analytics_consent(message, ctx, *subject_ids(message))


def _analytics_consent(
    message: dict[str, Any], ctx: RequestContext, anonymous_id: str | None, user_id: str | None
) -> str:
    latest = ctx.ledger.latest(anonymous_id, user_id) if ctx.ledger is not None else None
    if latest is not None and latest.analytics is False:
        return DENIED
    claim = claimed_analytics(message)
    if claim is False:
        return DENIED
    if claim is True or (latest is not None and latest.analytics):
        return GRANTED
    return DENIED if opted_out(ctx) else UNDECIDED


def may_identify(message: dict[str, Any], ctx: RequestContext) -> bool:
    """Whether the message may be kept with its identifiers (used for failed events too)."""
    anonymous_id, user_id = subject_ids(message)
    if ctx.ledger is not None and ctx.ledger.suppressed(anonymous_id, user_id):
        return False
    state = analytics_consent(message, ctx)
    return state == GRANTED or (state == UNDECIDED and ctx.site.consent_mode == "implied")


def is_consent_event(message: dict[str, Any]) -> bool:
    event = message.get("event")
    return (
        message.get("type") == "track"
        and isinstance(event, str)
        and slugify(event) == CONSENT_EVENT
    )


def _decided_at(message: dict[str, Any], ctx: RequestContext) -> datetime:
    try:
        original = parse_timestamp(
            message.get("timestamp", message.get("originalTimestamp")), "timestamp"
        )
        sent_at = parse_timestamp(message.get("sentAt", ctx.batch_sent_at), "sentAt")
    except Invalid:
        return ctx.received_at
    return corrected_timestamp(ctx.received_at, sent_at, original)


def new_entry(
    key: Hasher,
    *,
    anonymous_id: str | None,
    user_id: str | None,
    purposes: dict[str, bool],
    policy_version: str | None,
    decided_at: datetime,
) -> LedgerEntry:
    """A ledger entry from raw ids (pseudonymized here): one rule for messages and admins."""
    return LedgerEntry(
        anonymous_id=stored_anonymous_id(anonymous_id, key) if anonymous_id else None,
        user_id=key.hash(user_id) if user_id else None,
        pii_key_id=key.key_id,
        granted=tuple(sorted(k for k, v in purposes.items() if v)),
        denied=tuple(sorted(k for k, v in purposes.items() if not v)),
        analytics=purposes.get(ANALYTICS),
        policy_version=None if policy_version is None else policy_version[:64],
        decided_at=decided_at,
    )


def ledger_entry(message: dict[str, Any], ctx: RequestContext, key: PiiKey) -> LedgerEntry:
    """The ledger row a ``Consent Updated`` message stands for."""
    properties = message.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    version = properties.get("policy_version")
    anonymous_id, user_id = subject_ids(message)
    return new_entry(
        memo_key(key, ctx.memo),
        anonymous_id=anonymous_id,
        user_id=user_id,
        purposes={k: v for k, v in properties.items() if isinstance(v, bool)},
        policy_version=None if version is None else str(version),
        decided_at=_decided_at(message, ctx),
    )


def consent_step(key: PiiKey) -> Callable[[Draft, RequestContext], None]:
    """The consent gate (see the module docstring); pure, per message, in batch order."""

    def step(draft: Draft, ctx: RequestContext) -> None:
        message = draft.message
        anonymous_id, user_id = subject_ids(message)
        ledger = ctx.ledger
        if ledger is not None and ledger.suppressed(anonymous_id, user_id):
            raise Refused(REFUSED_ERASED)
        if is_consent_event(message):
            entry = ledger_entry(message, ctx, key)
            draft.extras["consent"] = entry
            if entry.analytics is not None and ledger is not None:
                ledger.record(
                    anonymous_id, user_id, ConsentDecision(entry.analytics, entry.decided_at)
                )
            if ledger is None and entry.analytics is not None:
                state = GRANTED if entry.analytics else DENIED
            else:
                state = _analytics_consent(message, ctx, anonymous_id, user_id)
            # The decision is always kept; its identifiers stay in the ledger only
            # unless analytics is granted.
            draft.anonymous = state != GRANTED
            return
        state = _analytics_consent(message, ctx, anonymous_id, user_id)
        mode = ctx.site.consent_mode
        if state == GRANTED or (state == UNDECIDED and mode == "implied"):
            return
        if mode == "anonymous" and message.get("type") not in ("identify", "alias"):
            draft.anonymous = True
            return
        raise Refused(REFUSED_CONSENT)

    return step
