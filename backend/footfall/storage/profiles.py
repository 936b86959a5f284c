"""Live person profiles in the writer's transaction (the SQL of pipeline/profiles.py).

Tables: ``person_profiles`` (one row per canonical person: counters and "value
of the extreme event" columns) and ``person_sessions`` (one row per person and
session: the person's part of it). Both are derived from ``events`` only, so
:func:`rebuild` can always recompute them.

* :func:`profiles_step` (a writer TxStep, after identity and sessions) adds the
  new rows' deltas with one upsert per table, sorted by key (lock order), every
  column combined by a commutative rule: the result does not depend on which
  commit comes first. A session counts for a person when the person's row for it
  is created (``xmax = 0`` on the upsert's RETURNING).
* :func:`merge_profiles`, called by storage/identity.py when a person merges
  into another, moves the source's session rows and profile into the target
  with the same combining rules, in the merge's transaction.

Concurrency with merges: a merge takes the site's identity lock exclusively
(storage/identity.py); the profile step takes the same lock *shared* before it
maps rows to persons. So profile steps of one site run in parallel, but never
while a merge of that site is uncommitted: a step cannot add to a person that a
concurrent merge is moving, and a merge never misses a step's uncommitted delta.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

from footfall.pipeline.identity import ANONYMOUS, PERSON, USER, IdKey
from footfall.pipeline.profiles import (
    AUTOCAPTURED,
    DAY_PARTS,
    DEVICE_BUCKETS,
    VIDEO_PREFIX,
    PersonSessionDelta,
    Profile,
    ProfileDelta,
    aggregate,
    mix,
)
from footfall.pipeline.sessions import (
    CLICK,
    ENGAGED,
    HOVER,
    MAX_DURATION_MS,
    SCROLL,
    VIDEO_COMPLETED,
    VIDEO_STARTED,
)
from footfall.pipeline.types import EventRow

# identity.py calls merge_profiles: module imports keep the cycle harmless.
from footfall.storage import identity

# --- person of a row --------------------------------------------------------------------


async def persons_of(
    conn: psycopg.AsyncConnection[Any], rows: Sequence[EventRow]
) -> dict[tuple[int, str], int]:
    """(site_id, message_id) -> canonical person, as analytics.events maps events.

    The user id's person if the row has a user id with a person, else the
    anonymous id's; rows with neither are left out. Run after identity_step,
    which leaves each row's person in ``extras[PERSON]``; rows without it are
    resolved here (one query).
    """
    persons: dict[tuple[int, str], int] = {}
    unknown: list[EventRow] = []
    for row in rows:
        person = row.extras.get(PERSON)
        if isinstance(person, int):
            persons[(row.site_id, row.message_id)] = person
        elif row.user_id is not None or row.anonymous_id is not None:
            unknown.append(row)
    if not unknown:
        return persons
    rows = unknown
    keys: set[IdKey] = set()
    for row in rows:
        if row.user_id is not None:
            keys.add((row.site_id, USER, row.user_id))
        if row.anonymous_id is not None:
            keys.add((row.site_id, ANONYMOUS, row.anonymous_id))
    async with conn.cursor() as cur:
        known = await identity.resolve(cur, sorted(keys))
    for row in rows:
        found = None
        if row.user_id is not None:
            found = known.get((row.site_id, USER, row.user_id))
        if found is None and row.anonymous_id is not None:
            found = known.get((row.site_id, ANONYMOUS, row.anonymous_id))
        if found is not None:
            persons[(row.site_id, row.message_id)] = found.person
    return persons


# --- combining rules --------------------------------------------------------------------

_E = "EXCLUDED"
_C = 'COLLATE "C"'  # message ids order by code point, as in Python

_PROFILE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("site_id", "int"),
    ("person_id", "bigint"),
    ("events", "bigint"),
    ("pages", "bigint"),
    ("clicks", "bigint"),
    ("hovers", "bigint"),
    ("hover_dwell_ms", "bigint"),
    ("scrolls", "bigint"),
    ("video_plays", "bigint"),
    ("video_completions", "bigint"),
    ("custom_tracks", "bigint"),
    ("engaged_ms", "bigint"),
    ("max_scroll_percent", "int"),
    ("sessions", "bigint"),
    ("first_seen", "timestamptz"),
    ("first_message_id", "text"),
    ("last_seen", "timestamptz"),
    ("last_message_id", "text"),
    ("last_page_at", "timestamptz"),
    ("last_page_message_id", "text"),
    ("last_page_path", "text"),
    ("last_page_url", "text"),
    ("first_touch_at", "timestamptz"),
    ("first_touch_message_id", "text"),
    ("first_touch_page", "text"),
    ("referrer", "text"),
    ("utm_source", "text"),
    ("utm_medium", "text"),
    ("utm_campaign", "text"),
    ("utm_term", "text"),
    ("utm_content", "text"),
    ("device_at", "timestamptz"),
    ("device_message_id", "text"),
    ("device_type", "text"),
    ("country_at", "timestamptz"),
    ("country_message_id", "text"),
    ("country", "text"),
)
_PROFILE_NAMES = [name for name, _ in _PROFILE_COLUMNS]
_SUMS = (
    "events",
    "pages",
    "clicks",
    "hovers",
    "hover_dwell_ms",
    "scrolls",
    "video_plays",
    "video_completions",
    "custom_tracks",
    "engaged_ms",
    "sessions",
)


def _later(at: str, mid: str) -> str:
    """The delta's (at, mid) event is later than the stored one (NULL: none)."""
    return (
        f"({_E}.{at} IS NOT NULL AND (s.{at} IS NULL"
        f" OR ({_E}.{at}, {_E}.{mid} {_C}) > (s.{at}, s.{mid} {_C})))"
    )


