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
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
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
SELECT d.site_id
FROM (SELECT o.site_id, o.next_attempt_at
      FROM webhook_outbox o
      JOIN webhook_endpoints e ON e.site_id = o.site_id AND e.name = o.endpoint AND e.enabled
      WHERE o.status = 'pending' AND o.next_attempt_at <= now() AND o.attempts < %(max)s
      ORDER BY o.next_attempt_at
      LIMIT 500) d
GROUP BY d.site_id
ORDER BY min(d.next_attempt_at)
"""

# Locks up to ``limit`` due rows (skipping those another dispatcher holds), then
# claims of them at most ``room`` per endpoint (the endpoint's in-flight bound
# minus what this dispatcher already sends it): the others stay pending, their
# locks released at commit.
_CLAIM = """
WITH locked AS (
    SELECT o.id, o.endpoint, o.next_attempt_at
    FROM webhook_outbox o
    JOIN webhook_endpoints e ON e.site_id = o.site_id AND e.name = o.endpoint AND e.enabled
    WHERE o.site_id = %(site)s AND e.site_id = %(site)s
      AND o.status = 'pending' AND o.next_attempt_at <= now() AND o.attempts < %(max)s
      AND o.endpoint <> ALL(%(skip)s::text[])
    ORDER BY o.next_attempt_at
    LIMIT %(limit)s
    FOR UPDATE OF o SKIP LOCKED
), due AS (
    SELECT r.id
    FROM (SELECT l.id, l.endpoint,
                 row_number() OVER (PARTITION BY l.endpoint ORDER BY l.next_attempt_at, l.id) AS n
          FROM locked l) r
    LEFT JOIN unnest(%(names)s::text[], %(rooms)s::int[]) AS b(endpoint, room)
           ON b.endpoint = r.endpoint
    WHERE r.n <= coalesce(b.room, %(per_endpoint)s)
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

# When the next row this dispatcher may claim falls due (the endpoints it skips
# left out): an index walk on next_attempt_at, not an aggregate over every pending row.
_NEXT_DUE = """
SELECT EXTRACT(EPOCH FROM o.next_attempt_at - now())::float8 AS seconds
FROM webhook_outbox o
JOIN webhook_endpoints e ON e.site_id = o.site_id AND e.name = o.endpoint AND e.enabled
WHERE o.status = 'pending'
  AND (o.site_id, o.endpoint) NOT IN (
      SELECT k.s, k.n FROM unnest(%(skip_sites)s::int[], %(skip_names)s::text[]) AS k(s, n))
ORDER BY o.next_attempt_at
LIMIT 1
"""


@dataclass(frozen=True, slots=True)
class Claims:
    """What one :func:`claim_due` took.

    ``more``: it stopped at a bound (``limit``, or an endpoint's room), so more may
    be due now. Otherwise ``next_due_s``: how long until the next row it could
    claim falls due (0: due now but held by another dispatcher; None: nothing pending).
    """

    rows: list[Claimed]
    more: bool
    next_due_s: float | None


async def claim_due(
    conn: AsyncConn,
    *,
    limit: int,
    lease_s: float,
    claim: str,
    max_attempts: int,
    per_endpoint: int,
    room: Mapping[tuple[int, str], int] | None = None,
    skip: Collection[tuple[int, str]] = (),
    rng: random.Random | None = None,
) -> Claims:
    """Take up to ``limit`` due rows for ``lease_s`` seconds; commits (its own transaction).

    At most ``per_endpoint`` rows of one endpoint, or ``room[(site_id, endpoint)]``
    for the endpoints listed there (the bound minus what the dispatcher has in
    flight to them). Sites are visited in random order, so dispatchers spread over
    them and one site's backlog does not starve the others'. ``skip``: (site_id,
    endpoint) pairs left alone (no room left, or the dispatcher cannot sign for them).
    """
    room = room or {}
    rows: list[dict[str, Any]] = []
    more = False
    next_due: float | None = None
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_DUE_SITES, {"max": max_attempts})
        sites = list(dict.fromkeys(row["site_id"] for row in await cur.fetchall()))
        (rng or random).shuffle(sites)
        for site_id in sites:
            rooms = {name: left for (site, name), left in room.items() if site == site_id}
            params = {
                "site": site_id,
                "max": max_attempts,
                "limit": limit - len(rows),
                "lease": lease_s,
                "claim": claim,
                "skip": [name for site, name in skip if site == site_id],
                "names": list(rooms),
                "rooms": list(rooms.values()),
                "per_endpoint": per_endpoint,
            }
            await cur.execute(_CLAIM, params)
            got = await cur.fetchall()
            rows += got
            taken = Counter(row["endpoint"] for row in got)
            if any(n >= rooms.get(name, per_endpoint) for name, n in taken.items()):
                more = True  # an endpoint's room is full: the next claim skips it
            if len(rows) >= limit:
                more = True
                break
        if not more:
            await cur.execute(
                _NEXT_DUE,
                {"skip_sites": [s for s, _ in skip], "skip_names": [n for _, n in skip]},
            )
            found = await cur.fetchone()
            if found is not None:
                next_due = max(float(found["seconds"]), 0.0)
    claimed = [
        Claimed(**{**row, "secret_sealed": bytes(row["secret_sealed"])})
        for row in sorted(rows, key=lambda r: (r["site_id"], r["id"]))
    ]
    return Claims(claimed, more, next_due)


