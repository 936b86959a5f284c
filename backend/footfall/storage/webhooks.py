"""Webhook endpoints and the transactional outbox (docs/webhooks.md): all their SQL.

``enqueue`` runs in the caller's transaction (the writer's, for segment
memberships), so a webhook exists exactly when the change that caused it was
committed, and a NOTIFY sent by the same transaction wakes the dispatchers at
commit (never on rollback). Dispatchers in any number of collector processes
claim due rows with ``FOR UPDATE SKIP LOCKED`` and a lease: a claim pushes
``next_attempt_at`` ahead by the lease, so the row is invisible to the others
while its request is in flight, and due again if the claimer dies.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from footfall.webhooks.message import check_message

NOTIFY_CHANNEL = "footfall_webhooks"
STATUSES = ("pending", "delivered", "dead", "cancelled", "undeliverable")
MAX_ERROR_CHARS = 300

AsyncConn = psycopg.AsyncConnection[Any]


@dataclass(frozen=True, slots=True)
class Message:
    """One webhook to enqueue: a change of ``site_id``, sent to each named endpoint."""

    site_id: int
    endpoints: Sequence[str]
    event_type: str
    data: dict[str, Any]
    message_id: str


@dataclass(frozen=True, slots=True)
class Endpoint:
    site_id: int
    name: str
    url: str
    enabled: bool
    created_at: datetime
    secret_key_id: str


@dataclass(frozen=True, slots=True)
class Claimed:
    """An outbox row a dispatcher holds the lease of, with what it needs to send it."""

    site_id: int
    id: int
    endpoint: str
    message_id: str
    event_type: str
    data: dict[str, Any]
    created_at: datetime
    attempts: int
    claim: str
    url: str
    secret_sealed: bytes
    secret_key_id: str


# --- enqueue (the contract with segments) -----------------------------------------------

_ENQUEUE = """
INSERT INTO webhook_outbox
    (site_id, endpoint, message_id, event_type, data, person_id, status, last_error)
SELECT m.site_id, m.endpoint, m.message_id, m.event_type, m.data, m.person_id,
       CASE WHEN e.name IS NULL THEN 'undeliverable' ELSE 'pending' END,
       CASE WHEN e.name IS NULL THEN 'no endpoint of this name on the site' END
FROM unnest(%(sites)s::int[], %(endpoints)s::text[], %(ids)s::text[], %(types)s::text[],
            %(data)s::jsonb[], %(persons)s::bigint[])
     AS m(site_id, endpoint, message_id, event_type, data, person_id)