def _pick(columns: Sequence[str], condition: str) -> list[str]:
    return [f"{c} = CASE WHEN {condition} THEN {_E}.{c} ELSE s.{c} END" for c in columns]


_FIRST = f"({_E}.first_seen, {_E}.first_message_id {_C}) < (s.first_seen, s.first_message_id {_C})"
_LAST = f"({_E}.last_seen, {_E}.last_message_id {_C}) > (s.last_seen, s.last_message_id {_C})"
_TOUCH = (
    f"({_E}.first_touch_page IS NULL, {_E}.first_touch_at, {_E}.first_touch_message_id {_C})"
    f" < (s.first_touch_page IS NULL, s.first_touch_at, s.first_touch_message_id {_C})"
)

# Every SET expression reads the stored row (s) and the delta (EXCLUDED) as they
# were, so the order of the assignments does not matter. Used both for a batch's
# delta and for merging one person's profile into another's.
_PROFILE_SET = ",\n  ".join(
    [f"{c} = s.{c} + {_E}.{c}" for c in _SUMS]
    + [f"max_scroll_percent = GREATEST(s.max_scroll_percent, {_E}.max_scroll_percent)"]
    + _pick(("first_seen", "first_message_id"), _FIRST)
    + _pick(("last_seen", "last_message_id"), _LAST)
    + _pick(
        ("last_page_at", "last_page_message_id", "last_page_path", "last_page_url"),
        _later("last_page_at", "last_page_message_id"),
    )
    + _pick(
        (
            "first_touch_at",
            "first_touch_message_id",
            "first_touch_page",
            "referrer",
            "utm_source",
            "utm_medium",
            "utm_campaign",
            "utm_term",
            "utm_content",
        ),
        _TOUCH,
    )
    + _pick(
        ("device_at", "device_message_id", "device_type"), _later("device_at", "device_message_id")
    )
    + _pick(
        ("country_at", "country_message_id", "country"), _later("country_at", "country_message_id")
    )
    + ["updated_at = now()"]
)
_PROFILE_CONFLICT = f"ON CONFLICT (site_id, person_id) DO UPDATE SET\n  {_PROFILE_SET}"

