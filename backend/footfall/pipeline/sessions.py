"""Session rules: what one batch of new events adds to each session (pure functions).

storage/sessions.py applies the result in the writer's transaction with one
``INSERT … ON CONFLICT DO UPDATE`` per session. Every field is either a sum (a
count) or an extreme chosen by a total order (the first event by
``(timestamp, message_id)``, the entry page by ``(has no page, timestamp,
message_id)`` …), so merging deltas is commutative and associative: the row
is the same whatever order events arrive in or how they are grouped into
commits, and since the writer runs this only for newly inserted events, a
retried message is never counted twice.

Messages without a session id (server-side senders, and cookieless messages
of consent mode "anonymous") get one by a 30-minute idle rule per actor (the
anonymous id, else the user id, else the daily visitor hash): see
:func:`assign_idle`.

A session holds one person's events: on a shared device without ``reset()``,
the events of a second user go to a session part of their own (see
:func:`session_part`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from footfall.pipeline.identity import PERSON, is_illegal_id
from footfall.pipeline.scrub import iana_zone
from footfall.pipeline.types import EventRow

IDLE = timedelta(minutes=30)

PAGE_TYPES = frozenset({"page", "screen"})
CLICK = "Element Clicked"
HOVER = "Element Hovered"
SCROLL = "Scroll Depth Reached"
ENGAGED = "Page Engaged"
VIDEO_STARTED = "Video Playback Started"
VIDEO_COMPLETED = "Video Playback Completed"

# A client can send any number; nothing real lasts longer than a day.
MAX_DURATION_MS = 24 * 3600 * 1000


# --- helpers ----------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def percent(value: Any) -> int:
    """A percentage as the rollups keep it: a JSON number clamped to 0..100, rounded."""
    number = _number(value)
    # Half away from zero, as PostgreSQL's round() does, so a recount in SQL agrees.
    return 0 if number is None else math.floor(min(max(number, 0.0), 100.0) + 0.5)


def millis(value: Any) -> int:
    """A duration as the rollups keep it: a JSON number clamped to 0..24 h, truncated."""
    number = _number(value)
    return 0 if number is None else int(min(max(number, 0.0), MAX_DURATION_MS))


def local_zone(row: EventRow) -> tuple[str, int]:
    """The IANA time zone of an event and its UTC offset in minutes at the event.

    The browser's zone (``context.timezone``) if it is a real zone name, else
    the one GeoIP gave, else UTC. The offset is computed here, so SQL never
    has to trust a client-sent zone name.
    """
    for name in (row.timezone, row.geo_timezone):
        zone = iana_zone(name) if name else None
        if zone is not None:
            offset = row.timestamp.astimezone(zone).utcoffset()
            minutes = int(offset.total_seconds() // 60) if offset is not None else 0
            return str(name), minutes
    return "UTC", 0


def page_of(row: EventRow) -> str | None:
    return row.page_path or row.page_url


# EventRow.extras key: the session the sessions step stored a row in when that is not
# the id it came with: the idle rule's for a row without one, or a shared device's
# part (session_part). The events row holds it too; the steps after it read it here.
ASSIGNED_SESSION = "assigned_session_id"


def session_of(row: EventRow) -> str | None:
    """The session of a stored row: the one the sessions step assigned, else its own id."""
    return row.extras.get(ASSIGNED_SESSION) or row.session_id


# EventRow.extras key: the person of the row's anonymous id (the device's), set by
# the writer's identity step for a row that also has a user id; the row's own
# person (extras[PERSON]) is its user id's.
DEVICE_PERSON = "device_person"


# --- per-session delta -------------------------------------------------------------


@dataclass(slots=True)
class SessionDelta:
    """What a set of new events adds to one session (column names as in ``sessions``)."""

    site_id: int
    session_id: str
    idle_key: str | None = None
    first_event_at: datetime | None = None
    first_message_id: str = ""
    last_event_at: datetime | None = None
    last_message_id: str = ""
    event_count: int = 0
    page_count: int = 0
    click_count: int = 0
    hover_count: int = 0
    hover_dwell_ms: int = 0
    video_play_count: int = 0
    video_complete_count: int = 0
    max_scroll_percent: int = 0
    engaged_ms: int = 0
    user_id: str | None = None  # the greatest non-null user id (commutative)
    # From the first event.
    anonymous_id: str | None = None
    device_type: str | None = None
    browser_name: str | None = None
    os_name: str | None = None
    geo_country: str | None = None
    geo_region: str | None = None
    geo_city: str | None = None
    timezone: str = "UTC"
    utc_offset_min: int = 0
    # From the entry event: the first that has a page (the first event if none has).
    entry_at: datetime | None = None
    entry_message_id: str = ""
    entry_page: str | None = None
    referrer: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_term: str | None = None
    utm_content: str | None = None
    # From the exit event: the last that has a page (the last event if none has).
    exit_at: datetime | None = None
    exit_message_id: str = ""
    exit_page: str | None = None
    _entry_key: tuple[Any, ...] | None = field(default=None, repr=False)
    _exit_key: tuple[Any, ...] | None = field(default=None, repr=False)

    def add(self, row: EventRow) -> None:
        """Count one event in."""
        at, mid = row.timestamp, row.message_id
        self.event_count += 1
        if self.first_event_at is None or (at, mid) < (self.first_event_at, self.first_message_id):
            self.first_event_at, self.first_message_id = at, mid
            self.anonymous_id = row.anonymous_id
            self.device_type, self.browser_name, self.os_name = (
                row.device_type,
                row.browser_name,
                row.os_name,
            )
            self.geo_country, self.geo_region, self.geo_city = (
                row.geo_country,
                row.geo_region,
                row.geo_city,
            )
            self.timezone, self.utc_offset_min = local_zone(row)
        if self.last_event_at is None or (at, mid) > (self.last_event_at, self.last_message_id):
            self.last_event_at, self.last_message_id = at, mid
        if row.user_id is not None and (self.user_id is None or row.user_id > self.user_id):
            self.user_id = row.user_id

        page = page_of(row)
        entry_key = (page is None, at, mid)
        if self._entry_key is None or entry_key < self._entry_key:
            self._entry_key = entry_key
            self.entry_at, self.entry_message_id, self.entry_page = at, mid, page
            self.referrer = row.page_referrer
            self.utm_source, self.utm_medium, self.utm_campaign = (
                row.utm_source,
                row.utm_medium,
                row.utm_campaign,
            )
            self.utm_term, self.utm_content = row.utm_term, row.utm_content
        exit_key = (page is not None, at, mid)
        if self._exit_key is None or exit_key > self._exit_key:
            self._exit_key = exit_key
            self.exit_at, self.exit_message_id, self.exit_page = at, mid, page

        if row.type in PAGE_TYPES:
            self.page_count += 1
        if row.type != "track":
            return
        props = row.properties
        if row.event == CLICK:
            self.click_count += 1
        elif row.event == HOVER:
            self.hover_count += 1
            self.hover_dwell_ms += millis(props.get("dwell_ms"))
        elif row.event == VIDEO_STARTED:
            self.video_play_count += 1
        elif row.event == VIDEO_COMPLETED:
            self.video_complete_count += 1
        elif row.event == ENGAGED:
            self.engaged_ms += millis(props.get("engaged_ms"))
        self.max_scroll_percent = max(self.max_scroll_percent, scroll_of(row))

    @property
    def duration_ms(self) -> int:
        assert self.first_event_at is not None and self.last_event_at is not None
        return (self.last_event_at - self.first_event_at) // timedelta(milliseconds=1)


def scroll_of(row: EventRow) -> int:
    """The scroll depth an event reports, 0 if none (sessions and profiles keep its maximum)."""
    if row.type != "track":
        return 0
    if row.event == SCROLL:
        return percent(row.properties.get("depth_percent"))
    if row.event == ENGAGED:
        return percent(row.properties.get("max_scroll_percent"))
    return 0


def aggregate(
    rows: Iterable[EventRow],
    session_ids: dict[tuple[int, str], str] | None = None,
    parts: dict[tuple[int, str], str] | None = None,
) -> list[SessionDelta]:
    """One delta per session touched by ``rows``, sorted by key (the upsert's lock order).

    ``session_ids`` gives the session of rows that came without one, ``parts`` the
    session part of rows moved out of their session (:func:`session_part`), both
    keyed by (site_id, message_id); rows with no session at all are in none.
    """
    derived = session_ids or {}
    moved = parts or {}
    deltas: dict[tuple[int, str], SessionDelta] = {}
    for row in rows:
        key = (row.site_id, row.message_id)
        part = moved.get(key)
        sid = part or row.session_id or derived.get(key)
        if sid is None:
            continue
        delta = deltas.get((row.site_id, sid))
        if delta is None:
            delta = deltas[(row.site_id, sid)] = SessionDelta(row.site_id, sid)
            if row.session_id is None and part is None:
                delta.idle_key = idle_key(row)
        delta.add(row)
    return [deltas[key] for key in sorted(deltas)]


# --- a shared device: one person per session -----------------------------------------

PART_MARK = "~"


def session_part(
    session_id: str, user_id: str | None, user_person: int | None, device_person: int | None
) -> str | None:
    """The session part an event belongs to, if not ``session_id`` itself.

    A session belongs to the person its device's anonymous id resolves to; an
    event whose user id resolves to another person (a second user logged in on
    a shared device without ``reset()``: the identity rules give them a person
    of their own) goes to that user's part of the session,
    ``<session id>~<first 16 hex of the hashed user id>``. So every event of a
    session (part) resolves to the session's person, as ``analytics.events``
    resolves it, and ``sessions``/``person_features`` count each person's own
    events only. Decided per event, from the identity links the writer's
    transaction has just applied, so arrival order within a commit does not
    matter.
    """
    if user_id is None or user_person is None or device_person is None:
        return None
    if user_person == device_person:
        return None
    return f"{session_id}{PART_MARK}{user_id[:16]}"


def assign_parts(
    rows: Iterable[EventRow], assigned: dict[tuple[int, str], str]
) -> dict[tuple[int, str], str]:
    """Session part of each row whose user is not its device's person (:func:`session_part`).

    ``assigned`` gives the idle rule's session of rows that came without one.
    Reads the persons the identity step left in the rows' extras (``PERSON``,
    ``DEVICE_PERSON``), and records the part in ``extras[ASSIGNED_SESSION]``,
    which the events row is written with.
    """
    parts: dict[tuple[int, str], str] = {}
    for row in rows:
        key = (row.site_id, row.message_id)
        session_id = row.session_id or assigned.get(key)
        if session_id is None or row.user_id is None:
            continue
        user, device = row.extras.get(PERSON), row.extras.get(DEVICE_PERSON)
        part = session_part(session_id, row.user_id, user, device)
        if part is not None:
            parts[key] = part
            row.extras[ASSIGNED_SESSION] = part
        elif row.session_id is not None:
            row.extras.pop(ASSIGNED_SESSION, None)  # left by a rolled-back attempt
    return parts


# --- the idle rule for messages without a session id ------------------------------


def idle_key(row: EventRow) -> str | None:
    """Whose idle-rule sessions a message without a session id belongs to, if anyone's."""
    if row.anonymous_id is not None and not is_illegal_id(row.anonymous_id):
        return "a:" + row.anonymous_id
    if row.user_id is not None:
        return "u:" + row.user_id
    if row.visitor_hash is not None:  # consent mode "anonymous": the daily visitor hash
        return "v:" + row.visitor_hash
    return None


