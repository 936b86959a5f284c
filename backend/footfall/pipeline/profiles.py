"""Live person profiles: what a batch of new events adds to each person (pure functions).

storage/profiles.py applies the result in the writer's transaction (after the
identity and session steps) and combines two profiles when persons merge. The
rules mirror pipeline/sessions.py: every field is a sum, a maximum, or "the
value of the extreme event" under a total order (``(timestamp, message_id)``,
with page-less events ranked behind for the first touch), so deltas combine
commutatively and associatively. Hence a profile is the same whatever order
events arrive in, however they are grouped into commits, and after a merge it
is what the merged person's events give; since the writer runs this only for
newly inserted events, a retried message never counts twice. ``footfall
profiles rebuild`` recomputes the same definitions from ``events`` in SQL.

Two levels:

* the **profile** (``person_profiles``): event-level counters and extremes;
* the person's part of each **session** (``person_sessions``, one row per
  person and session): its first and last event, its deepest scroll, the
  device and local UTC offset of its first event. A session counts once per
  person (the row's creation); session means and shares (mean duration,
  device and time-of-day mix) are computed from these rows when read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from footfall.pipeline.sessions import (
    CLICK,
    ENGAGED,
    HOVER,
    PAGE_TYPES,
    SCROLL,
    VIDEO_COMPLETED,
    VIDEO_STARTED,
    local_zone,
    millis,
    page_of,
    scroll_of,
    session_of,
)
from footfall.pipeline.types import EventRow

# The tracker's automatic events (tracker_js/src): every other ``track`` is custom.
VIDEO_PREFIX = "Video "
AUTOCAPTURED = frozenset({CLICK, HOVER, SCROLL, ENGAGED})


def is_custom_track(row: EventRow) -> bool:
    """A ``track`` the site sent itself (not one of the tracker's automatic events)."""
    return (
        row.type == "track"
        and row.event is not None
        and row.event not in AUTOCAPTURED
        and not row.event.startswith(VIDEO_PREFIX)
    )


DEVICE_BUCKETS = ("mobile", "tablet", "desktop", "other")
# Local hour of a session's start -> part of the day (as analytics.person_features).
DAY_PARTS = (("night", 0, 6), ("morning", 6, 12), ("afternoon", 12, 18), ("evening", 18, 24))


def device_bucket(device_type: str | None) -> str:
    return device_type if device_type in ("mobile", "tablet", "desktop") else "other"


Key = tuple[datetime, str]  # (timestamp, message_id): the total order of events


@dataclass(slots=True)
class ProfileDelta:
    """What a set of new events adds to one person's profile (columns of ``person_profiles``)."""

    site_id: int
    person_id: int
    events: int = 0
    pages: int = 0
    clicks: int = 0
    hovers: int = 0
    hover_dwell_ms: int = 0
    scrolls: int = 0
    video_plays: int = 0
    video_completions: int = 0
    custom_tracks: int = 0
    engaged_ms: int = 0
    max_scroll_percent: int = 0
    sessions: int = 0  # set by storage: the person's session rows this delta created
    first_seen: datetime | None = None
    first_message_id: str = ""
    last_seen: datetime | None = None
    last_message_id: str = ""
    # The last event that has a page.
    last_page_at: datetime | None = None
    last_page_message_id: str | None = None
    last_page_path: str | None = None
    last_page_url: str | None = None
    # First touch: the first event that has a page (the first event if none has).
    first_touch_at: datetime | None = None
    first_touch_message_id: str = ""
    first_touch_page: str | None = None
    referrer: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_term: str | None = None
    utm_content: str | None = None
    # The last event that has a device type / a country.
    device_at: datetime | None = None
    device_message_id: str | None = None
    device_type: str | None = None
    country_at: datetime | None = None
    country_message_id: str | None = None
    country: str | None = None

    def add(self, row: EventRow) -> None:
        """Count one event in."""
        key: Key = (row.timestamp, row.message_id)
        self.events += 1
        if self.first_seen is None or key < (self.first_seen, self.first_message_id):
            self.first_seen, self.first_message_id = key
        if self.last_seen is None or key > (self.last_seen, self.last_message_id):
            self.last_seen, self.last_message_id = key
        page = page_of(row)
        if page is not None and (
            self.last_page_at is None or key > (self.last_page_at, self.last_page_message_id or "")
        ):
            self.last_page_at, self.last_page_message_id = key
            self.last_page_path, self.last_page_url = row.page_path, row.page_url
        touch = (page is None, *key)
        if self.first_touch_at is None or touch < (
            self.first_touch_page is None,
            self.first_touch_at,
            self.first_touch_message_id,
        ):
            self.first_touch_at, self.first_touch_message_id = key
            self.first_touch_page, self.referrer = page, row.page_referrer
            self.utm_source, self.utm_medium = row.utm_source, row.utm_medium
            self.utm_campaign, self.utm_term = row.utm_campaign, row.utm_term
            self.utm_content = row.utm_content
        if row.device_type is not None and (
            self.device_at is None or key > (self.device_at, self.device_message_id or "")
        ):
            self.device_at, self.device_message_id = key
            self.device_type = row.device_type
        if row.geo_country is not None and (
            self.country_at is None or key > (self.country_at, self.country_message_id or "")
        ):
            self.country_at, self.country_message_id = key
            self.country = row.geo_country

        if row.type in PAGE_TYPES:
            self.pages += 1
        if row.type != "track":
            return
        props = row.properties
        if row.event == CLICK:
            self.clicks += 1
        elif row.event == HOVER:
            self.hovers += 1
            self.hover_dwell_ms += millis(props.get("dwell_ms"))
        elif row.event == VIDEO_STARTED:
            self.video_plays += 1
        elif row.event == VIDEO_COMPLETED:
            self.video_completions += 1
        elif row.event == SCROLL:
            self.scrolls += 1
        elif is_custom_track(row):
            self.custom_tracks += 1
        self.max_scroll_percent = max(self.max_scroll_percent, scroll_of(row))
        if row.event == ENGAGED:
            self.engaged_ms += millis(props.get("engaged_ms"))


@dataclass(slots=True)
class PersonSessionDelta:
    """A person's part of one session, from a set of new events (``person_sessions``)."""

    site_id: int
    person_id: int
    session_id: str
    first_at: datetime | None = None
    first_message_id: str = ""
    last_at: datetime | None = None
    max_scroll_percent: int = 0
    device_type: str | None = None  # of the first event
    utc_offset_min: int = 0  # of the first event, as the sessions rule computes it

    def add(self, row: EventRow) -> None:
        key: Key = (row.timestamp, row.message_id)
        if self.first_at is None or key < (self.first_at, self.first_message_id):
            self.first_at, self.first_message_id = key
            self.device_type = row.device_type
            self.utc_offset_min = local_zone(row)[1]
        if self.last_at is None or row.timestamp > self.last_at:
            self.last_at = row.timestamp
        self.max_scroll_percent = max(self.max_scroll_percent, scroll_of(row))


@dataclass(slots=True)
class ProfileDeltas:
    profiles: list[ProfileDelta] = field(default_factory=list)  # sorted by key (lock order)
    sessions: list[PersonSessionDelta] = field(default_factory=list)  # sorted by key


def aggregate(rows: Iterable[EventRow], persons: Mapping[tuple[int, str], int]) -> ProfileDeltas:
    """One profile delta per person and one per (person, session) touched by ``rows``.

    ``persons`` maps (site_id, message_id) to the row's canonical person; rows
    without a person (no id that links to one) are in no profile.
    """
    profiles: dict[tuple[int, int], ProfileDelta] = {}
    sessions: dict[tuple[int, int, str], PersonSessionDelta] = {}
    for row in rows:
        person = persons.get((row.site_id, row.message_id))
        if person is None:
            continue
        delta = profiles.get((row.site_id, person))
        if delta is None:
            delta = profiles[(row.site_id, person)] = ProfileDelta(row.site_id, person)
        delta.add(row)
        sid = session_of(row)
        if sid is not None:
            part = sessions.get((row.site_id, person, sid))
            if part is None:
                part = sessions[(row.site_id, person, sid)] = PersonSessionDelta(
                    row.site_id, person, sid
                )
            part.add(row)
    return ProfileDeltas(
        [profiles[k] for k in sorted(profiles)], [sessions[k] for k in sorted(sessions)]
    )


# --- the profile as read -------------------------------------------------------------


@dataclass(slots=True)
class Profile:
    """One person's live profile (``person_profiles`` plus what its session rows give)."""

    site_id: int
    person_id: int
    identified: bool
    events: int
    pages: int
    clicks: int
    hovers: int
    hover_dwell_ms: int
    scrolls: int
    video_plays: int
    video_completions: int
    custom_tracks: int
    sessions: int
    engaged_ms: int
    max_scroll_percent: int
    first_seen: datetime
    last_seen: datetime
    last_page_path: str | None
    last_page_url: str | None
    first_touch_page: str | None
    referrer: str | None
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    utm_term: str | None
    utm_content: str | None
    device_type: str | None
    country: str | None
    # Sessions per device bucket (DEVICE_BUCKETS) and per local part of the day of
    # their start (DAY_PARTS), from the person's session rows.
    sessions_by_device: dict[str, int] = field(default_factory=dict)
    sessions_by_day_part: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (times as ISO 8601 strings)."""
        out: dict[str, Any] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        return out


def mix(counts: Mapping[str, int] | None, buckets: Iterable[str]) -> dict[str, int]:
    """Counts for every bucket, 0 where none."""
    counts = counts or {}
    return {bucket: int(counts.get(bucket, 0)) for bucket in buckets}
