"""``footfall failed replay``: pending failed events through today's pipeline, stored once.

Above storage: it runs the pipeline (pure) over what storage/failed.py reads,
and hands the rows to the writer's ``store_messages`` with the same
transaction steps as live ingest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from footfall.pipeline.process import Pipeline
from footfall.pipeline.types import EventRow, Failure, RequestContext
from footfall.storage.failed import mark_replayed, pending_failed, update_failure
from footfall.storage.writer import TxStep, store_messages


@dataclass(slots=True)
class ReplayReport:
    examined: int = 0
    stored: int = 0
    duplicates: int = 0
    still_failing: int = 0


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
                pending = await pending_failed(conn, last_id, site_id, batch_size)
                if not pending:
                    break
                last_id = pending[-1][0][1]
                report.examined += len(pending)
                rows: list[EventRow] = []
                passed: list[tuple[int, int]] = []
                failing: list[tuple[tuple[int, int], Failure]] = []
                for failed_id, raw, received_at, site in pending:
                    await pipeline.registry.prepare(site.schema_dir)
                    ctx = RequestContext(site=site, received_at=received_at)
                    plan = pipeline.run([raw], ctx, replay=True)
                    if plan.rows:
                        rows.extend(plan.rows)
                        passed.append(failed_id)
                    elif plan.failures:
                        failing.append((failed_id, plan.failures[0]))
                inserted = await store_messages(conn, rows, [], steps)
                report.stored += len(inserted)
                report.duplicates += len(rows) - len(inserted)
                report.still_failing += len(failing)
                await mark_replayed(conn, passed)
                for failed_id, failure in failing:
                    await update_failure(conn, failed_id, failure)
    return report
