"""Range-partition events by time, dedup across partitions (issue 6).

``events`` becomes a table partitioned by month of ``received_at`` (with a
DEFAULT partition for outliers), and ``event_ids`` (site_id, message_id) takes
over as the deduplication key, since a unique index on a partitioned table must
contain the partition key.

PostgreSQL cannot turn a table into a partitioned one in place, so the table is
rebuilt: a new table ``LIKE events`` (so every column, default, check and
comment earlier migrations added comes along), its partitions, a copy of every
row, then the names are swapped. Whatever pointed at the old table by its OID
is moved over by hand: views are re-pointed with CREATE OR REPLACE VIEW (which
keeps their grants and comments), and indexes, foreign keys, triggers, grants
and the table comment are recreated from the catalog. Anything else depending
on the table makes the final DROP of the old one fail, so nothing is lost
silently. The copy holds an ACCESS EXCLUSIVE lock on events for its duration:
plan the upgrade of a large table (docs/operations.md).

Revision ID: 20261122_1500
Revises: 20261122_1400
Create Date: 2026-11-22 15:00:00
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from alembic import op
from sqlalchemy import Connection

revision: str = "20261122_1500"
down_revision: str | None = "20261122_1400"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Months after the current one created here; the collector keeps this many
# ahead at start (``footfall partitions ensure``).
MONTHS_AHEAD = 2


@dataclass
class _Dependents:
    """What refers to ``events`` by OID and must be moved to the rebuilt table."""

    indexes: list[str] = field(default_factory=list)
    foreign_keys: list[tuple[str, str]] = field(default_factory=list)
    triggers: list[str] = field(default_factory=list)
    views: list[tuple[str, list[str] | None, str]] = field(default_factory=list)
    grants: list[str] = field(default_factory=list)
    owner: str = ""
    comment: str | None = None


def _quote(conn: Connection, name: str) -> str:
    return str(conn.exec_driver_sql("SELECT quote_ident(%(n)s)", {"n": name}).scalar_one())


def _dependents(conn: Connection) -> _Dependents:
    found = _Dependents()
    # Indexes other than the primary key. A unique one could not carry over to a
    # partitioned table without the partition key: refuse rather than drop it.
    for indexdef, unique in conn.exec_driver_sql(
        "SELECT pg_get_indexdef(i.indexrelid), i.indisunique FROM pg_index i"
        " WHERE i.indrelid = 'events'::regclass AND NOT i.indisprimary"
    ):
        if unique:
            raise RuntimeError(f"unique index on events needs the partition key: {indexdef}")
        # A partitioned table's index is printed "ON ONLY", which would not cascade.
        found.indexes.append(indexdef.replace(" ON ONLY ", " ON "))
    found.foreign_keys = [
        (name, definition)
        for name, definition in conn.exec_driver_sql(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'events'::regclass AND contype = 'f'"
        )
    ]
    found.triggers = list(
        conn.exec_driver_sql(
            "SELECT pg_get_triggerdef(oid) FROM pg_trigger"
            " WHERE tgrelid = 'events'::regclass AND NOT tgisinternal"
        ).scalars()
    )
    for name, kind, options, definition in conn.exec_driver_sql(
        "SELECT DISTINCT v.oid::regclass::text, v.relkind, v.reloptions, pg_get_viewdef(v.oid)"
        " FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid"
        " JOIN pg_class v ON v.oid = r.ev_class"
        " WHERE d.refobjid = 'events'::regclass AND v.oid <> 'events'::regclass"
    ):
        if kind != "v":
            raise RuntimeError(f"{name} (relkind {kind}) depends on events; migrate it by hand")
        found.views.append((name, options, definition))
    found.owner, found.comment = conn.exec_driver_sql(
        "SELECT pg_get_userbyid(relowner), obj_description(oid, 'pg_class')"
        " FROM pg_class WHERE oid = 'events'::regclass"
    ).one()
    for grantee, privilege, grantable in conn.exec_driver_sql(
        "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee))"
        " END, a.privilege_type, a.is_grantable FROM pg_class c, aclexplode(c.relacl) a"
        " WHERE c.oid = 'events'::regclass AND a.grantee <> c.relowner"
    ):
        option = " WITH GRANT OPTION" if grantable else ""
        found.grants.append(f"GRANT {privilege} ON events TO {grantee}{option}")
    for column, grantee, privilege in conn.exec_driver_sql(
        "SELECT quote_ident(t.attname), CASE WHEN a.grantee = 0 THEN 'PUBLIC'"
        " ELSE quote_ident(pg_get_userbyid(a.grantee)) END, a.privilege_type"
        " FROM pg_attribute t, aclexplode(t.attacl) a"
        " WHERE t.attrelid = 'events'::regclass AND t.attacl IS NOT NULL"
    ):
        found.grants.append(f"GRANT {privilege} ({column}) ON events TO {grantee}")
    return found


def _month(year: int, month: int) -> datetime:
    return datetime(year + (month - 1) // 12, (month - 1) % 12 + 1, 1, tzinfo=UTC)


def _create_partitions(conn: Connection, parent: str) -> None:
    """A partition per month that has rows, the current one and MONTHS_AHEAD; DEFAULT."""
    now = datetime.now(UTC)
    months = {_month(now.year, now.month + i) for i in range(MONTHS_AHEAD + 1)}
    for (start,) in conn.exec_driver_sql(
        "SELECT DISTINCT date_trunc('month', received_at AT TIME ZONE 'UTC') FROM events"
    ):
        start = start.replace(tzinfo=UTC)
        if start <= max(months):  # rows from the future (bad clocks) go to DEFAULT
            months.add(start)
    for start in sorted(months):
        end = _month(start.year, start.month + 1)
        conn.exec_driver_sql(
            f"CREATE TABLE events_{start:%Y_%m} PARTITION OF {parent}"
            f" FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
        )
    conn.exec_driver_sql(f"CREATE TABLE events_default PARTITION OF {parent} DEFAULT")


def _rebuild(conn: Connection, *, partitioned: bool) -> None:
    """Copy events into a (non-)partitioned twin and put the twin in its place."""
    deps = _dependents(conn)
    partition_by = " PARTITION BY RANGE (received_at)" if partitioned else ""
    conn.exec_driver_sql(
        f"CREATE TABLE events_rebuilt (LIKE events INCLUDING ALL EXCLUDING INDEXES){partition_by}"
    )
    if partitioned:
        _create_partitions(conn, "events_rebuilt")
    conn.exec_driver_sql("INSERT INTO events_rebuilt SELECT * FROM events")
    conn.exec_driver_sql("ALTER TABLE events RENAME TO events_replaced")
    conn.exec_driver_sql("ALTER TABLE events_rebuilt RENAME TO events")
    for name, options, definition in deps.views:
        with_options = f" WITH ({', '.join(options)})" if options else ""
        conn.exec_driver_sql(
            f"CREATE OR REPLACE VIEW {name}{with_options} AS {definition.rstrip().rstrip(';')}"
        )
    # Plain DROP: if anything not handled above still depends on it, fail loudly.
    conn.exec_driver_sql("DROP TABLE events_replaced")
    key = "site_id, message_id, received_at" if partitioned else "site_id, message_id"
    conn.exec_driver_sql(f"ALTER TABLE events ADD CONSTRAINT pk_events PRIMARY KEY ({key})")
    for statement in deps.indexes + deps.triggers + deps.grants:
        conn.exec_driver_sql(statement)
    for name, definition in deps.foreign_keys:
        conn.exec_driver_sql(f"ALTER TABLE events ADD CONSTRAINT {_quote(conn, name)} {definition}")
    if deps.owner != conn.exec_driver_sql("SELECT current_user").scalar_one():
        conn.exec_driver_sql(f"ALTER TABLE events OWNER TO {_quote(conn, deps.owner)}")
    if deps.comment is not None:
        literal = conn.exec_driver_sql("SELECT quote_literal(%(c)s)", {"c": deps.comment})
        conn.exec_driver_sql(f"COMMENT ON TABLE events IS {literal.scalar_one()}")


def upgrade() -> None:
    conn = op.get_bind()
    _rebuild(conn, partitioned=True)
    op.execute(
        "CREATE TABLE event_ids ("
        " site_id integer NOT NULL,"
        " message_id text NOT NULL,"
        " received_at timestamp with time zone NOT NULL,"
        " CONSTRAINT pk_event_ids PRIMARY KEY (site_id, message_id))"
    )
    op.execute(
        "INSERT INTO event_ids (site_id, message_id, received_at)"
        " SELECT site_id, message_id, received_at FROM events"
    )
    op.execute("CREATE INDEX ix_event_ids_received_at ON event_ids (received_at)")


def downgrade() -> None:
    conn = op.get_bind()
    # The dedup table guaranteed (site_id, message_id) unique across partitions,
    # so the old primary key holds for every row copied back.
    _rebuild(conn, partitioned=False)
    op.execute("DROP TABLE event_ids")
