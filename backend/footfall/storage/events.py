"""Reads of stored events for operator tools (``footfall schemas infer``)."""

from __future__ import annotations

from typing import Any

import psycopg


def undeclared_examples(
    conn: psycopg.Connection[Any], site_id: int, event: str, limit: int
) -> list[Any]:
    """The ``properties`` of the newest stored undeclared ``event`` rows of a site.

    Newest by event time, so the (site_id, timestamp) index is walked backwards
    and the scan stops after ``limit`` matches.
    """
    rows = conn.execute(
        "SELECT properties FROM events WHERE site_id = %s AND event = %s AND undeclared"
        " ORDER BY timestamp DESC LIMIT %s",
        (site_id, event, limit),
    ).fetchall()
    return [row[0] for row in rows]
