"""Helpers for segment tests: define segments, send messages like a browser, read state."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from footfall.storage import segments as store

EXAMPLES = Path(__file__).parents[2] / "docs" / "segments-examples"
ORIGIN = "https://shop.example"


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


def define(dsn: str, site_id: int, document: dict[str, Any]) -> dict[str, Any]:
    with psycopg.connect(dsn) as conn, conn.transaction():
        return store.create_segment(conn, site_id, document)


def message(kind: str, anonymous_id: str, **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": kind,
        "messageId": str(uuid.uuid4()),
        "anonymousId": anonymous_id,
    }
    out.update(fields)
    return out


def page(anonymous_id: str, path: str, **fields: Any) -> dict[str, Any]:
    context = fields.pop("context", {})
    context.setdefault("page", {"path": path, "url": "https://shop.example" + path})
    return message("page", anonymous_id, properties={"path": path}, context=context, **fields)


def track(anonymous_id: str, event: str, **properties: Any) -> dict[str, Any]:
    return message("track", anonymous_id, event=event, properties=properties)


def at(moment: datetime) -> dict[str, str]:
    """Fields that make the collector store ``moment`` as the event's timestamp."""
    now = datetime.now(UTC)
    return {"timestamp": moment.isoformat(), "sentAt": now.isoformat()}


def ago(seconds: float) -> dict[str, str]:
    return at(datetime.now(UTC) - timedelta(seconds=seconds))


def send(
    base_url: str,
    write_key: str,
    batch: list[dict[str, Any]],
    *,
    browser: bool = True,
    user_agent: str | None = None,
) -> dict[str, Any]:
    headers = {"Origin": ORIGIN} if browser else {}
    if user_agent:
        headers["User-Agent"] = user_agent
    response = httpx.post(
        base_url + "/v1/batch",
        json={"batch": batch},
        auth=(write_key, ""),
        headers=headers,
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def open_memberships(dsn: str, site_id: int) -> set[tuple[int, str]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT person_id, segment_key FROM segment_memberships"
            " WHERE site_id = %s AND exited_at IS NULL",
            (site_id,),
        ).fetchall()
    return {(int(p), k) for p, k in rows}


def person_of(dsn: str, site_id: int, anonymous_id: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT COALESCE(p.merged_into, p.id) FROM identities i JOIN persons p"
            " ON p.id = i.person_id WHERE i.site_id = %s AND i.kind = 'anonymous'"
            " AND i.value = %s",
            (site_id, anonymous_id),
        ).fetchone()
    assert row is not None, anonymous_id
    return int(row[0])
