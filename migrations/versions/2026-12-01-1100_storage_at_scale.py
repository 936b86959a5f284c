"""Storage at scale: events partitioned by event time, Citus-ready keys, reader role (issue 11).

1. ``events`` is rebuilt range-partitioned by month of ``timestamp`` (when the
   event happened) instead of ``received_at``, so time-range queries prune.
   The rebuild works as in ``2026-11-22-1500_partition_events`` (a twin
   ``LIKE events``, every row copied, views re-pointed, indexes, foreign keys,
   triggers, grants, owner and comment recreated from the catalog), with the
   old partitions renamed out of the way first. ``event_ids`` keeps the
   deduplication key and now records the stored copy's ``timestamp`` (its
   partition), so retention drops a month's keys with the month. Keys whose
   event is gone (erased) keep their ``received_at`` as that time.
2. Per-site tables get keys that contain ``site_id`` (Citus distributes by
   it): ``persons``, ``person_merges``, ``consent_log``, ``failed_events``,
   ``erasure_log``; foreign keys to ``persons`` become (site_id, person) ones,
   and the analytics views join on site_id too (co-located joins).
3. The read-only role is per database (``analytics.reader_role()`` names it):
   it replaces the cluster-wide ``footfall_reader`` here; CONNECT and TEMPORARY
   on the database are revoked from PUBLIC.
4. Autovacuum settings for the append-mostly ``events`` partitions and
   ``event_ids`` (docs/operations.md), and fresh statistics after the copy.

The copy holds an ACCESS EXCLUSIVE lock on events while it runs: plan it
(docs/operations.md, "The migrations that rebuild events").

Revision ID: 20261201_1100
Revises: 20261201_1020
Create Date: 2026-12-01
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from alembic import op
from sqlalchemy import Connection

revision: str = "20261201_1100"
down_revision: str | None = "20261201_1020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONTHS_AHEAD = 2

# A snapshot of storage/partitions.py PARTITION_OPTIONS when this migration was
# written (a migration must not change meaning when the code moves on).
PARTITION_OPTIONS = (
    "autovacuum_vacuum_insert_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02"
)
EVENT_IDS_OPTIONS = (
    "autovacuum_vacuum_insert_scale_factor = 0.02, autovacuum_vacuum_scale_factor = 0.05,"
    " autovacuum_analyze_scale_factor = 0.05"
)
EVENT_IDS_RESET = (
    "autovacuum_vacuum_insert_scale_factor, autovacuum_vacuum_scale_factor,"
    " autovacuum_analyze_scale_factor"
)


# --- 1. the events rebuild -------------------------------------------------------------


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
    for indexdef, unique in conn.exec_driver_sql(
        "SELECT pg_get_indexdef(i.indexrelid), i.indisunique FROM pg_index i"
        " WHERE i.indrelid = 'events'::regclass AND NOT i.indisprimary"
    ):
        if unique:
            raise RuntimeError(f"unique index on events needs the partition key: {indexdef}")
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
            " WHERE tgrelid = 'events'::regclass AND NOT tgisinternal AND tgparentid = 0"
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


def _create_partitions(conn: Connection, parent: str, column: str, options: str) -> None:
    """A partition per month of ``column`` that has rows, this month and MONTHS_AHEAD; DEFAULT."""
    now = datetime.now(UTC)
    months = {_month(now.year, now.month + i) for i in range(MONTHS_AHEAD + 1)}
    for (start,) in conn.exec_driver_sql(
        f"SELECT DISTINCT date_trunc('month', \"{column}\" AT TIME ZONE 'UTC') FROM events"
    ):
        start = start.replace(tzinfo=UTC)
        if start <= max(months):  # rows from the future (bad clocks) go to DEFAULT
            months.add(start)
    for start in sorted(months):
        end = _month(start.year, start.month + 1)
        conn.exec_driver_sql(
            f"CREATE TABLE events_{start:%Y_%m} PARTITION OF {parent}"
            f" FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
            f"{options}"
        )
    conn.exec_driver_sql(f"CREATE TABLE events_default PARTITION OF {parent} DEFAULT{options}")


def _rebuild_events(conn: Connection, column: str, options: str = "") -> None:
    """Copy events into a twin partitioned by month of ``column`` and put it in its place."""
    deps = _dependents(conn)
    old_partitions = list(
        conn.exec_driver_sql(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'events'::regclass"
        ).scalars()
    )
    # The new partitions take the old names: move the old ones aside first.
    for name in old_partitions:
        conn.exec_driver_sql(f"ALTER TABLE {_quote(conn, name)} RENAME TO {name[:50]}_replaced")
    conn.exec_driver_sql(
        "CREATE TABLE events_rebuilt (LIKE events INCLUDING ALL EXCLUDING INDEXES)"
        f' PARTITION BY RANGE ("{column}")'
    )
    _create_partitions(conn, "events_rebuilt", column, f" WITH ({options})" if options else "")
    conn.exec_driver_sql("INSERT INTO events_rebuilt SELECT * FROM events")
    conn.exec_driver_sql("ALTER TABLE events RENAME TO events_replaced")
    conn.exec_driver_sql("ALTER TABLE events_rebuilt RENAME TO events")
    for name, options, definition in deps.views:
        with_options = f" WITH ({', '.join(options)})" if options else ""
        conn.exec_driver_sql(
            f"CREATE OR REPLACE VIEW {name}{with_options} AS {definition.rstrip().rstrip(';')}"
        )
    # Plain DROP (its partitions go with it): if anything not handled above still
    # depends on the old table, fail loudly.
    conn.exec_driver_sql("DROP TABLE events_replaced")
    conn.exec_driver_sql(
        f'ALTER TABLE events ADD CONSTRAINT pk_events PRIMARY KEY (site_id, message_id, "{column}")'
    )
    for statement in deps.indexes + deps.triggers + deps.grants:
        conn.exec_driver_sql(statement)
    for name, definition in deps.foreign_keys:
        conn.exec_driver_sql(f"ALTER TABLE events ADD CONSTRAINT {_quote(conn, name)} {definition}")
    if deps.owner != conn.exec_driver_sql("SELECT current_user").scalar_one():
        conn.exec_driver_sql(f"ALTER TABLE events OWNER TO {_quote(conn, deps.owner)}")
    if deps.comment is not None:
        literal = conn.exec_driver_sql("SELECT quote_literal(%(c)s)", {"c": deps.comment})
        conn.exec_driver_sql(f"COMMENT ON TABLE events IS {literal.scalar_one()}")


def _rebuild_event_ids(conn: Connection, old: str, new: str) -> None:
    """Rebuild event_ids with column ``new`` (the stored copy's) in place of ``old``.

    A key whose event is gone (erased) keeps deduplicating: it carries its
    ``old`` value over, the nearest thing to the time it stands for.
    """
    conn.exec_driver_sql(
        "CREATE TABLE event_ids_rebuilt (site_id integer NOT NULL, message_id text NOT NULL,"
        f' "{new}" timestamp with time zone NOT NULL)'
    )
    conn.exec_driver_sql(
        f'INSERT INTO event_ids_rebuilt SELECT k.site_id, k.message_id, COALESCE(e."{new}",'
        f' k."{old}") FROM event_ids k LEFT JOIN events e ON e.site_id = k.site_id'
        f' AND e.message_id = k.message_id AND e."{old}" = k."{old}"'
    )
    conn.exec_driver_sql("DROP TABLE event_ids")
    conn.exec_driver_sql("ALTER TABLE event_ids_rebuilt RENAME TO event_ids")
    conn.exec_driver_sql(
        "ALTER TABLE event_ids ADD CONSTRAINT pk_event_ids PRIMARY KEY (site_id, message_id)"
    )
    conn.exec_driver_sql(f'CREATE INDEX ix_event_ids_{new} ON event_ids ("{new}")')


# --- 2. Citus-ready keys ---------------------------------------------------------------

# (table, old primary key columns) of per-site tables whose key was a global id.
_ID_KEYED = ["persons", "person_merges", "consent_log", "failed_events", "erasure_log"]

# Foreign keys to persons: name -> (table, columns). Names kept, definitions co-located.
_PERSON_FKS = {
    "fk_persons_merged_into_persons": ("persons", "merged_into"),
    "fk_identities_person_id_persons": ("identities", "person_id"),
    "fk_person_merges_from_person_persons": ("person_merges", "from_person"),
    "fk_person_merges_into_person_persons": ("person_merges", "into_person"),
}


def _citus_keys(conn: Connection) -> None:
    for name, (table, _) in _PERSON_FKS.items():
        conn.exec_driver_sql(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
    for table in _ID_KEYED:
        conn.exec_driver_sql(f"ALTER TABLE {table} DROP CONSTRAINT pk_{table}")
        conn.exec_driver_sql(
            f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY (site_id, id)"
        )
    conn.exec_driver_sql(
        "ALTER TABLE person_merges DROP CONSTRAINT uq_person_merges_from_person,"
        " ADD CONSTRAINT uq_person_merges_site_id_from_person UNIQUE (site_id, from_person)"
    )
    for name, (table, column) in _PERSON_FKS.items():
        conn.exec_driver_sql(
            f"ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY (site_id, {column})"
            " REFERENCES persons (site_id, id)"
        )
    # A person is also looked up by its id alone (analytics.person_events, which
    # ORs it with merged_into; ids are unique across sites): the key now leads
    # with site_id, so id needs an index of its own (not unique: Citus).
    conn.exec_driver_sql("CREATE INDEX ix_persons_id ON persons (id)")
    conn.exec_driver_sql("DROP INDEX ix_identities_person_id")
    conn.exec_driver_sql(
        "CREATE INDEX ix_identities_site_id_person_id ON identities (site_id, person_id)"
    )
    conn.exec_driver_sql("DROP INDEX ix_person_merges_into_person")
    conn.exec_driver_sql(
        "CREATE INDEX ix_person_merges_site_id_into_person ON person_merges (site_id, into_person)"
    )


def _global_keys(conn: Connection) -> None:
    for name, (table, _) in _PERSON_FKS.items():
        conn.exec_driver_sql(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
    for table in _ID_KEYED:
        conn.exec_driver_sql(f"ALTER TABLE {table} DROP CONSTRAINT pk_{table}")
        conn.exec_driver_sql(f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY (id)")
    conn.exec_driver_sql(
        "ALTER TABLE person_merges DROP CONSTRAINT uq_person_merges_site_id_from_person,"
        " ADD CONSTRAINT uq_person_merges_from_person UNIQUE (from_person)"
    )
    for name, (table, column) in _PERSON_FKS.items():
        conn.exec_driver_sql(
            f"ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY ({column})"
            " REFERENCES persons (id)"
        )
    conn.exec_driver_sql("DROP INDEX ix_persons_id")
    conn.exec_driver_sql("DROP INDEX ix_identities_site_id_person_id")
    conn.exec_driver_sql("CREATE INDEX ix_identities_person_id ON identities (person_id)")
    conn.exec_driver_sql("DROP INDEX ix_person_merges_site_id_into_person")
    conn.exec_driver_sql("CREATE INDEX ix_person_merges_into_person ON person_merges (into_person)")


# The person joins of the analytics views, with and without site_id. The views
# keep their columns, so CREATE OR REPLACE keeps their grants and comments.
_JOINS = [
    ("JOIN public.persons p ON p.id = i.person_id",
     "JOIN public.persons p ON p.site_id = i.site_id AND p.id = i.person_id"),
    ("LEFT JOIN public.persons pu ON pu.id = iu.person_id",
     "LEFT JOIN public.persons pu ON pu.site_id = iu.site_id AND pu.id = iu.person_id"),
    ("LEFT JOIN public.persons pa ON pa.id = ia.person_id",
     "LEFT JOIN public.persons pa ON pa.site_id = ia.site_id AND pa.id = ia.person_id"),
]  # fmt: skip

PERSONS_VIEW = """
CREATE OR REPLACE VIEW analytics.persons AS
WITH ids AS (
    SELECT p.site_id, COALESCE(p.merged_into, p.id) AS person_id,
           array_agg(i.value ORDER BY i.created_at, i.value)
               FILTER (WHERE i.kind = 'anonymous') AS anonymous_ids,
           array_agg(i.value ORDER BY i.created_at, i.value)
               FILTER (WHERE i.kind = 'user') AS user_ids
    FROM public.identities i
    JOIN public.persons p ON p.site_id = i.site_id AND p.id = i.person_id
    GROUP BY 1, 2
), merged AS (
    SELECT site_id, merged_into AS person_id, array_agg(id ORDER BY id) AS merged_person_ids
    FROM public.persons
    WHERE merged_into IS NOT NULL
    GROUP BY 1, 2
), seen AS (
    SELECT site_id, person_id, min(first_event_at) AS first_seen,
           max(last_event_at) AS last_seen, count(*) AS sessions, sum(event_count) AS events
    FROM analytics.sessions
    WHERE person_id IS NOT NULL
    GROUP BY 1, 2
)
SELECT p.id AS person_id, p.site_id, p.is_identified, p.created_at,
       seen.first_seen, seen.last_seen,
       COALESCE(seen.sessions, 0) AS sessions,
       COALESCE(seen.events, 0) AS events,
       COALESCE(ids.anonymous_ids, '{}') AS anonymous_ids,
       COALESCE(ids.user_ids, '{}') AS user_ids,
       COALESCE(merged.merged_person_ids, '{}') AS merged_person_ids
FROM public.persons p
LEFT JOIN ids ON ids.site_id = p.site_id AND ids.person_id = p.id
LEFT JOIN merged ON merged.site_id = p.site_id AND merged.person_id = p.id
LEFT JOIN seen ON seen.site_id = p.site_id AND seen.person_id = p.id
WHERE p.merged_into IS NULL
"""

# A merged person's id is followed to its survivor first (2026-12-01-1010, issue 9
# item 21); the person is found through ix_persons_id, its merged persons through
# ix_persons_merged_into, and the identities join is co-located (site_id).
PERSON_EVENTS = """
CREATE OR REPLACE FUNCTION analytics.person_events(
    p_person_id bigint, p_from timestamptz, p_to timestamptz
) RETURNS SETOF analytics.events
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH target AS (
        SELECT p.site_id, COALESCE(p.merged_into, p.id) AS person_id
        FROM public.persons p
        WHERE p.id = p_person_id
    ), ids AS (
        SELECT i.site_id, i.kind, i.value
        FROM target t
        JOIN public.persons p ON p.site_id = t.site_id
             AND (p.id = t.person_id OR p.merged_into = t.person_id)
        JOIN public.identities i ON i.site_id = p.site_id AND i.person_id = p.id
    )
    SELECT e.* FROM ids
    JOIN analytics.events e ON e.site_id = ids.site_id AND e.user_id = ids.value
    WHERE ids.kind = 'user' AND e."timestamp" >= p_from AND e."timestamp" < p_to
    UNION ALL
    SELECT e.* FROM ids
    JOIN analytics.events e ON e.site_id = ids.site_id AND e.anonymous_id = ids.value
    WHERE ids.kind = 'anonymous' AND e.person_via = 'anonymous'
      AND e."timestamp" >= p_from AND e."timestamp" < p_to
$$
"""

# As 2026-12-01-1010 left it (a merged id followed to its survivor).
OLD_PERSON_EVENTS = """
CREATE OR REPLACE FUNCTION analytics.person_events(
    p_person_id bigint, p_from timestamptz, p_to timestamptz
) RETURNS SETOF analytics.events
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH ids AS (
        SELECT i.site_id, i.kind, i.value
        FROM public.persons p
        JOIN public.identities i ON i.person_id = p.id
        WHERE p.id = COALESCE((SELECT COALESCE(s.merged_into, s.id) FROM public.persons s
                               WHERE s.id = p_person_id), p_person_id)
           OR p.merged_into = COALESCE((SELECT COALESCE(s.merged_into, s.id) FROM public.persons s
                                        WHERE s.id = p_person_id), p_person_id)
    )
    SELECT e.* FROM ids
    JOIN analytics.events e ON e.site_id = ids.site_id AND e.user_id = ids.value
    WHERE ids.kind = 'user' AND e."timestamp" >= p_from AND e."timestamp" < p_to
    UNION ALL
    SELECT e.* FROM ids
    JOIN analytics.events e ON e.site_id = ids.site_id AND e.anonymous_id = ids.value
    WHERE ids.kind = 'anonymous' AND e.person_via = 'anonymous'
      AND e."timestamp" >= p_from AND e."timestamp" < p_to
$$
"""


def _rewrite_views(conn: Connection, *, co_located: bool) -> None:
    """Re-create the views that join persons, with (or without) site_id in the joins."""
    for view in ("analytics.identities", "analytics.events", "analytics.sessions"):
        definition = conn.exec_driver_sql(
            "SELECT pg_get_viewdef(%(v)s::regclass)", {"v": view}
        ).scalar_one()
        # pg_get_viewdef prints joins its own way; normalize to the texts above.
        text = " ".join(definition.split())
        for old, new in _JOINS:
            old_printed, new_printed = _printed(old), _printed(new)
            src, dst = (old_printed, new_printed) if co_located else (new_printed, old_printed)
            if src in text:
                text = text.replace(src, dst)
            elif src.split(" ON ")[0] + " " in text:
                raise RuntimeError(f"{view}: join not as expected, migrate it by hand: {src}")
        conn.exec_driver_sql(f"CREATE OR REPLACE VIEW {view} AS {text.rstrip(';')}")
    if co_located:
        conn.exec_driver_sql(PERSONS_VIEW)
        conn.exec_driver_sql(PERSON_EVENTS)
    else:
        conn.exec_driver_sql(OLD_PERSONS_VIEW)
        conn.exec_driver_sql(OLD_PERSON_EVENTS)


def _printed(join: str) -> str:
    """A join as pg_get_viewdef prints it (parenthesized conditions, no schema)."""
    head, _, condition = join.partition(" ON ")
    head = head.replace("public.", "")
    if " AND " in condition:
        left, right = condition.split(" AND ")
        return f"{head} ON ((({left}) AND ({right})))"
    return f"{head} ON (({condition}))"


OLD_PERSONS_VIEW = """
CREATE OR REPLACE VIEW analytics.persons AS
WITH ids AS (
    SELECT COALESCE(p.merged_into, p.id) AS person_id,
           array_agg(i.value ORDER BY i.created_at, i.value)
               FILTER (WHERE i.kind = 'anonymous') AS anonymous_ids,
           array_agg(i.value ORDER BY i.created_at, i.value)
               FILTER (WHERE i.kind = 'user') AS user_ids
    FROM public.identities i
    JOIN public.persons p ON p.id = i.person_id
    GROUP BY 1
), merged AS (
    SELECT merged_into AS person_id, array_agg(id ORDER BY id) AS merged_person_ids
    FROM public.persons
    WHERE merged_into IS NOT NULL
    GROUP BY 1
), seen AS (
    SELECT person_id, min(first_event_at) AS first_seen, max(last_event_at) AS last_seen,
           count(*) AS sessions, sum(event_count) AS events
    FROM analytics.sessions
    WHERE person_id IS NOT NULL
    GROUP BY 1
)
SELECT p.id AS person_id, p.site_id, p.is_identified, p.created_at,
       seen.first_seen, seen.last_seen,
       COALESCE(seen.sessions, 0) AS sessions,
       COALESCE(seen.events, 0) AS events,
       COALESCE(ids.anonymous_ids, '{}') AS anonymous_ids,
       COALESCE(ids.user_ids, '{}') AS user_ids,
       COALESCE(merged.merged_person_ids, '{}') AS merged_person_ids
FROM public.persons p
LEFT JOIN ids ON ids.person_id = p.id
LEFT JOIN merged ON merged.person_id = p.id
LEFT JOIN seen ON seen.person_id = p.id
WHERE p.merged_into IS NULL
"""


# --- 3. the per-database reader role ---------------------------------------------------

# The one place the role's name is decided: footfall_reader_<database>, or a
# digest of the name when that would pass PostgreSQL's 63-byte limit.
READER_ROLE_FUNCTION = """
CREATE FUNCTION analytics.reader_role() RETURNS name
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN octet_length('footfall_reader_' || current_database()) <= 63
                THEN 'footfall_reader_' || current_database()
                ELSE 'footfall_reader_' || left(md5(current_database()), 16) END::name
$$
"""

READER_GRANTS = """
DO $$
DECLARE
    reader name := analytics.reader_role();
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = reader) THEN
        IF EXISTS (SELECT 1 FROM pg_roles
                   WHERE rolname = current_user AND (rolsuper OR rolcreaterole)) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', reader);
        ELSE
            RAISE WARNING 'role % not created (% may not create roles): create it'
                ' (CREATE ROLE % NOLOGIN) and run the grants in docs/data-model.md',
                reader, current_user, reader;
        END IF;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = reader) THEN
        EXECUTE format('GRANT USAGE ON SCHEMA analytics TO %I', reader);
        EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO %I', reader);
        EXECUTE format('GRANT EXECUTE ON FUNCTION'
            ' analytics.person_events(bigint, timestamptz, timestamptz) TO %I', reader);
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA analytics'
            ' GRANT SELECT ON TABLES TO %I', reader);
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), reader);
    END IF;
    -- The cluster-wide role of 2026-11-22-1400 no longer reads this database.
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'footfall_reader') THEN
        ALTER DEFAULT PRIVILEGES IN SCHEMA analytics REVOKE SELECT ON TABLES FROM footfall_reader;
        REVOKE ALL ON ALL TABLES IN SCHEMA analytics FROM footfall_reader;
        REVOKE ALL ON FUNCTION analytics.person_events(bigint, timestamptz, timestamptz)
            FROM footfall_reader;
        REVOKE USAGE ON SCHEMA analytics FROM footfall_reader;
    END IF;
    -- Every role may connect to a new database and create temporary tables in
    -- it (PUBLIC's defaults): not here. The owner keeps both.
    BEGIN
        EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC',
                       current_database());
        EXECUTE 'REVOKE CREATE ON SCHEMA public FROM PUBLIC';
        -- Plans over many partitions with run-time parameters are costed high, so
        -- JIT compiles them: ~0.5 s for a query that runs in 1 ms (docs/operations.md).
        EXECUTE format('ALTER DATABASE %I SET jit = off', current_database());
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE WARNING 'CONNECT and TEMPORARY on database % not revoked from PUBLIC, jit not'
            ' turned off (% is not its owner): see docs/data-model.md and docs/operations.md',
            current_database(), current_user;
    END;
