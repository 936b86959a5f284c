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
same messages gives the same ids.

Shared devices: an event of a user whose person is not the person of the
device's anonymous id goes to that user's part of the session
(pipeline/sessions.py, ``session_part``), from the persons the identity step
left in the rows.

This step runs before the writer COPYs the new rows (storage/writer.py, the
phases): each row is written with its session (``session_of``), so no events
row is ever updated.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import Any

import psycopg

from footfall.pipeline.sessions import (
    ASSIGNED_SESSION,
    IDLE,
    SessionDelta,
    Span,
    aggregate,
    assign_idle,
    assign_parts,
    derive_session_id,
    idle_key,
)
from footfall.pipeline.types import EventRow

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

LOCK = (
    "SELECT count(pg_advisory_xact_lock(k))"
    " FROM (SELECT k FROM unnest(%s::bigint[]) AS k ORDER BY k) AS ordered"
)

RECENT_IDLE_SESSIONS = (
    "SELECT q.site_id, q.idle_key, s.session_id, s.first_event_at, s.last_event_at"
    " FROM unnest(%s::int[], %s::text[], %s::timestamptz[], %s::timestamptz[])"
    " AS q(site_id, idle_key, lo, hi)"
    " JOIN sessions s ON s.site_id = q.site_id AND s.idle_key = q.idle_key"
    " AND s.last_event_at >= q.lo - %s AND s.first_event_at <= q.hi + %s"
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
    """Session ids for rows that came without one (also left in ``extras[ASSIGNED_SESSION]``,
    which the events row is written with: the writer COPYs the rows after this step)."""
    by_actor: dict[tuple[int, str], list[EventRow]] = defaultdict(list)
    for row in rows:
        if row.session_id is None:
            key = idle_key(row)
            if key is not None:
                by_actor[(row.site_id, key)].append(row)
    if not by_actor:
        return {}
    actors = sorted(by_actor)
    locks = sorted({_lock_key(site_id, key) for site_id, key in actors})
    lows: list[datetime] = [min(r.timestamp for r in by_actor[a]) for a in actors]
    highs: list[datetime] = [max(r.timestamp for r in by_actor[a]) for a in actors]
    # One round trip (pipeline; the result is read once it is over): the locks,
    # then the actors' recent sessions, read once the locks are held.
    async with conn.cursor() as cur:
        async with conn.pipeline():
            await cur.execute(LOCK, (locks,))
            await cur.execute(
                RECENT_IDLE_SESSIONS,
                ([a[0] for a in actors], [a[1] for a in actors], lows, highs, IDLE, IDLE),
            )
        found = await cur.fetchall()
    spans: dict[tuple[int, str], list[Span]] = defaultdict(list)
    for site_id, key, session_id, first, last in found:
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
    return assigned


async def upsert_sessions(
    conn: psycopg.AsyncConnection[Any], deltas: Sequence[SessionDelta]
) -> None:
    """Add ``deltas`` (sorted by key) to ``sessions``, one statement for all."""
    if not deltas:
        return
    async with conn.cursor() as cur:
        await cur.execute(UPSERT_SESSIONS, _arrays(deltas))


async def sessions_step(conn: psycopg.AsyncConnection[Any], rows: Sequence[EventRow]) -> None:
    """Writer TxStep (before the COPY, after identity): put each new row in its session
    and keep ``sessions`` up to date."""
    assigned = await assign_idle_sessions(conn, rows)
    parts = assign_parts(rows, assigned)
    await upsert_sessions(conn, aggregate(rows, assigned, parts))