LEFT JOIN webhook_endpoints e ON e.site_id = m.site_id AND e.name = m.endpoint
ORDER BY m.site_id, m.endpoint, m.message_id
ON CONFLICT (site_id, endpoint, message_id) DO NOTHING
RETURNING status
"""


async def enqueue(
    conn: AsyncConn,
    site_id: int,
    endpoints: Sequence[str],
    event_type: str,
    data: dict[str, Any],
    message_id: str,
) -> int:
    """Queue ``data`` for each named endpoint of the site, in the caller's transaction.

    Idempotent on (site_id, endpoint, message_id): enqueuing the same change again
    adds nothing. A name with no endpoint is stored as ``undeliverable`` (visible in
    ``footfall webhooks list``), not an error. ``data["person_id"]``, when present,
    is what :func:`cancel_for_person` matches. Returns the rows added.
    """
    return await enqueue_many(conn, [Message(site_id, endpoints, event_type, data, message_id)])


async def enqueue_many(conn: AsyncConn, messages: Sequence[Message]) -> int:
    """:func:`enqueue` for many messages in one statement (e.g. one group commit's)."""
    columns: dict[str, list[Any]] = {
        k: [] for k in ("sites", "endpoints", "ids", "types", "data", "persons")
    }
    for message in messages:
        encoded = check_message(message.event_type, message.data, message.message_id).decode()
        person = message.data.get("person_id")
        for endpoint in dict.fromkeys(message.endpoints):
            columns["sites"].append(message.site_id)
            columns["endpoints"].append(endpoint)
            columns["ids"].append(message.message_id)
            columns["types"].append(message.event_type)
            columns["data"].append(encoded)
            columns["persons"].append(person if isinstance(person, int) else None)
    if not columns["sites"]:
        return 0
    async with conn.cursor() as cur:
        await cur.execute(_ENQUEUE, columns)
        statuses = [status for (status,) in await cur.fetchall()]
        if "pending" in statuses:
            # Delivered at commit, dropped on rollback: wakes every dispatcher.
            await cur.execute("SELECT pg_notify(%s, '')", (NOTIFY_CHANNEL,))
    return len(statuses)


_CANCEL = (
    "UPDATE webhook_outbox SET status = 'cancelled', data = '{}'::jsonb, claim = NULL,"
    " last_error = 'cancelled: the person withdrew consent or was erased'"
    " WHERE site_id = %s AND person_id = ANY(%s::bigint[]) AND status = 'pending'"
)


async def cancel_for_person(conn: AsyncConn, site_id: int, person_id: int) -> int:
    """Cancel the person's pending deliveries (consent withdrawn, erasure); their data is
    cleared as they will never be sent. In the caller's transaction; returns how many."""
    cursor = await conn.execute(_CANCEL, (site_id, [person_id]))
    return cursor.rowcount


def cancel_for_persons_sync(
    conn: psycopg.Connection[Any], site_id: int, persons: Sequence[int]
) -> int:
    """:func:`cancel_for_person` for the synchronous paths (admin API, CLI withdrawals)."""
    return conn.execute(_CANCEL, (site_id, list(persons))).rowcount


# --- endpoints -------------------------------------------------------------------------


async def add_endpoint(
    conn: AsyncConn, site_id: int, name: str, url: str, secret_sealed: bytes, secret_key_id: str
) -> None:
    """A new endpoint; psycopg.errors.UniqueViolation if the site has one of that name."""
    await conn.execute(
        "INSERT INTO webhook_endpoints (site_id, name, url, secret_sealed, secret_key_id)"
        " VALUES (%s, %s, %s, %s, %s)",
        (site_id, name, url, secret_sealed, secret_key_id),
    )


async def list_endpoints(conn: AsyncConn, site_id: int | None = None) -> list[Endpoint]:
    """Endpoints (without their secrets), of one site or all."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT site_id, name, url, enabled, created_at, secret_key_id FROM webhook_endpoints"
            " WHERE %(site)s::int IS NULL OR site_id = %(site)s ORDER BY site_id, name",
            {"site": site_id},
        )
        return [Endpoint(**row) for row in await cur.fetchall()]


async def remove_endpoint(conn: AsyncConn, site_id: int, name: str) -> tuple[bool, int]:
    """Delete an endpoint and cancel what was pending for it: (existed, cancelled)."""
    cursor = await conn.execute(
        "DELETE FROM webhook_endpoints WHERE site_id = %s AND name = %s", (site_id, name)
    )
    existed = cursor.rowcount > 0
    cursor = await conn.execute(
        "UPDATE webhook_outbox SET status = 'cancelled', claim = NULL,"
        " last_error = 'cancelled: the endpoint was removed'"
        " WHERE site_id = %s AND endpoint = %s AND status = 'pending'",
        (site_id, name),
    )
    return existed, cursor.rowcount


async def set_enabled(conn: AsyncConn, site_id: int, name: str, enabled: bool) -> bool:
    """Pause (deliveries wait, pending) or resume an endpoint; False if there is none."""
    cursor = await conn.execute(
        "UPDATE webhook_endpoints SET enabled = %s WHERE site_id = %s AND name = %s",
        (enabled, site_id, name),
    )
    if enabled and cursor.rowcount:
        await conn.execute("SELECT pg_notify(%s, '')", (NOTIFY_CHANNEL,))
    return cursor.rowcount > 0


async def sealed_secrets(conn: AsyncConn) -> list[tuple[int, str, bytes, str]]:
    """(site_id, name, sealed secret, key id) of every endpoint, locked for resealing."""
    cursor = await conn.execute(
        "SELECT site_id, name, secret_sealed, secret_key_id FROM webhook_endpoints"
        " ORDER BY site_id, name FOR UPDATE"
    )
    return [(s, n, bytes(sealed), k) for s, n, sealed, k in await cursor.fetchall()]


async def store_sealed_secret(
    conn: AsyncConn, site_id: int, name: str, secret_sealed: bytes, secret_key_id: str
) -> None:
    await conn.execute(
        "UPDATE webhook_endpoints SET secret_sealed = %s, secret_key_id = %s"
        " WHERE site_id = %s AND name = %s",
        (secret_sealed, secret_key_id, site_id, name),
    )


# --- the dispatcher's side ---------------------------------------------------------------

# A claim whose holder died after the last allowed attempt falls due with no
# attempt left: it goes to the dead letter instead of being sent once more.
_EXPIRED_LAST_CLAIMS = """
UPDATE webhook_outbox SET status = 'dead', claim = NULL,
       last_error = 'no answer recorded for the last attempt (its collector stopped)'
WHERE status = 'pending' AND next_attempt_at <= now() AND attempts >= %s
"""

# Sites with something due. Claims are then made one site at a time, so each
# locking statement names one site_id: a single-shard (router) query under Citus,
# which supports FOR UPDATE only there.
_DUE_SITES = """
SELECT o.site_id
FROM webhook_outbox o
JOIN webhook_endpoints e ON e.site_id = o.site_id AND e.name = o.endpoint AND e.enabled
WHERE o.status = 'pending' AND o.next_attempt_at <= now() AND o.attempts < %(max)s
ORDER BY o.next_attempt_at
LIMIT 500
"""

_CLAIM = """
WITH due AS (
    SELECT o.site_id, o.id
    FROM webhook_outbox o
    JOIN webhook_endpoints e ON e.site_id = o.site_id AND e.name = o.endpoint AND e.enabled
    WHERE o.site_id = %(site)s AND e.site_id = %(site)s
      AND o.status = 'pending' AND o.next_attempt_at <= now() AND o.attempts < %(max)s
      AND o.endpoint <> ALL(%(skip)s::text[])
    ORDER BY o.next_attempt_at
    LIMIT %(limit)s
    FOR UPDATE OF o SKIP LOCKED
)
UPDATE webhook_outbox o
SET attempts = o.attempts + 1, claim = %(claim)s,
    next_attempt_at = now() + make_interval(secs => %(lease)s)
FROM due, webhook_endpoints e
WHERE o.site_id = %(site)s AND e.site_id = %(site)s
  AND o.id = due.id AND e.name = o.endpoint
RETURNING o.site_id, o.id, o.endpoint, o.message_id, o.event_type, o.data, o.created_at,
          o.attempts, o.claim, e.url, e.secret_sealed, e.secret_key_id
"""


async def claim_due(
    conn: AsyncConn,
    *,
    limit: int,
    lease_s: float,
    claim: str,
    max_attempts: int,
    skip: Collection[tuple[int, str]] = (),
    rng: random.Random | None = None,
) -> list[Claimed]:
    """Take up to ``limit`` due rows for ``lease_s`` seconds; commits (its own transaction).

    Sites are visited in random order, so dispatchers spread over them and one
    site's backlog does not starve the others'. ``skip``: (site_id, endpoint)
    pairs this dispatcher cannot sign for, left to the others.
    """
    rows: list[dict[str, Any]] = []
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_DUE_SITES, {"max": max_attempts})
        sites = list(dict.fromkeys(row["site_id"] for row in await cur.fetchall()))
        (rng or random).shuffle(sites)
        for site_id in sites:
            params = {
                "site": site_id,
                "max": max_attempts,
                "limit": limit - len(rows),
                "lease": lease_s,
                "claim": claim,
                "skip": [name for site, name in skip if site == site_id],
            }
            await cur.execute(_CLAIM, params)
            rows += await cur.fetchall()
            if len(rows) >= limit:
                break
    return [
        Claimed(**{**row, "secret_sealed": bytes(row["secret_sealed"])})
        for row in sorted(rows, key=lambda r: (r["site_id"], r["id"]))
    ]


async def expire_last_claims(conn: AsyncConn, max_attempts: int) -> int:
    """Dead-letter rows whose last allowed attempt never recorded an answer."""
    async with conn.transaction():
        cursor = await conn.execute(_EXPIRED_LAST_CLAIMS, (max_attempts,))
    return cursor.rowcount


async def record_delivered(conn: AsyncConn, item: Claimed, status: int) -> float | None:
    """Mark delivered if this claim still holds it; the seconds since it was enqueued
    (None: the claim was lost, e.g. the row was cancelled meanwhile)."""
    async with conn.transaction():
        cursor = await conn.execute(
            "UPDATE webhook_outbox SET status = 'delivered', delivered_at = now(), claim = NULL,"
            " last_status = %s, last_error = NULL"
            " WHERE site_id = %s AND id = %s AND claim = %s AND status = 'pending'"
            " RETURNING EXTRACT(EPOCH FROM clock_timestamp() - created_at)::float8",
            (status, item.site_id, item.id, item.claim),
        )
        row = await cursor.fetchone()
    return None if row is None else float(row[0])


async def listen(dsn: str, on_notify: Callable[[], None]) -> None:
    """LISTEN for enqueues on a connection of its own and call ``on_notify`` for each; runs
    until cancelled or the connection fails (the exception is the caller's to handle)."""
    async with await psycopg.AsyncConnection.connect(
        dsn, autocommit=True, connect_timeout=5
    ) as conn:
        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL)))
        on_notify()  # whatever was committed while nobody listened
        async for _ in conn.notifies():
            on_notify()