async def expire_last_claims(conn: AsyncConn, max_attempts: int) -> int:
    """Dead-letter rows whose last allowed attempt never recorded an answer."""
    async with conn.transaction():
        cursor = await conn.execute(_EXPIRED_LAST_CLAIMS, (max_attempts,))
    return cursor.rowcount


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


@dataclass(frozen=True, slots=True)
class Outcome:
    """An attempt's result, to record against the claim that made it.

    ``status``: ``delivered``, ``pending`` (tried again in ``retry_in_s``) or ``dead``.
    ``counted=False`` hands the claim back without using up an attempt (the fault
    was the dispatcher's, not the receiver's).
    """

    site_id: int
    id: int
    claim: str
    status: str
    last_status: int | None
    error: str | None = None
    retry_in_s: float = 0.0
    counted: bool = True


@dataclass(frozen=True, slots=True)
class Recorded:
    """What :func:`record_outcomes` did, by (site_id, id).

    ``done``: recorded, with the seconds since the row was enqueued. ``lost``: the
    claim no longer holds the row (cancelled, deleted, or claimed again after its
    lease ran out): nothing recorded. ``busy``: another transaction holds the row (a
    cancellation, say): not recorded, to record again once it is done.
    """

    done: dict[tuple[int, int], float]
    lost: set[tuple[int, int]]
    busy: list[Outcome]


# One statement per site and batch. Rows another transaction holds are skipped
# (SKIP LOCKED), never waited for: two multi-row UPDATEs waiting on each other can
# deadlock, and the other one may be a writer's cancellation, failing its ingest.
_RECORD = """
WITH r AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(claims)s::text[], %(statuses)s::text[],
                         %(last)s::int[], %(errors)s::text[], %(delays)s::float8[],
                         %(uncounted)s::int[])
        AS r(id, claim, status, last_status, error, delay_s, uncounted)
), locked AS (
    SELECT o.id FROM webhook_outbox o
    WHERE o.site_id = %(site)s AND o.id = ANY(%(ids)s::bigint[])
    FOR UPDATE SKIP LOCKED
), done AS (
    UPDATE webhook_outbox o
    SET status = r.status, claim = NULL, last_status = r.last_status, last_error = r.error,
        delivered_at = CASE WHEN r.status = 'delivered' THEN now() ELSE o.delivered_at END,
        next_attempt_at = CASE WHEN r.status = 'delivered' THEN o.next_attempt_at
                               ELSE now() + make_interval(secs => r.delay_s) END,
        attempts = o.attempts - r.uncounted
    FROM r JOIN locked l ON l.id = r.id
    WHERE o.site_id = %(site)s AND o.id = r.id AND o.claim = r.claim AND o.status = 'pending'
    RETURNING o.id, EXTRACT(EPOCH FROM clock_timestamp() - o.created_at)::float8 AS latency
)
SELECT r.id, d.latency, l.id IS NOT NULL AS locked,
       EXISTS (SELECT 1 FROM webhook_outbox x WHERE x.site_id = %(site)s AND x.id = r.id)
           AS present
FROM r LEFT JOIN locked l ON l.id = r.id LEFT JOIN done d ON d.id = r.id
"""


async def record_outcomes(conn: AsyncConn, outcomes: Sequence[Outcome]) -> Recorded:
    """Record a batch of attempts, each only if its claim still holds the row: one
    statement per site, all in one transaction (commits)."""
    by_site: dict[int, list[Outcome]] = {}
    for outcome in outcomes:
        by_site.setdefault(outcome.site_id, []).append(outcome)
    result = Recorded({}, set(), [])
    async with conn.transaction(), conn.cursor() as cur:
        for site_id, batch in sorted(by_site.items()):
            batch.sort(key=lambda o: o.id)
            await cur.execute(
                _RECORD,
                {
                    "site": site_id,
                    "ids": [o.id for o in batch],
                    "claims": [o.claim for o in batch],
                    "statuses": [o.status for o in batch],
                    "last": [o.last_status for o in batch],
                    "errors": [
                        None if o.error is None else o.error[:MAX_ERROR_CHARS] for o in batch
                    ],
                    "delays": [o.retry_in_s for o in batch],
                    "uncounted": [0 if o.counted else 1 for o in batch],
                },
            )
            answers = {row[0]: row[1:] for row in await cur.fetchall()}
            for outcome in batch:
                latency, locked, present = answers[outcome.id]
                key = (site_id, outcome.id)
                if latency is not None:
                    result.done[key] = float(latency)
                elif locked or not present:
                    result.lost.add(key)
                else:
                    result.busy.append(outcome)
    return result


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