UPSERT_PROFILES = (
    f"INSERT INTO person_profiles AS s ({', '.join(_PROFILE_NAMES)})\n"
    f"SELECT * FROM unnest({', '.join(f'%b::{t}[]' for _, t in _PROFILE_COLUMNS)})"
    f" AS t({', '.join(_PROFILE_NAMES)})\n"
    f"ORDER BY site_id, person_id\n{_PROFILE_CONFLICT}"
)

_SESSION_COLUMNS: tuple[tuple[str, str], ...] = (
    ("site_id", "int"),
    ("person_id", "bigint"),
    ("session_id", "text"),
    ("first_at", "timestamptz"),
    ("first_message_id", "text"),
    ("last_at", "timestamptz"),
    ("max_scroll_percent", "int"),
    ("device_type", "text"),
    ("utc_offset_min", "int"),
)
_SESSION_NAMES = [name for name, _ in _SESSION_COLUMNS]
_SESSION_FIRST = (
    f"({_E}.first_at, {_E}.first_message_id {_C}) < (s.first_at, s.first_message_id {_C})"
)
_SESSION_SET = [
    *_pick(("first_at", "first_message_id", "device_type", "utc_offset_min"), _SESSION_FIRST),
    f"last_at = GREATEST(s.last_at, {_E}.last_at)",
    f"max_scroll_percent = GREATEST(s.max_scroll_percent, {_E}.max_scroll_percent)",
]
_SESSION_CONFLICT = "ON CONFLICT (site_id, person_id, session_id) DO UPDATE SET\n  " + ",\n  ".join(
    _SESSION_SET
)
# ``xmax = 0``: the row was inserted by this statement, not updated: the session is
# new for this person.
UPSERT_PERSON_SESSIONS = (
    f"INSERT INTO person_sessions AS s ({', '.join(_SESSION_NAMES)})\n"
    f"SELECT * FROM unnest({', '.join(f'%b::{t}[]' for _, t in _SESSION_COLUMNS)})"
    f" AS t({', '.join(_SESSION_NAMES)})\n"
    f"ORDER BY site_id, person_id, session_id\n{_SESSION_CONFLICT}\n"
    "RETURNING site_id, person_id, (xmax = 0) AS created"
)


async def profiles_step(conn: psycopg.AsyncConnection[Any], rows: Sequence[EventRow]) -> None:
    """Writer TxStep: add the new rows to their persons' profiles.

    No merge may move a person between its look-up and the upsert: the identity
    step read ``extras[PERSON]`` under the site's identity lock taken shared, held
    to the end of the transaction. Only sites with a row it left without a person
    are locked here, before their look-up.
    """
    unlocked = sorted(
        {
            row.site_id
            for row in rows
            if PERSON not in row.extras and (row.user_id is not None or row.anonymous_id)
        }
    )
    if unlocked:
        async with conn.cursor() as cur:
            await cur.execute(
                identity.LOCK_SHARED, ([identity.site_lock(site_id) for site_id in unlocked],)
            )
    persons = await persons_of(conn, rows)
    if not persons:
        return
    deltas = aggregate(rows, persons)
    created: Counter[tuple[int, int]] = Counter()
    async with conn.cursor() as cur:
        if deltas.sessions:
            await cur.execute(UPSERT_PERSON_SESSIONS, _arrays(deltas.sessions, _SESSION_NAMES))
            for site_id, person_id, new in await cur.fetchall():
                if new:
                    created[(site_id, person_id)] += 1
        for delta in deltas.profiles:
            delta.sessions = created[(delta.site_id, delta.person_id)]
        await cur.execute(UPSERT_PROFILES, _arrays(deltas.profiles, _PROFILE_NAMES))


def _arrays(
    deltas: Sequence[ProfileDelta] | Sequence[PersonSessionDelta], names: Sequence[str]
) -> list[list[Any]]:
    return [[getattr(d, name) for d in deltas] for name in names]


# --- merges -----------------------------------------------------------------------------