END
$$
"""

DROP_READER = """
DO $$
DECLARE
    reader name := analytics.reader_role();
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = reader) THEN
        -- Its privileges are all in this database: DROP OWNED clears them here.
        EXECUTE format('DROP OWNED BY %I', reader);
        EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM %I', current_database(), reader);
        EXECUTE format('DROP ROLE %I', reader);
    END IF;
    BEGIN
        EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO PUBLIC', current_database());
        EXECUTE format('ALTER DATABASE %I RESET jit', current_database());
    EXCEPTION WHEN insufficient_privilege THEN
        NULL;
    END;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'footfall_reader') THEN
        GRANT USAGE ON SCHEMA analytics TO footfall_reader;
        GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO footfall_reader;
        GRANT EXECUTE ON FUNCTION analytics.person_events(bigint, timestamptz, timestamptz)
            TO footfall_reader;
        ALTER DEFAULT PRIVILEGES IN SCHEMA analytics GRANT SELECT ON TABLES TO footfall_reader;
    END IF;
END
$$
"""


def upgrade() -> None:
    conn = op.get_bind()
    _citus_keys(conn)
    _rewrite_views(conn, co_located=True)
    _rebuild_event_ids(conn, "received_at", "timestamp")
    _rebuild_events(conn, "timestamp", PARTITION_OPTIONS)
    conn.exec_driver_sql(f"ALTER TABLE event_ids SET ({EVENT_IDS_OPTIONS})")
    op.execute(READER_ROLE_FUNCTION)
    op.execute(READER_GRANTS)
    # Autovacuum never analyzes a partitioned parent, and the copy left the new
    # partitions without statistics: plans over events need both.
    op.execute("ANALYZE events")
    op.execute("ANALYZE event_ids")


def downgrade() -> None:
    conn = op.get_bind()
    op.execute(DROP_READER)
    op.execute("DROP FUNCTION analytics.reader_role()")
    conn.exec_driver_sql(f"ALTER TABLE event_ids RESET ({EVENT_IDS_RESET})")
    _rebuild_events(conn, "received_at")
    _rebuild_event_ids(conn, "timestamp", "received_at")
    _rewrite_views(conn, co_located=False)
    _global_keys(conn)