async def record_failure(
    conn: AsyncConn,
    item: Claimed,
    *,
    status: int | None,
    error: str,
    dead: bool,
    retry_in_s: float,
    counted: bool = True,
) -> bool:
    """A failed attempt: due again in ``retry_in_s``, or dead; False if the claim was lost.

    ``counted=False``: the claim is handed back without using up an attempt (the
    fault was this dispatcher's, not the receiver's).
    """
    async with conn.transaction():
        cursor = await conn.execute(
            "UPDATE webhook_outbox SET status = %s, claim = NULL, last_status = %s,"
            " last_error = %s, next_attempt_at = now() + make_interval(secs => %s),"
            " attempts = attempts - %s"
            " WHERE site_id = %s AND id = %s AND claim = %s AND status = 'pending'",
            (
                "dead" if dead else "pending",
                status,
                error[:MAX_ERROR_CHARS],
                retry_in_s,
                0 if counted else 1,
                item.site_id,
                item.id,
                item.claim,
            ),
        )
    return cursor.rowcount > 0


async def seconds_to_next_due(conn: AsyncConn, max_attempts: int) -> float | None:
    """How long until a pending row of an enabled endpoint falls due (None: nothing pending)."""
    async with conn.transaction():
        cursor = await conn.execute(
            "SELECT EXTRACT(EPOCH FROM min(o.next_attempt_at) - now())::float8"
            " FROM webhook_outbox o JOIN webhook_endpoints e"
            " ON e.site_id = o.site_id AND e.name = o.endpoint AND e.enabled"
            " WHERE o.status = 'pending'"
        )
        row = await cursor.fetchone()
    return None if row is None or row[0] is None else max(float(row[0]), 0.0)