_SESSION_LIST = ", ".join(_SESSION_NAMES[2:])
MOVE_PERSON_SESSIONS = (
    "WITH moved AS ("
    f" INSERT INTO person_sessions AS s (site_id, person_id, {_SESSION_LIST})"
    f" SELECT site_id, %(target)s, {_SESSION_LIST} FROM person_sessions"
    " WHERE site_id = %(site)s AND person_id = %(source)s ORDER BY session_id"
    f" {_SESSION_CONFLICT} RETURNING (xmax = 0) AS created)"
    " SELECT count(*) FILTER (WHERE created) FROM moved"
)
_PROFILE_LIST = ", ".join(n for n in _PROFILE_NAMES[2:] if n != "sessions")
MOVE_PROFILE = (
    f"INSERT INTO person_profiles AS s (site_id, person_id, sessions, {_PROFILE_LIST})"
    f" SELECT site_id, %(target)s, %(sessions)s, {_PROFILE_LIST} FROM person_profiles"
    f" WHERE site_id = %(site)s AND person_id = %(source)s {_PROFILE_CONFLICT}"
)


async def merge_profiles(
    cur: psycopg.AsyncCursor[Any], site_id: int, source: int, target: int
) -> None:
    """``source`` merged into ``target``: combine their profiles (the merge's transaction).

    Sums add, first values are the earlier person's, last values the later's; a
    session both persons were in counts once.
    """
    params = {"site": site_id, "source": source, "target": target}
    await cur.execute(MOVE_PERSON_SESSIONS, params)
    row = await cur.fetchone()
    params["sessions"] = int(row[0]) if row else 0
    await cur.execute(
        "DELETE FROM person_sessions WHERE site_id = %(site)s AND person_id = %(source)s", params
    )
    await cur.execute(MOVE_PROFILE, params)
    await cur.execute(
        "DELETE FROM person_profiles WHERE site_id = %(site)s AND person_id = %(source)s", params
    )


# --- reading ----------------------------------------------------------------------------

_LOCAL_HOUR = (
    "extract(hour FROM (ps.first_at AT TIME ZONE 'UTC') + make_interval(mins => ps.utc_offset_min))"
)
_DEVICE_COUNTS = ", ".join(
    f"count(*) FILTER (WHERE ps.device_type = '{b}') AS device_{b}" for b in DEVICE_BUCKETS[:-1]
)
_PART_COUNTS = ", ".join(
    f"count(*) FILTER (WHERE {_LOCAL_HOUR} >= {lo} AND {_LOCAL_HOUR} < {hi}) AS part_{name}"
    for name, lo, hi in DAY_PARTS
)
LOAD_PROFILES = (
    "SELECT q.site_id AS asked_site, q.person_id AS asked_person, pe.is_identified AS identified,"
    " p.*, m.*"
    " FROM unnest(%s::int[], %s::bigint[]) AS q(site_id, person_id)"
    " JOIN persons asked ON asked.id = q.person_id AND asked.site_id = q.site_id"
    " JOIN persons pe ON pe.site_id = asked.site_id"
    " AND pe.id = COALESCE(asked.merged_into, asked.id)"
    " JOIN person_profiles p ON p.site_id = q.site_id AND p.person_id = pe.id"
    f" CROSS JOIN LATERAL (SELECT count(*) AS session_rows, {_DEVICE_COUNTS}, {_PART_COUNTS}"
    " FROM person_sessions ps WHERE ps.site_id = p.site_id AND ps.person_id = p.person_id) m"
)
_PROFILE_FIELDS = frozenset(Profile.__slots__) - {
    "sessions_by_device",
    "sessions_by_day_part",
}


def _profile(row: dict[str, Any]) -> Profile:
    devices = {b: row[f"device_{b}"] for b in DEVICE_BUCKETS[:-1]}
    devices["other"] = row["session_rows"] - sum(devices.values())
    return Profile(
        **{name: row[name] for name in _PROFILE_FIELDS},
        sessions_by_device=mix(devices, DEVICE_BUCKETS),
        sessions_by_day_part=mix(
            {name: row[f"part_{name}"] for name, _, _ in DAY_PARTS}, (n for n, _, _ in DAY_PARTS)
        ),
    )