def derive_session_id(site_id: int, key: str, first_at: datetime) -> str:
    """A deterministic id for an idle-rule session: same actor and start, same id."""
    digest = hashlib.sha256(f"{site_id}\0{key}\0{first_at.isoformat()}".encode()).hexdigest()
    return "ffs-" + digest[:32]


@dataclass(slots=True)
class Span:
    """An idle-rule session of one actor: its id and the time it covers so far."""

    session_id: str
    first: datetime
    last: datetime

    def distance(self, at: datetime) -> timedelta:
        if at < self.first:
            return self.first - at
        if at > self.last:
            return at - self.last
        return timedelta(0)


def assign_idle(
    spans: list[Span],
    events: list[tuple[datetime, str]],
    new_id: Callable[[datetime], str],
) -> dict[str, str]:
    """Session id per message id for one actor's events without a session id.

    An event joins the existing session it is within 30 minutes of (the
    nearest, if several), and widens it; otherwise it starts a new session
    whose id ``new_id(time)`` derives. Events are taken in time order, so the
    outcome does not depend on arrival order within the batch. ``spans`` is
    updated in place. Two sessions an event would bridge are not merged.
    """
    assigned: dict[str, str] = {}
    for at, message_id in sorted(events):
        near = [s for s in spans if s.distance(at) <= IDLE]
        if near:
            span = min(near, key=lambda s: (s.distance(at), s.first))
            span.first, span.last = min(span.first, at), max(span.last, at)
        else:
            span = Span(new_id(at), at, at)
            spans.append(span)
        assigned[message_id] = span.session_id
    return assigned
