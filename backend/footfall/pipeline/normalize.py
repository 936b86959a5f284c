"""Normalize step: message id, clock-skew-corrected timestamps and the event's columns."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson

from footfall.pipeline import reasons
from footfall.pipeline.identifiers import MAX_MESSAGE_ID_LENGTH, storable_text
from footfall.pipeline.privacy import PSEUDONYMIZED_MARK
from footfall.pipeline.types import EventRow, RequestContext
from footfall.pipeline.validate import Invalid

# Timestamps accepted from clients. The bounds leave room for every calculation
# done later (time-zone offsets, session gaps, the clock-skew correction), which
# would overflow near year 1 or 9999, and no real event happened before 1970.
MIN_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIMESTAMP = datetime(9000, 1, 1, tzinfo=UTC)


def _out_of_range(field: str) -> Invalid:
    return Invalid(
        reasons.INVALID_TIMESTAMP,
        [
            {
                "path": f"/{field}",
                "message": f"out of range ({MIN_TIMESTAMP:%Y-%m-%d} to {MAX_TIMESTAMP:%Y-%m-%d})",
            }
        ],
    )


def parse_timestamp(value: Any, field: str) -> datetime | None:
    """An ISO-8601 string as an aware UTC datetime (naive means UTC); None when absent.

    Raises Invalid (``invalid_timestamp``) when it is not ISO-8601 or lies outside
    MIN_TIMESTAMP .. MAX_TIMESTAMP.
    """
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            try:
                parsed = parsed.astimezone(UTC)
            except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00
                raise _out_of_range(field) from None
            if not MIN_TIMESTAMP <= parsed < MAX_TIMESTAMP:
                raise _out_of_range(field)
            return parsed
    raise Invalid(
        reasons.INVALID_TIMESTAMP,
        [{"path": f"/{field}", "message": "not an ISO-8601 date-time (format)"}],
    )


def corrected_timestamp(
    received_at: datetime, sent_at: datetime | None, original: datetime | None
) -> datetime:
    """When the event happened, on the server's clock.

    The client's clock may be wrong, but the time that passed between the event
    and the send (``sentAt - originalTimestamp``) is measured on that one clock,
    so it is right: ``timestamp = receivedAt - (sentAt - originalTimestamp)``.
    Without ``sentAt`` the client time is taken as is. Clamped so nothing lands
    in the future.
    """
    if original is None:
        return received_at
    if sent_at is None:
        return min(original, received_at)
    skew = sent_at - original
    # Both are within MIN..MAX_TIMESTAMP, so the difference is representable; the
    # result may not be (a sentAt far ahead of the timestamp).
    if skew > received_at - MIN_TIMESTAMP:
        raise _out_of_range("sentAt")
    return min(received_at - skew, received_at)


def message_id(message: dict[str, Any], site_id: int) -> str:
    """The client's ``messageId``, or a content hash so a retried copy still dedups."""
    given = message.get("messageId")
    if isinstance(given, str) and given and storable_text(given, MAX_MESSAGE_ID_LENGTH):
        return given
    # Also for a messageId that can't be a key (too long, NUL ...): the message
    # fails validation and is stored in failed_events under this id instead.
    body = {k: v for k, v in message.items() if k not in ("sentAt", PSEUDONYMIZED_MARK)}
    try:
        encoded = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # too deep for the encoder (over the limits: fails anyway)
        scalars = sorted(
            (str(k), repr(v)) for k, v in body.items() if not isinstance(v, dict | list)
        )
        encoded = repr(scalars).encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(str(site_id).encode() + b"\0" + encoded)
    return "ffh-" + digest.hexdigest()[:32]


def _str(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def to_row(
    message: dict[str, Any], ctx: RequestContext, schema_key: str | None, msg_id: str
) -> EventRow:
    """The ``events`` row of a validated, pseudonymized message."""
    context = _dict(message.get("context"))
    page = _dict(context.get("page"))
    properties = _dict(message.get("properties"))
    campaign = _dict(context.get("campaign"))
    library = _dict(context.get("library"))
    message_type = message["type"]

    original = parse_timestamp(
        message.get("timestamp", message.get("originalTimestamp")), "timestamp"
    )
    sent_at = parse_timestamp(message.get("sentAt", ctx.batch_sent_at), "sentAt")

    if message_type == "page":
        # Segment's page call puts url/path/... in properties; context.page is the fallback.
        page = {**page, **{k: v for k, v in properties.items() if k in _PAGE_FIELDS}}
    if message_type == "track":
        event = message.get("event")
    elif message_type in ("page", "screen"):
        event = message.get("name")
    else:
        event = None
    if message_type == "alias":
        properties = {**properties, "previousId": message.get("previousId")}
    elif message_type == "group":
        properties = {**properties, "groupId": _str(message.get("groupId"))}

    user_id = _str(message.get("userId"))
    return EventRow(
        site_id=ctx.site.id,
        message_id=msg_id,
        type=message_type,
        event=_str(event),
        schema=schema_key,
        timestamp=corrected_timestamp(ctx.received_at, sent_at, original),
        original_timestamp=original,
        sent_at=sent_at,
        received_at=ctx.received_at,
        anonymous_id=_str(message.get("anonymousId")),
        user_id=user_id,
        pii_key_id=message.get(PSEUDONYMIZED_MARK) if user_id is not None else None,
        session_id=_str(context.get("sessionId")),
        page_url=_str(page.get("url")),
        page_path=_str(page.get("path")),
        page_title=_str(page.get("title")),
        page_referrer=_str(page.get("referrer")),
        page_search=_str(page.get("search")),
        utm_source=_str(campaign.get("source")),
        utm_medium=_str(campaign.get("medium")),
        utm_campaign=_str(campaign.get("name")),
        utm_term=_str(campaign.get("term")),
        utm_content=_str(campaign.get("content")),
        library_name=_str(library.get("name")),
        library_version=_str(library.get("version")),
        user_agent=_str(context.get("userAgent")) or ctx.user_agent,
        locale=_str(context.get("locale")),
        timezone=_str(context.get("timezone")),
        context=context,
        properties=properties,
        traits=message.get("traits") if isinstance(message.get("traits"), dict) else None,
    )


_PAGE_FIELDS = ("url", "path", "title", "referrer", "search")