async def load_profiles(
    conn: psycopg.AsyncConnection[Any], keys: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], Profile]:
    """The profiles of (site_id, person_id) pairs that have one, keyed as asked.

    A person that was merged away answers with the profile it was merged into.
    """
    if not keys:
        return {}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(LOAD_PROFILES, ([k[0] for k in keys], [k[1] for k in keys]))
        return {(r["asked_site"], r["asked_person"]): _profile(r) for r in await cur.fetchall()}


async def person_of_id(
    conn: psycopg.AsyncConnection[Any], site_id: int, kind: str, values: Sequence[str]
) -> int | None:
    """The canonical person of an id as stored (``values``: its forms under every PII key)."""
    async with conn.cursor() as cur:
        known = await identity.resolve(cur, [(site_id, kind, v) for v in values])
    return next((k.person for k in known.values()), None)


# --- rebuild ----------------------------------------------------------------------------

# The same definitions as pipeline/profiles.py and pipeline/sessions.py, in SQL.
# An event's person as analytics.events maps it; its page as page_of(); its
# session as session_of() (the idle rule's id is in events.session_id).
_ATTRIBUTED = f"""
CREATE TEMP TABLE profile_events ON COMMIT DROP AS
SELECT * FROM (
    SELECT e.site_id, e.message_id, e.type, e.event, e."timestamp",
           COALESCE(pu.merged_into, pu.id, pa.merged_into, pa.id) AS person_id,
           NULLIF(e.session_id, '') AS sid,
           CASE WHEN e.page_path <> '' THEN e.page_path ELSE e.page_url END AS page,
           e.page_path, e.page_url, e.page_referrer, e.utm_source, e.utm_medium,
           e.utm_campaign, e.utm_term, e.utm_content, e.device_type, e.geo_country,
           e.timezone, e.geo_timezone,
           CASE WHEN e.type <> 'track' THEN 0
                WHEN e.event = '{SCROLL}' THEN {{pct_depth}}
                WHEN e.event = '{ENGAGED}' THEN {{pct_engaged}}
                ELSE 0 END AS scroll,
           CASE WHEN e.type = 'track' AND e.event = '{HOVER}' THEN {{ms_dwell}} ELSE 0 END
               AS dwell_ms,
           CASE WHEN e.type = 'track' AND e.event = '{ENGAGED}' THEN {{ms_engaged}} ELSE 0 END
               AS engaged_ms
    FROM events e
    LEFT JOIN identities iu
           ON iu.site_id = e.site_id AND iu.kind = 'user' AND iu.value = e.user_id
    LEFT JOIN persons pu ON pu.site_id = iu.site_id AND pu.id = iu.person_id
    LEFT JOIN identities ia
           ON ia.site_id = e.site_id AND ia.kind = 'anonymous' AND ia.value = e.anonymous_id
    LEFT JOIN persons pa ON pa.site_id = ia.site_id AND pa.id = ia.person_id
    WHERE e.site_id = %(site)s
      AND (%(whole_site)s OR e.user_id = ANY(%(users)s::text[])
           OR e.anonymous_id = ANY(%(anonymous)s::text[]))
) AS ev
WHERE person_id IS NOT NULL AND (%(whole_site)s OR person_id = ANY(%(persons)s::bigint[]))"""


def _percent_sql(key: str) -> str:
    """pipeline.sessions.percent() of a property, in SQL."""
    value = f"(e.properties->>'{key}')::float8"
    return (
        f"CASE WHEN jsonb_typeof(e.properties->'{key}') = 'number'"
        f" THEN floor(LEAST(GREATEST({value}, 0), 100) + 0.5)::int ELSE 0 END"
    )


def _millis_sql(key: str) -> str:
    """pipeline.sessions.millis() of a property, in SQL."""
    value = f"(e.properties->>'{key}')::float8"
    return (
        f"CASE WHEN jsonb_typeof(e.properties->'{key}') = 'number'"
        f" THEN floor(LEAST(GREATEST({value}, 0), {MAX_DURATION_MS}))::bigint ELSE 0 END"
    )


