"""Values that flow through the pipeline: the site, the request, rows and rejections."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from footfall.pipeline.consent import LedgerView


@dataclass(frozen=True, slots=True)
class Site:
    """A tracked site, as the collector caches it."""

    id: int
    name: str
    write_key: str
    allowed_origins: frozenset[str] = frozenset()
    consent_mode: str = "implied"
    settings: dict[str, Any] = field(default_factory=dict)

    def allows_origin(self, origin: str) -> bool:
        return "*" in self.allowed_origins or origin in self.allowed_origins

    @property
    def strict(self) -> bool:
        """A strict site fails a ``track`` event without a schema (``unknown_event``);
        otherwise it is stored, marked ``events.undeclared`` (docs/events-table.md)."""
        return self.settings.get("strict") is True

    @property
    def schema_dir(self) -> str | None:
        value = self.settings.get("schema_dir")
        return str(value) if value else None


T = TypeVar("T")


class RequestMemo:
    """What the steps computed for one request, reused by its other messages.

    A batch's messages share the sender's headers, IP and User-Agent and mostly
    its ids and context strings: the client hints, the device, the geo lookup,
    an id's HMAC, the visitor hash and a scrubbed string are computed once per
    request, not once per message. Every entry is keyed by all of its inputs (a
    key, a policy, an IP ...), so an entry is right for whichever message asks.
    It lives as long as the request's :class:`RequestContext` (raw ids and text
    among its keys stay in memory only, like the request itself); nothing in it
    outlives the request or is shared between requests.
    """

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values: dict[Hashable, Any] = {}

    def once(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The value under ``key``, computed by ``compute`` the first time it is asked for."""
        try:
            value: T = self._values[key]
        except KeyError:
            value = self._values[key] = compute()
        return value

    def of(self, name: str, source: object, compute: Callable[[], T]) -> T:
        """:meth:`once` for a value derived from one object (the request's headers, a key,
        a policy): no hashing of its content, it may even be unhashable.

        Keyed by the object's identity; the entry keeps the object referenced, so
        its id cannot be reused by another object while the memo lives (a context
        copied with other headers gets its own entry).
        """
        _source, value = self.once((name, id(source)), lambda: (source, compute()))
        return value

    def table(self, key: Hashable) -> dict[Any, Any]:
        """A dict of its own under ``key`` (for look-ups done many times per message)."""
        found: dict[Any, Any] | None = self._values.get(key)
        if found is None:
            found = self._values[key] = {}
        return found


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What the http layer knows about the request that carried the messages."""

    site: Site
    received_at: datetime
    ip: str | None = None
    user_agent: str | None = None
    batch_context: dict[str, Any] | None = None
    batch_sent_at: Any = None
    default_type: str | None = None  # set by the single-message endpoints (/v1/track …)
    # Request headers (lower-case names) the steps may read: Sec-GPC, DNT, client hints.
    headers: Mapping[str, str] = field(default_factory=dict)
    # The consent ledger's latest decisions for this batch's ids, loaded by the http
    # layer before the pipeline runs (see pipeline/consent.py); None: not consulted.
    ledger: LedgerView | None = None
    # Per-request results the steps share between the batch's messages (see RequestMemo).
    memo: RequestMemo = field(default_factory=RequestMemo, compare=False, repr=False)


@dataclass(slots=True)
class Draft:
    """A validated message on its way through the steps.

    A step may replace ``message`` (e.g. pseudonymized) and add ``columns``:
    values for ``events`` columns it computed (device, geo, ...), applied to
    the row by name.
    """

    message: dict[str, Any]
    schema: str | None
    columns: dict[str, Any] = field(default_factory=dict)
    # The validated event schema's ``x-footfall-pii`` rules (path, action), for privacy.
    pii: tuple[tuple[tuple[str, ...], str], ...] = ()
    # Set by the consent step when the message may only be kept without identifiers:
    # later steps keep nothing that links it to a person (geo: country only).
    anonymous: bool = False
    # Not stored: what a step hands to the writer's in-transaction steps (copied to
    # EventRow.extras), e.g. the consent-ledger entry of a "Consent Updated" message.
    extras: dict[str, Any] = field(default_factory=dict)


class Refused(Exception):
    """A documented rule refuses the message (consent, bot, ...): counted, not stored."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class EventRow:
    """One message ready for the ``events`` table (column names as attributes)."""

    site_id: int
    message_id: str
    type: str
    event: str | None
    schema: str | None
    timestamp: datetime
    original_timestamp: datetime | None
    sent_at: datetime | None
    received_at: datetime
    anonymous_id: str | None
    user_id: str | None
    pii_key_id: str | None
    session_id: str | None
    page_url: str | None
    page_path: str | None
    page_title: str | None
    page_referrer: str | None
    page_search: str | None
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    utm_term: str | None
    utm_content: str | None
    library_name: str | None
    library_version: str | None
    user_agent: str | None
    locale: str | None
    timezone: str | None
    context: dict[str, Any]
    properties: dict[str, Any]
    traits: dict[str, Any] | None
    # Device enrichment (pipeline/device.py).
    device_type: str | None = None
    browser_name: str | None = None
    browser_version: str | None = None
    os_name: str | None = None
    os_version: str | None = None
    device_brand: str | None = None
    device_model: str | None = None
    # Geo enrichment (pipeline/geo.py); never the IP itself.
    geo_country: str | None = None
    geo_region: str | None = None
    geo_city: str | None = None
    geo_latitude: float | None = None
    geo_longitude: float | None = None
    geo_timezone: str | None = None
    geo_asn: int | None = None
    geo_asn_org: str | None = None
    # Privacy (pipeline/privacy.py): the client's /24 (IPv4) or /48 (IPv6), never the
    # address; the cookieless daily visitor hash of consent mode "anonymous".
    ip_network: str | None = None
    visitor_hash: str | None = None
    # A track event no schema declares, stored because the site is not strict.
    undeclared: bool = False
    index: int = -1  # position in the request's batch (not stored)
    extras: dict[str, Any] = field(default_factory=dict)  # not stored, see Draft.extras


_NOT_STORED = frozenset({"index", "extras"})
EVENT_COLUMNS: tuple[str, ...] = tuple(n for n in EventRow.__slots__ if n not in _NOT_STORED)


@dataclass(slots=True)
class Failure:
    """A message that failed validation; stored in ``failed_events`` with its reasons."""

    index: int
    site_id: int
    message_id: str
    received_at: datetime
    reason: str
    errors: list[dict[str, str]]
    schema: str | None
    raw: Any


@dataclass(slots=True)
class BatchPlan:
    """The pipeline's verdict on one request's messages."""

    rows: list[EventRow] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=dict)  # reason -> count
