"""Monthly partitions of ``events``: create them ahead, list them, drop old ones.

``events`` is range-partitioned by ``timestamp`` (when the event happened, on
the collector's clock after skew correction), one partition a month named
``events_YYYY_MM`` plus ``events_default`` for rows no month takes. So every
query with a time range on ``timestamp`` (the column analysts filter on) reads
only its months. ``timestamp`` is clamped to ``received_at``, so nothing lands
after the current month; an event from before the oldest partition (an import
of history, a device that queued for months) lands in DEFAULT, and
:func:`split_default` moves such rows into partitions of their own months.
Retention drops whole months and the deduplication keys of their rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import psycopg
from psycopg import sql

PARENT = "events"
DEFAULT = "events_default"
_MONTHLY = re.compile(r"^events_(\d{4})_(\d{2})$")
_BOUNDS = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")
# Collectors starting together serialize on this (migrations use 7426091).
_LOCK_KEY = 7426092
# Storage settings of every partition (a partitioned parent takes none):
# events is append-mostly, so vacuum after 2 % new rows (not 20 %) keeps the
# visibility map and freezing current without waiting for a huge backlog, and
# statistics follow a month that is still filling (docs/operations.md).
PARTITION_OPTIONS = (
    "autovacuum_vacuum_insert_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02"
)


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    lower: datetime | None  # None for the DEFAULT partition
    upper: datetime | None


def is_partition_name(name: str) -> bool:
    """A child table of ``events`` (alembic leaves them out of its comparison)."""
    return name == DEFAULT or _MONTHLY.match(name) is not None


def month_start(value: date | datetime, add: int = 0) -> datetime:
    """The first instant (UTC) of the month of ``value``, ``add`` months later."""
    index = value.year * 12 + value.month - 1 + add
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def partition_name(start: datetime) -> str:
    return f"events_{start:%Y_%m}"


def is_partitioned(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        "SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", (PARENT,)
    ).fetchone()
    return row is not None and row[0] == "p"


def list_partitions(conn: psycopg.Connection[Any]) -> list[Partition]:
    """Every partition of ``events``, monthly ones by start, DEFAULT last."""
    with conn.transaction():
        conn.execute("SET LOCAL TimeZone = 'UTC'")
        rows = conn.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%s)",
            (PARENT,),
        ).fetchall()
    partitions = []
    for name, bound in rows:
        found = _BOUNDS.search(bound)
        if found is None:
            partitions.append(Partition(name, None, None))
        else:
            lower, upper = (datetime.fromisoformat(v).astimezone(UTC) for v in found.groups())
            partitions.append(Partition(name, lower, upper))
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(partitions, key=lambda p: p.lower or far)


def ensure_partitions(
    conn: psycopg.Connection[Any], months_ahead: int = 2, now: datetime | None = None
) -> list[str]:
    """Create the partitions of this month and ``months_ahead`` more; return the new names.

    Idempotent and safe to run from several collectors at once. If the DEFAULT
    partition already holds rows of a month being created (the collector ran
    without partitions ahead), they are moved into the new partition.
    """
    if not is_partitioned(conn):
        return []
    now = now or datetime.now(UTC)
    created: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        existing = {p.name for p in list_partitions(conn)}
        if DEFAULT not in existing:
            conn.execute(
                f"CREATE TABLE {DEFAULT} PARTITION OF {PARENT} DEFAULT WITH ({PARTITION_OPTIONS})"
            )
            created.append(DEFAULT)
        for ahead in range(months_ahead + 1):
            start = month_start(now, ahead)
            name = partition_name(start)
            if name not in existing:
                _create_month(conn, name, start, month_start(start, 1))
                created.append(name)
    return created


def _create_month(
    conn: psycopg.Connection[Any], name: str, lower: datetime, upper: datetime
) -> None:
    bounds = f"FOR VALUES FROM ('{lower.isoformat()}') TO ('{upper.isoformat()}')"
    in_default = conn.execute(
        f'SELECT 1 FROM {DEFAULT} WHERE "timestamp" >= %s AND "timestamp" < %s LIMIT 1',
        (lower, upper),
    ).fetchone()
    if in_default is None:
        conn.execute(
            f"CREATE TABLE {name} PARTITION OF {PARENT} {bounds} WITH ({PARTITION_OPTIONS})"
        )
        return
    # A new partition may not overlap rows of DEFAULT: move them over first.
    conn.execute(
        f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING ALL EXCLUDING INDEXES)"
        f" WITH ({PARTITION_OPTIONS})"
    )
    conn.execute(
        f'WITH moved AS (DELETE FROM {DEFAULT} WHERE "timestamp" >= %s AND "timestamp" < %s'
        f" RETURNING *) INSERT INTO {name} SELECT * FROM moved",
        (lower, upper),
    )
    conn.execute(f"ALTER TABLE {PARENT} ATTACH PARTITION {name} {bounds}")


def default_months(conn: psycopg.Connection[Any]) -> list[tuple[datetime, int]]:
    """The months (UTC) the DEFAULT partition holds rows of, with their row counts."""
    with conn.transaction():
        conn.execute("SET LOCAL TimeZone = 'UTC'")
        rows = conn.execute(
            f"SELECT date_trunc('month', \"timestamp\"), count(*) FROM {DEFAULT}"
            " GROUP BY 1 ORDER BY 1"
        ).fetchall()
    return [(month_start(start), int(n)) for start, n in rows]


def split_default(conn: psycopg.Connection[Any], *, dry_run: bool = False) -> list[tuple[str, int]]:
    """Move DEFAULT's rows into partitions of their months, created here; (name, rows) each.

    Each month is its own transaction holding an exclusive lock on ``events``
    (ATTACH checks the new partition against DEFAULT), so run it when an import
    of history is done, not during peak traffic. Rows and their keys in
    ``event_ids`` are unchanged: only the partition a row lives in moves.
    """
    if not is_partitioned(conn):
        return []
    moved = []
    for start, rows in default_months(conn):
        name = partition_name(start)
        moved.append((name, rows))
        if dry_run:
            continue
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            if name in {p.name for p in list_partitions(conn)}:
                raise RuntimeError(f"{name} exists yet DEFAULT holds rows of its month")
            _create_month(conn, name, start, month_start(start, 1))
    return moved


def partition_rows(conn: psycopg.Connection[Any], partition: Partition) -> int:
    """Rows in one partition (a count: it reads the partition)."""
    query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(partition.name))
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


@dataclass(slots=True)
class Retention:
    dropped: list[Partition]
    default_rows_deleted: int = 0
    keys_deleted: int = 0


def drop_before(
    conn: psycopg.Connection[Any], cutoff: datetime, *, dry_run: bool = False
) -> Retention:
    """Drop every monthly partition that ends on or before ``cutoff``.

    Whole partitions go (no row-by-row DELETE on events); DEFAULT rows whose
    event time is before the last dropped month's end are deleted with them,
    then the deduplication keys of everything dropped (``event_ids`` rows with
    a ``timestamp`` before that bound), in batches and in later transactions so
    the lock on ``events`` is held only for the drops. This is the end of the
    deduplication window: a retry of a message whose month was dropped is
    stored again, like a new message.
    """
    old = [p for p in list_partitions(conn) if p.upper is not None and p.upper <= cutoff]
    report = Retention(dropped=old)
    if dry_run or not old:
        return report
    bound = max(p.upper for p in old if p.upper is not None)
    with conn.transaction():
        for partition in old:
            conn.execute(f"DROP TABLE {partition.name}")
        report.default_rows_deleted = conn.execute(
            f'DELETE FROM {DEFAULT} WHERE "timestamp" < %s', (bound,)
        ).rowcount
    while True:
        with conn.transaction():
            deleted = conn.execute(
                "DELETE FROM event_ids WHERE ctid = ANY(ARRAY(SELECT ctid FROM event_ids"
                ' WHERE "timestamp" < %s LIMIT 50000))',
                (bound,),
            ).rowcount
        report.keys_deleted += deleted
        if deleted == 0:
            return report


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic autogenerate filter: the partitions of ``events`` are not in the models."""
    if type_ == "table" and reflected and compare_to is None and name:
        return not is_partition_name(name)
    return True


def ensure(dsn: str, months_ahead: int) -> list[str]:
    """:func:`ensure_partitions` on a connection of its own (the collector's start)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return ensure_partitions(conn, months_ahead)