ATTRIBUTED = _ATTRIBUTED.format(
    pct_depth=_percent_sql("depth_percent"),
    pct_engaged=_percent_sql("max_scroll_percent"),
    ms_dwell=_millis_sql("dwell_ms"),
    ms_engaged=_millis_sql("engaged_ms"),
)

# local_zone(): the browser's zone if it is a real zone name, else GeoIP's, else UTC.
REBUILD_PERSON_SESSIONS = f"""
WITH zones AS MATERIALIZED (SELECT name FROM pg_timezone_names),
firsts AS (
    SELECT DISTINCT ON (person_id, sid) site_id, person_id, sid, "timestamp", message_id,
           device_type, timezone, geo_timezone,
           max("timestamp") OVER w AS last_at, max(scroll) OVER w AS max_scroll
    FROM pg_temp.profile_events WHERE sid IS NOT NULL
    WINDOW w AS (PARTITION BY person_id, sid)
    ORDER BY person_id, sid, "timestamp", message_id {_C}
)
INSERT INTO person_sessions ({", ".join(_SESSION_NAMES)})
SELECT f.site_id, f.person_id, f.sid, f."timestamp", f.message_id, f.last_at, f.max_scroll,
       f.device_type,
       floor(extract(epoch FROM (f."timestamp" AT TIME ZONE COALESCE(z1.name, z2.name, 'UTC'))
                                - (f."timestamp" AT TIME ZONE 'UTC')) / 60)::int
FROM firsts f
LEFT JOIN zones z1 ON z1.name = f.timezone
LEFT JOIN zones z2 ON z2.name = f.geo_timezone
"""

REBUILD_PROFILES = f"""
WITH counts AS (
    SELECT site_id, person_id, count(*) AS events,
           count(*) FILTER (WHERE type IN ('page', 'screen')) AS pages,
           count(*) FILTER (WHERE type = 'track' AND event = '{CLICK}') AS clicks,
           count(*) FILTER (WHERE type = 'track' AND event = '{HOVER}') AS hovers,
           sum(dwell_ms) AS hover_dwell_ms,
           count(*) FILTER (WHERE type = 'track' AND event = '{SCROLL}') AS scrolls,
           count(*) FILTER (WHERE type = 'track' AND event = '{VIDEO_STARTED}') AS video_plays,
           count(*) FILTER (WHERE type = 'track' AND event = '{VIDEO_COMPLETED}')
               AS video_completions,
           count(*) FILTER (WHERE type = 'track' AND event IS NOT NULL
                            AND event <> ALL(%(autocaptured)s::text[])
                            AND NOT starts_with(event, %(video_prefix)s)) AS custom_tracks,
           sum(engaged_ms) AS engaged_ms,
           max(scroll) AS max_scroll_percent
    FROM pg_temp.profile_events GROUP BY site_id, person_id
),
firsts AS (
    SELECT DISTINCT ON (person_id) person_id, "timestamp", message_id
    FROM pg_temp.profile_events ORDER BY person_id, "timestamp", message_id {_C}
),
lasts AS (
    SELECT DISTINCT ON (person_id) person_id, "timestamp", message_id
    FROM pg_temp.profile_events ORDER BY person_id, "timestamp" DESC, message_id {_C} DESC
),
last_pages AS (
    SELECT DISTINCT ON (person_id) person_id, "timestamp", message_id, page_path, page_url
    FROM pg_temp.profile_events WHERE page IS NOT NULL
    ORDER BY person_id, "timestamp" DESC, message_id {_C} DESC
),
touches AS (
    SELECT DISTINCT ON (person_id) person_id, "timestamp", message_id, page, page_referrer,
           utm_source, utm_medium, utm_campaign, utm_term, utm_content
    FROM pg_temp.profile_events ORDER BY person_id, page IS NULL, "timestamp", message_id {_C}
),
devices AS (
    SELECT DISTINCT ON (person_id) person_id, "timestamp", message_id, device_type
    FROM pg_temp.profile_events WHERE device_type IS NOT NULL
    ORDER BY person_id, "timestamp" DESC, message_id {_C} DESC
),
countries AS (
    SELECT DISTINCT ON (person_id) person_id, "timestamp", message_id, geo_country
    FROM pg_temp.profile_events WHERE geo_country IS NOT NULL
    ORDER BY person_id, "timestamp" DESC, message_id {_C} DESC
),
sessions AS (
    SELECT person_id, count(*) AS n FROM person_sessions
    WHERE site_id = %(site)s AND (%(whole_site)s OR person_id = ANY(%(persons)s::bigint[]))
    GROUP BY 1
)
INSERT INTO person_profiles ({", ".join(_PROFILE_NAMES)})
SELECT c.site_id, c.person_id, c.events, c.pages, c.clicks, c.hovers, c.hover_dwell_ms,
       c.scrolls, c.video_plays, c.video_completions, c.custom_tracks, c.engaged_ms,
       c.max_scroll_percent, COALESCE(s.n, 0),
       f."timestamp", f.message_id, l."timestamp", l.message_id,
       lp."timestamp", lp.message_id, lp.page_path, lp.page_url,
       t."timestamp", t.message_id, t.page, t.page_referrer,
       t.utm_source, t.utm_medium, t.utm_campaign, t.utm_term, t.utm_content,
       d."timestamp", d.message_id, d.device_type,
       g."timestamp", g.message_id, g.geo_country
FROM counts c
JOIN firsts f USING (person_id)
JOIN lasts l USING (person_id)
JOIN touches t USING (person_id)
LEFT JOIN last_pages lp USING (person_id)
LEFT JOIN devices d USING (person_id)
LEFT JOIN countries g USING (person_id)
LEFT JOIN sessions s USING (person_id)
"""


