"""Failed-events repository: list them; the reads and writes of a replay (footfall/replay.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Json

from footfall.pipeline.types import Failure, Site
from footfall.storage.sites import site_from_row


def list_failed(dsn: str, status: str = "pending", limit: int = 50) -> list[dict[str, Any]]:
    """The oldest failed events with ``status`` (pending, replayed or unreplayable)."""
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT f.id, s.name AS site, f.message_id, f.received_at, f.reason, f.errors,"
            " f.schema, f.status FROM failed_events f JOIN sites s ON s.id = f.site_id"
            " WHERE f.status = %s ORDER BY f.id LIMIT %s",
            (status, limit),
        )
        return list(cur.fetchall())


SELECT_PENDING = (
    "SELECT f.id AS failed_id, f.raw, f.received_at, s.id, s.name, s.write_key,"
    " s.allowed_origins, s.consent_mode, s.settings"
    " FROM failed_events f JOIN sites s ON s.id = f.site_id"
    " WHERE f.status = 'pending' AND f.id > %s AND (%s::int IS NULL OR f.site_id = %s)"
    " ORDER BY f.id LIMIT %s FOR UPDATE OF f SKIP LOCKED"
)


async def pending_failed(
    conn: psycopg.AsyncConnection[Any], after_id: int, site_id: int | None, limit: int
) -> list[tuple[tuple[int, int], Any, datetime, Site]]:
    """The next pending failed events ((site_id, id), raw, received_at, site), locked here.

    SKIP LOCKED: a concurrent replay takes other rows, so none is stored twice.
    """
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(SELECT_PENDING, (after_id, site_id, site_id, limit))
        rows = await cur.fetchall()
    return [((r["id"], r["failed_id"]), r["raw"], r["received_at"], site_from_row(r)) for r in rows]


async def mark_replayed(
    conn: psycopg.AsyncConnection[Any], keys: Sequence[tuple[int, int]]
) -> None:
    """Mark failed events (by (site_id, id)) as stored by a replay."""
    if keys:
        async with conn.cursor() as cur:
            await cur.execute(
                "UPDATE failed_events SET status = 'replayed', replayed_at = now()"
                " WHERE (site_id, id) IN (SELECT * FROM unnest(%s::int[], %s::bigint[]))",
                ([s for s, _ in keys], [i for _, i in keys]),
            )


async def update_failure(
    conn: psycopg.AsyncConnection[Any], key: tuple[int, int], failure: Failure
) -> None:
    """A still-failing event (by (site_id, id)) gets the reasons of its latest attempt."""
    async with conn.cursor() as cur:
        await cur.execute(
            # raw too: pseudonymized and scrubbed under today's policy.
            "UPDATE failed_events SET reason = %s, errors = %s, schema = %s, raw = %s"
            " WHERE site_id = %s AND id = %s",
            (failure.reason, Json(failure.errors), failure.schema, Json(failure.raw), *key),
        )
