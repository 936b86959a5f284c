"""Daily salts of the cookieless visitor hash, and visit continuity across midnight.

A salt is 32 random bytes per UTC day, created by whichever collector needs it
first (``INSERT … ON CONFLICT DO NOTHING``, so every collector uses the same
one) and deleted once it is two days old. A deleted salt cannot be derived
again from anything: yesterday-but-one's visitor hashes can no longer be
linked to a device by anyone, the operator included (Plausible's design; a
salt derived from a secret and the date could be recomputed, so it is not used).

Continuity: a visitor hash is computed with today's salt and, for the first
visit after midnight, with yesterday's too. If that yesterday-hash was seen
within the last ``VISIT_WINDOW``, the visitor is in the middle of a visit and
keeps it (the writer's transaction, :func:`continue_visitors`); the chain goes
on as long as the visit does, and ends with yesterday's salt.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from footfall.pipeline.privacy import SaltRing
from footfall.pipeline.types import EventRow

VISIT_WINDOW = timedelta(minutes=30)
KEEP_DAYS = 2  # today and yesterday


class SaltStore:
    """Loads today's and yesterday's salts into the pipeline's :class:`SaltRing`."""

    def __init__(self, pool: AsyncConnectionPool, ring: SaltRing) -> None:
        self._pool = pool
        self.ring = ring
        self._lock = asyncio.Lock()

    async def ensure(self, day: date) -> None:
        """Make ``day``'s salt exist and be loaded; no I/O once it is (one check per request)."""
        if self.ring.loaded_for is not None and self.ring.loaded_for >= day:
            return  # a request from before midnight still finds yesterday's salt
        async with self._lock:
            if self.ring.loaded_for is not None and self.ring.loaded_for >= day:
                return
            async with self._pool.connection() as conn:
                self.ring.set(day, await rotate(conn, day))


async def rotate(conn: psycopg.AsyncConnection[Any], day: date) -> dict[date, bytes]:
    """Create ``day``'s salt if missing, delete expired ones, return the kept ones."""
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute(
            "INSERT INTO visitor_salts (day, salt) VALUES (%s, %s) ON CONFLICT (day) DO NOTHING",
            (day, secrets.token_bytes(32)),
        )
        await cur.execute(
            "DELETE FROM visitor_salts WHERE day <= %s", (day - timedelta(days=KEEP_DAYS),)
        )
        await cur.execute(
            "SELECT day, salt FROM visitor_salts WHERE day BETWEEN %s AND %s",
            (day - timedelta(days=1), day),
        )
        return {row[0]: bytes(row[1]) for row in await cur.fetchall()}


# Which of the candidates' yesterday-hashes were seen in the window before them.
SEEN_BEFORE = (
    "SELECT v.site_id, v.message_id"
    " FROM unnest(%s::int[], %s::text[], %s::timestamptz[], %s::text[])"
    " AS v(site_id, message_id, received_at, previous)"
    " WHERE EXISTS (SELECT 1 FROM events p WHERE p.site_id = v.site_id"
    " AND p.visitor_hash = v.previous"
    " AND p.received_at BETWEEN v.received_at - %s AND v.received_at)"
)

# EventRow.extras keys: the yesterday-hash the privacy step computed, and the
# hash the row came with (kept, so a retried transaction decides from it again).
PREVIOUS = "previous_visitor_hash"
_OWN = "own_visitor_hash"


async def continue_visitors(conn: psycopg.AsyncConnection[Any], rows: Sequence[EventRow]) -> None:
    """TxStep (before the COPY): a visitor active on yesterday's hash within
    VISIT_WINDOW keeps that hash; the row is then written with it.

    Active: an event with that hash in the window before the row, stored or
    among this transaction's new rows.
    """
    candidates = [row for row in rows if row.visitor_hash and row.extras.get(PREVIOUS)]
    if not candidates:
        return
    for row in candidates:
        row.visitor_hash = row.extras.setdefault(_OWN, row.visitor_hash)
    async with conn.cursor() as cur:
        await cur.execute(
            SEEN_BEFORE,
            (
                [r.site_id for r in candidates],
                [r.message_id for r in candidates],
                [r.received_at for r in candidates],
                [r.extras[PREVIOUS] for r in candidates],
                VISIT_WINDOW,
            ),
        )
        continued = set(await cur.fetchall())
    # This transaction's own rows count as stored events, with the hash each is
    # written with: taken in time order, a visit continued by one row goes on
    # in the next, as it would across requests.
    written: dict[tuple[int, str], list[datetime]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: r.received_at):
        previous = row.extras.get(PREVIOUS) if row.visitor_hash else None
        if previous and (
            (row.site_id, row.message_id) in continued
            or any(row.received_at - VISIT_WINDOW <= at for at in written[(row.site_id, previous)])
        ):
            row.visitor_hash = previous
        if row.visitor_hash:
            written[(row.site_id, row.visitor_hash)].append(row.received_at)