_WHERE_PERSONS = "site_id = %(site)s AND (%(whole_site)s OR person_id = ANY(%(persons)s::bigint[]))"


def rebuild(
    conn: psycopg.Connection[Any], site_id: int, persons: Sequence[int] | None = None
) -> int:
    """Recompute one site's profiles from ``events`` (the caller's transaction); count them.

    ``persons``: only these (canonical) persons, found through their ids and the
    indexes on ``events`` (erasure uses it for persons who lost some events).
    Takes the site's identity lock exclusively: ingest's profile steps and
    merges for the site wait until the caller commits.
    """
    params: dict[str, Any] = {
        "site": site_id,
        "whole_site": persons is None,
        "persons": list(persons or ()),
        "users": [],
        "anonymous": [],
        "autocaptured": sorted(AUTOCAPTURED),
        "video_prefix": VIDEO_PREFIX,
    }
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (identity.site_lock(site_id),))
    if persons is None:
        # A whole site at once: hash joins and big sorts, whatever the statistics say
        # (right after a bulk load they are empty and the planner picks nested loops).
        conn.execute("SET LOCAL enable_nestloop = off")
        conn.execute("SET LOCAL work_mem = '256MB'")
    else:
        for _, kind, value in conn.execute(identity.IDS_OF_PERSONS, params).fetchall():
            params["users" if kind == USER else "anonymous"].append(value)
    conn.execute(f"DELETE FROM person_sessions WHERE {_WHERE_PERSONS}", params)
    conn.execute(f"DELETE FROM person_profiles WHERE {_WHERE_PERSONS}", params)
    # The events with their persons, once, for both statements.
    conn.execute("DROP TABLE IF EXISTS pg_temp.profile_events")
    conn.execute(ATTRIBUTED, params)
    conn.execute("ANALYZE pg_temp.profile_events")
    conn.execute(REBUILD_PERSON_SESSIONS, params)
    count = conn.execute(REBUILD_PROFILES, params).rowcount
    conn.execute("DROP TABLE pg_temp.profile_events")
    if persons is None:
        conn.execute("RESET enable_nestloop")
        conn.execute("RESET work_mem")
    return count