async def prune(conn: AsyncConn, retention_days: int, limit: int = 10_000) -> int:
    """Delete delivered, cancelled and undeliverable rows older than the retention."""
    async with conn.transaction():
        cursor = await conn.execute(
            "DELETE FROM webhook_outbox WHERE (site_id, id) IN ("
            " SELECT site_id, id FROM webhook_outbox"
            " WHERE status IN ('delivered', 'cancelled', 'undeliverable')"
            " AND created_at < now() - make_interval(days => %s) LIMIT %s)",
            (retention_days, limit),
        )
    return cursor.rowcount


# --- listing and retrying (CLI) -----------------------------------------------------------


async def list_deliveries(
    conn: AsyncConn,
    *,
    site_id: int | None = None,
    status: str | None = None,
    endpoint: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Outbox rows, newest first, without their data."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT o.site_id, s.name AS site, o.id, o.endpoint, o.message_id, o.event_type,"
            " o.status, o.attempts, o.last_status, o.last_error, o.created_at,"
            " o.next_attempt_at, o.delivered_at"
            " FROM webhook_outbox o JOIN sites s ON s.id = o.site_id"
            " WHERE (%(site)s::int IS NULL OR o.site_id = %(site)s)"
            " AND (%(status)s::text IS NULL OR o.status = %(status)s)"
            " AND (%(endpoint)s::text IS NULL OR o.endpoint = %(endpoint)s)"
            " ORDER BY o.id DESC LIMIT %(limit)s",
            {"site": site_id, "status": status, "endpoint": endpoint, "limit": limit},
        )
        return list(await cur.fetchall())


async def retry_dead(
    conn: AsyncConn,
    *,
    site_id: int | None = None,
    endpoint: str | None = None,
    ids: Sequence[int] = (),
) -> int:
    """Dead deliveries (all matching, or those ids) pending again with fresh attempts."""
    cursor = await conn.execute(
        "UPDATE webhook_outbox SET status = 'pending', attempts = 0, next_attempt_at = now(),"
        " claim = NULL"
        " WHERE status = 'dead'"
        " AND (%(site)s::int IS NULL OR site_id = %(site)s)"
        " AND (%(endpoint)s::text IS NULL OR endpoint = %(endpoint)s)"
        " AND (cardinality(%(ids)s::bigint[]) = 0 OR id = ANY(%(ids)s::bigint[]))",
        {"site": site_id, "endpoint": endpoint, "ids": list(ids)},
    )
    if cursor.rowcount:
        await conn.execute("SELECT pg_notify(%s, '')", (NOTIFY_CHANNEL,))
    return cursor.rowcount
