"""Failed-events repository: list them, and replay them through the current schemas."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Json

from footfall.pipeline.process import Pipeline
from footfall.pipeline.types import RequestContext
from footfall.storage.sites import site_from_row
from footfall.storage.writer import TxStep, store_messages


@dataclass(slots=True)
class ReplayReport:
    examined: int = 0
    stored: int = 0
    duplicates: int = 0
    still_failing: int = 0


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


async def replay_failed(
    dsn: str,
    pipeline: Pipeline,
    site_id: int | None = None,
    batch_size: int = 500,
    steps: Sequence[TxStep] = (),
) -> ReplayReport:
    """Re-validate pending failed events; store those that now pass, exactly once.

    Each chunk is one transaction: the events are inserted with ON CONFLICT DO
    NOTHING and the failed rows marked ``replayed`` together, so a crash or a
    concurrent replay never stores a message twice.
    """
    report = ReplayReport()
    last_id = 0
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        while True:
            async with conn.transaction():
                async with conn.cursor(row_factory=dict_row) as cur:
                    await cur.execute(SELECT_PENDING, (last_id, site_id, site_id, batch_size))
                    pending = await cur.fetchall()
                if not pending:
                    break
                last_id = pending[-1]["failed_id"]
                report.examined += len(pending)
                rows, passed, failing = [], [], []
                for record in pending:
                    ctx = RequestContext(
                        site=site_from_row(record), received_at=record["received_at"]
                    )
                    plan = pipeline.run([record["raw"]], ctx, replay=True)
                    if plan.rows:
                        rows.extend(plan.rows)
                        passed.append((record["id"], record["failed_id"]))
                    elif plan.failures:
                        failing.append(((record["id"], record["failed_id"]), plan.failures[0]))
                inserted = await store_messages(conn, rows, [], steps)
                report.stored += len(inserted)
                report.duplicates += len(rows) - len(inserted)
                report.still_failing += len(failing)
                async with conn.cursor() as cur:
                    if passed:
                        await cur.execute(
                            "UPDATE failed_events SET status = 'replayed', replayed_at = now()"
                            " WHERE (site_id, id) IN"
                            " (SELECT * FROM unnest(%s::int[], %s::bigint[]))",
                            ([s for s, _ in passed], [i for _, i in passed]),
                        )
                    for failed_id, failure in failing:
                        await cur.execute(
                            # raw too: pseudonymized and scrubbed under today's policy.
                            "UPDATE failed_events SET reason = %s, errors = %s, schema = %s,"
                            " raw = %s WHERE site_id = %s AND id = %s",
                            (
                                failure.reason,
                                Json(failure.errors),
                                failure.schema,
                                Json(failure.raw),
                                *failed_id,
                            ),
                        )
    return report
