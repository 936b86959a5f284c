"""Sessions in the writer's transaction: idle-rule ids, then one upsert per session.

Runs as a writer TxStep on the newly inserted rows only, so a retried message
is never counted twice. The rules (what a batch adds to a session, the idle
rule) are pure functions in pipeline/sessions.py; this module is their SQL.

Concurrency: the upsert sends the sessions sorted by (site_id, session_id), so
two group commits touching the same sessions lock them in one order and cannot
deadlock on them. Every column is merged by a commutative rule (sums, least /
greatest, "the value of the first event by (timestamp, message_id)"), so the
outcome is the same whichever commit comes first.

Idle-rule sessions (messages without a session id): the actor's recent
sessions are looked up under a transaction-level advisory lock on (site,
bucket of the actor), taken in sorted order, so two collectors assigning
sessions to the same actor at once take turns and the second sees the first's
session. Their ids are derived from (site, actor, start time), so replaying the
same messages gives the same ids. The assigned id is written to the event rows
in the same transaction that inserted them: no committed row ever changes.

Shared devices: an event of a user whose person is not the person of the
device's anonymous id goes to that user's part of the session
(pipeline/sessions.py, ``session_part``); its events row gets the part's id in
the same transaction, like an idle-rule id.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import Any

import psycopg

from footfall.pipeline.identity import ANONYMOUS, USER, IdKey
from footfall.pipeline.sessions import (
    ASSIGNED_SESSION,
    IDLE,
    SessionDelta,
    Span,
    aggregate,
    assign_idle,
    derive_session_id,
    idle_key,
    session_part,
)
from footfall.pipeline.types import EventRow
from footfall.storage.identity import resolve

# Actors are hashed into this many lock buckets per site: a batch takes at most
# this many advisory locks, whatever its size.
LOCK_BUCKETS = 256

# Columns of the upsert, in order (all from SessionDelta).
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("site_id", "int"),
    ("session_id", "text"),
    ("idle_key", "text"),
    ("anonymous_id", "text"),
    ("user_id", "text"),
    ("first_event_at", "timestamptz"),
    ("first_message_id", "text"),
    ("last_event_at", "timestamptz"),
    ("last_message_id", "text"),
    ("duration_ms", "bigint"),
    ("event_count", "int"),
    ("page_count", "int"),
    ("click_count", "int"),
    ("hover_count", "int"),
    ("hover_dwell_ms", "bigint"),
    ("video_play_count", "int"),
    ("video_complete_count", "int"),
    ("max_scroll_percent", "int"),
    ("engaged_ms", "bigint"),
    ("entry_at", "timestamptz"),
    ("entry_message_id", "text"),
    ("entry_page", "text"),
    ("referrer", "text"),
    ("utm_source", "text"),
    ("utm_medium", "text"),
    ("utm_campaign", "text"),
    ("utm_term", "text"),
    ("utm_content", "text"),
    ("exit_at", "timestamptz"),
    ("exit_message_id", "text"),
    ("exit_page", "text"),
    ("device_type", "text"),
    ("browser_name", "text"),
    ("os_name", "text"),
    ("geo_country", "text"),
    ("geo_region", "text"),
    ("geo_city", "text"),
    ("timezone", "text"),
    ("utc_offset_min", "int"),
)
_NAMES = ", ".join(name for name, _ in _COLUMNS)
# Binary parameters (%b): a third of the client-side cost of text for ~40 arrays.
_ARRAYS = ", ".join(f"%b::{kind}[]" for _, kind in _COLUMNS)

# The comparisons use COLLATE "C" so message ids order by code point, as in Python.
# ``s`` is the stored row, ``e`` the delta (EXCLUDED).
_E = "EXCLUDED"
_FIRST = (
    f'({_E}.first_event_at, {_E}.first_message_id COLLATE "C")'
    ' < (s.first_event_at, s.first_message_id COLLATE "C")'
)
_LAST = (
    f'({_E}.last_event_at, {_E}.last_message_id COLLATE "C")'
    ' > (s.last_event_at, s.last_message_id COLLATE "C")'
)
_ENTRY = (
    f'({_E}.entry_page IS NULL, {_E}.entry_at, {_E}.entry_message_id COLLATE "C")'
    ' < (s.entry_page IS NULL, s.entry_at, s.entry_message_id COLLATE "C")'
)
_EXIT = (
    f'({_E}.exit_page IS NOT NULL, {_E}.exit_at, {_E}.exit_message_id COLLATE "C")'
    ' > (s.exit_page IS NOT NULL, s.exit_at, s.exit_message_id COLLATE "C")'
)
_FROM_FIRST = (
    "anonymous_id",
    "device_type",
    "browser_name",
    "os_name",
    "geo_country",
    "geo_region",
    "geo_city",
    "timezone",
    "utc_offset_min",
    "first_message_id",
)
_FROM_ENTRY = (
    "entry_message_id",
    "entry_page",
    "referrer",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
)
_FROM_EXIT = ("exit_message_id", "exit_page")
_SUMS = (
    "event_count",
    "page_count",
    "click_count",
    "hover_count",
    "hover_dwell_ms",
    "video_play_count",
    "video_complete_count",
    "engaged_ms",
)


def _pick(columns: tuple[str, ...], condition: str) -> list[str]:
    return [f"{c} = CASE WHEN {condition} THEN {_E}.{c} ELSE s.{c} END" for c in columns]


# Every SET expression reads the row as it was before this update (s) and the
# delta (EXCLUDED), so the order of the assignments does not matter.
_SET = ",\n  ".join(
    [f"{c} = s.{c} + {_E}.{c}" for c in _SUMS]
    + _pick(_FROM_FIRST, _FIRST)
    + _pick(_FROM_ENTRY, _ENTRY)
    + _pick(_FROM_EXIT, _EXIT)
    + [
        f"first_event_at = LEAST(s.first_event_at, {_E}.first_event_at)",
        f"last_event_at = GREATEST(s.last_event_at, {_E}.last_event_at)",
        f"last_message_id = CASE WHEN {_LAST} THEN {_E}.last_message_id ELSE s.last_message_id END",
        f"duration_ms = floor(extract(epoch FROM GREATEST(s.last_event_at, {_E}.last_event_at)"
        f" - LEAST(s.first_event_at, {_E}.first_event_at)) * 1000)::bigint",
        f"entry_at = CASE WHEN {_ENTRY} THEN {_E}.entry_at ELSE s.entry_at END",
        f"exit_at = CASE WHEN {_EXIT} THEN {_E}.exit_at ELSE s.exit_at END",
        f"max_scroll_percent = GREATEST(s.max_scroll_percent, {_E}.max_scroll_percent)",
        f'user_id = GREATEST(s.user_id COLLATE "C", {_E}.user_id COLLATE "C")',
        f"idle_key = COALESCE(s.idle_key, {_E}.idle_key)",
        "updated_at = now()",
    ]
)

UPSERT_SESSIONS = (
    f"INSERT INTO sessions AS s ({_NAMES})\n"
    f"SELECT * FROM unnest({_ARRAYS}) AS t({_NAMES})\n"
    "ORDER BY site_id, session_id\n"
    f"ON CONFLICT (site_id, session_id) DO UPDATE SET\n  {_SET}"
)

RECENT_IDLE_SESSIONS = (
    "SELECT q.site_id, q.idle_key, s.session_id, s.first_event_at, s.last_event_at"
    " FROM unnest(%s::int[], %s::text[], %s::timestamptz[], %s::timestamptz[])"
    " AS q(site_id, idle_key, lo, hi)"
    " JOIN sessions s ON s.site_id = q.site_id AND s.idle_key = q.idle_key"
    " AND s.last_event_at >= q.lo - %s AND s.first_event_at <= q.hi + %s"
)

SET_EVENT_SESSIONS = (
    "UPDATE events e SET session_id = v.session_id"
    " FROM unnest(%s::int[], %s::text[], %s::timestamptz[], %s::text[])"
    " AS v(site_id, message_id, ts, session_id)"
    " WHERE e.site_id = v.site_id AND e.message_id = v.message_id"
    ' AND e."timestamp" = v.ts AND e.session_id IS NULL'
)

# The same for rows moved to a session part: their session id is set (as sent, or
# just assigned by the idle rule), and is replaced in the transaction that inserted them.
SET_EVENT_PARTS = (
    "UPDATE events e SET session_id = v.session_id"
    " FROM unnest(%s::int[], %s::text[], %s::timestamptz[], %s::text[])"
    " AS v(site_id, message_id, ts, session_id)"
    " WHERE e.site_id = v.site_id AND e.message_id = v.message_id"
    ' AND e."timestamp" = v.ts'
)


def _lock_key(site_id: int, key: str) -> int:
    """A signed 64-bit advisory lock key for (site, bucket of the actor)."""
    bucket = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest()) % LOCK_BUCKETS
    digest = hashlib.blake2b(f"footfall.sessions\0{site_id}\0{bucket}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), signed=True)


def _arrays(deltas: Sequence[SessionDelta]) -> list[list[Any]]:
    arrays: list[list[Any]] = []
    for name, _ in _COLUMNS:
        if name == "duration_ms":
            arrays.append([d.duration_ms for d in deltas])
        else:
            arrays.append([getattr(d, name) for d in deltas])
    return arrays


async def assign_idle_sessions(
    conn: psycopg.AsyncConnection[Any], rows: Sequence[EventRow]
) -> dict[tuple[int, str], str]:
    """Session ids for rows that came without one, written to their events rows."""
    by_actor: dict[tuple[int, str], list[EventRow]] = defaultdict(list)
    for row in rows:
        if row.session_id is None:
            key = idle_key(row)
            if key is not None:
                by_actor[(row.site_id, key)].append(row)
    if not by_actor:
        return {}
    actors = sorted(by_actor)
    async with conn.cursor() as cur:
        locks = sorted({_lock_key(site_id, key) for site_id, key in actors})
        await cur.execute(
            "SELECT count(pg_advisory_xact_lock(k))"
            " FROM (SELECT k FROM unnest(%s::bigint[]) AS k ORDER BY k) AS ordered",
            (locks,),
        )
        lows: list[datetime] = [min(r.timestamp for r in by_actor[a]) for a in actors]
        highs: list[datetime] = [max(r.timestamp for r in by_actor[a]) for a in actors]
        await cur.execute(
            RECENT_IDLE_SESSIONS,
            ([a[0] for a in actors], [a[1] for a in actors], lows, highs, IDLE, IDLE),
        )
        spans: dict[tuple[int, str], list[Span]] = defaultdict(list)
        for site_id, key, session_id, first, last in await cur.fetchall():
            spans[(site_id, key)].append(Span(session_id, first, last))

        assigned: dict[tuple[int, str], str] = {}
        for site_id, key in actors:
            actor_rows = by_actor[(site_id, key)]
            ids = assign_idle(
                spans[(site_id, key)],
                [(r.timestamp, r.message_id) for r in actor_rows],
                partial(derive_session_id, site_id, key),
            )
            for row in actor_rows:
                assigned[(site_id, row.message_id)] = ids[row.message_id]
                row.extras[ASSIGNED_SESSION] = ids[row.message_id]

        updates = [r for a in actors for r in by_actor[a]]
        await cur.execute(
            SET_EVENT_SESSIONS,
            (
                [r.site_id for r in updates],
                [r.message_id for r in updates],
                [r.timestamp for r in updates],  # the primary key's: one partition
                [assigned[(r.site_id, r.message_id)] for r in updates],
            ),
        )
    return assigned


async def assign_parts(
    conn: psycopg.AsyncConnection[Any],
    rows: Sequence[EventRow],
    assigned: dict[tuple[int, str], str],
) -> dict[tuple[int, str], str]:
    """Session parts of rows whose user is not their device's person, written to events.

    Runs after the identity step, so both ids of every row are linked already;
    only rows with a session and both ids are looked at (one query per commit).
    """
    candidates = [
        r
        for r in rows
        if r.user_id is not None
        and r.anonymous_id is not None
        and (r.session_id or assigned.get((r.site_id, r.message_id)))
    ]
    if not candidates:
        return {}
    keys: list[IdKey] = sorted(
        {(r.site_id, USER, r.user_id) for r in candidates if r.user_id is not None}
        | {(r.site_id, ANONYMOUS, r.anonymous_id) for r in candidates if r.anonymous_id}
    )
    async with conn.cursor() as cur:
        persons = await resolve(cur, keys)
        parts: dict[tuple[int, str], str] = {}
        moved: list[EventRow] = []
        for row in candidates:
            assert row.user_id is not None and row.anonymous_id is not None
            session_id = row.session_id or assigned[(row.site_id, row.message_id)]
            user = persons.get((row.site_id, USER, row.user_id))
            device = persons.get((row.site_id, ANONYMOUS, row.anonymous_id))
            part = session_part(
                session_id,
                row.user_id,
                user.person if user is not None else None,
                device.person if device is not None else None,
            )
            if part is not None:
                parts[(row.site_id, row.message_id)] = part
                moved.append(row)
                row.extras[ASSIGNED_SESSION] = part  # for the steps after this one
            elif row.session_id is not None:
                row.extras.pop(ASSIGNED_SESSION, None)  # left by a rolled-back attempt
        if moved:
            await cur.execute(
                SET_EVENT_PARTS,
                (
                    [r.site_id for r in moved],
                    [r.message_id for r in moved],
                    [r.timestamp for r in moved],
                    [parts[(r.site_id, r.message_id)] for r in moved],
                ),
            )
    return parts


async def upsert_sessions(
    conn: psycopg.AsyncConnection[Any], deltas: Sequence[SessionDelta]
) -> None:
    """Add ``deltas`` (sorted by key) to ``sessions``, one statement for all."""
    if not deltas:
        return
    async with conn.cursor() as cur:
        await cur.execute(UPSERT_SESSIONS, _arrays(deltas))


async def sessions_step(conn: psycopg.AsyncConnection[Any], rows: Sequence[EventRow]) -> None:
    """Writer TxStep: keep ``sessions`` up to date with the new rows."""
    assigned = await assign_idle_sessions(conn, rows)
    parts = await assign_parts(conn, rows, assigned)
    await upsert_sessions(conn, aggregate(rows, assigned, parts))
