"""Enrichment columns, persons, identities, sessions, analytics views, reader role (issue 5).

The ``analytics`` schema holds the views the data team queries (documented in
docs/data-model.md). They are owned by the migrating user, so they read the
raw tables with the owner's rights: the ``footfall_reader`` role is granted
the views only, never the raw tables (``sites`` holds the write keys).

``footfall_reader`` is a cluster-wide NOLOGIN role: created here if the
migrating user may create roles (else a warning says how to create it, and
the grants are skipped), and kept on downgrade because other databases of the
cluster may use it. Grant it to a login role: ``GRANT footfall_reader TO alice``.

Revision ID: 20261122_1400
Revises: 20261122_1300
Create Date: 2026-11-22 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261122_1400"
down_revision: str | None = "20261122_1300"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
NOW = sa.text("now()")
ZERO = sa.text("0")

EVENT_COLUMNS = [
    ("device_type", sa.Text()),
    ("browser_name", sa.Text()),
    ("browser_version", sa.Text()),
    ("os_name", sa.Text()),
    ("os_version", sa.Text()),
    ("device_brand", sa.Text()),
    ("device_model", sa.Text()),
    ("geo_country", sa.Text()),
    ("geo_region", sa.Text()),
    ("geo_city", sa.Text()),
    ("geo_latitude", sa.Double()),
    ("geo_longitude", sa.Double()),
    ("geo_timezone", sa.Text()),
    ("geo_asn", sa.BigInteger()),
    ("geo_asn_org", sa.Text()),
]

# The columns of events the analytics view shows: all but the truncated IP network.
ANALYTICS_EVENT_COLUMNS = """
    e.site_id, e.message_id, e.type, e.event, e.schema, e."timestamp",
    e.original_timestamp, e.sent_at, e.received_at, e.anonymous_id, e.user_id,
    e.pii_key_id, e.visitor_hash, e.session_id, e.page_url, e.page_path, e.page_title,
    e.page_referrer, e.page_search, e.utm_source, e.utm_medium, e.utm_campaign,
    e.utm_term, e.utm_content, e.library_name, e.library_version, e.user_agent,
    e.locale, e.timezone, e.device_type, e.browser_name, e.browser_version, e.os_name,
    e.os_version, e.device_brand, e.device_model, e.geo_country, e.geo_region,
    e.geo_city, e.geo_latitude, e.geo_longitude, e.geo_timezone, e.geo_asn,
    e.geo_asn_org, e.context, e.properties, e.traits"""

VIEWS = [
    # Every id with the person it resolves to now (persons.merged_into is flat).
    """
CREATE VIEW analytics.identities AS
SELECT i.site_id, i.kind, i.value,
       COALESCE(p.merged_into, p.id) AS person_id,
       i.person_id AS first_person_id,
       i.message_id, i.created_at
FROM public.identities i
JOIN public.persons p ON p.id = i.person_id
""",
    # Events with their person: the user id's person if the event has a linked
    # user id, else the anonymous id's. Unused joins are removed by the planner
    # (they are on unique keys), so a query not selecting person_id pays nothing.
    f"""
CREATE VIEW analytics.events AS
SELECT COALESCE(pu.merged_into, pu.id, pa.merged_into, pa.id) AS person_id,
       CASE WHEN pu.id IS NOT NULL THEN 'user'
            WHEN pa.id IS NOT NULL THEN 'anonymous' END AS person_via,
       {ANALYTICS_EVENT_COLUMNS}
FROM public.events e
LEFT JOIN public.identities iu
       ON iu.site_id = e.site_id AND iu.kind = 'user' AND iu.value = e.user_id
LEFT JOIN public.persons pu ON pu.id = iu.person_id
LEFT JOIN public.identities ia
       ON ia.site_id = e.site_id AND ia.kind = 'anonymous' AND ia.value = e.anonymous_id
LEFT JOIN public.persons pa ON pa.id = ia.person_id
""",
    """
CREATE VIEW analytics.sessions AS
SELECT COALESCE(pu.merged_into, pu.id, pa.merged_into, pa.id) AS person_id,
       s.site_id, s.session_id, s.anonymous_id, s.user_id,
       s.idle_key IS NOT NULL AS from_idle_rule,
       s.first_event_at, s.last_event_at, s.duration_ms,
       s.duration_ms / 1000.0 AS duration_s,
       s.event_count, s.page_count, s.click_count, s.hover_count, s.hover_dwell_ms,
       s.video_play_count, s.video_complete_count, s.max_scroll_percent, s.engaged_ms,
       s.entry_page, s.exit_page, s.referrer,
       s.utm_source, s.utm_medium, s.utm_campaign, s.utm_term, s.utm_content,
       s.device_type, s.browser_name, s.os_name,
       s.geo_country, s.geo_region, s.geo_city,
       s.timezone, s.utc_offset_min,
       (s.first_event_at AT TIME ZONE 'UTC') + make_interval(mins => s.utc_offset_min)
           AS local_started_at
FROM public.sessions s
LEFT JOIN public.identities iu
       ON iu.site_id = s.site_id AND iu.kind = 'user' AND iu.value = s.user_id
LEFT JOIN public.persons pu ON pu.id = iu.person_id
LEFT JOIN public.identities ia
       ON ia.site_id = s.site_id AND ia.kind = 'anonymous' AND ia.value = s.anonymous_id
LEFT JOIN public.persons pa ON pa.id = ia.person_id
""",
    """
CREATE VIEW analytics.persons AS
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
""",
    # One row per person, every column a number (0 where nothing happened): the
    # input of k-means and friends. Mixes are shares of the person's sessions;
    # time of day and weekday are those of the session's start in the visitor's
    # own time zone (docs/data-model.md).
    """
CREATE VIEW analytics.person_features AS
WITH s AS (
    SELECT person_id, site_id, first_event_at, last_event_at, duration_ms, event_count,
           page_count, click_count, hover_count, hover_dwell_ms, video_play_count,
           video_complete_count, max_scroll_percent, engaged_ms,
           COALESCE(device_type, 'other') AS device_type,
           extract(hour FROM local_started_at) AS local_hour,
           extract(isodow FROM local_started_at) AS local_dow
    FROM analytics.sessions
    WHERE person_id IS NOT NULL
)
SELECT person_id,
       min(site_id) AS site_id,
       min(first_event_at) AS first_seen,
       max(last_event_at) AS last_seen,
       (extract(epoch FROM now() - max(last_event_at)) / 86400)::float8 AS recency_days,
       sum(event_count)::float8 AS frequency,
       count(*)::float8 AS sessions,
       (avg(duration_ms) / 1000)::float8 AS mean_session_duration_s,
       (avg(engaged_ms) / 1000)::float8 AS mean_engaged_s,
       sum(page_count)::float8 AS page_views,
       avg(page_count)::float8 AS pages_per_session,
       avg(max_scroll_percent)::float8 AS mean_scroll_depth,
       max(max_scroll_percent)::float8 AS max_scroll_depth,
       sum(hover_count)::float8 AS hover_count,
       COALESCE(sum(hover_dwell_ms)::float8 / NULLIF(sum(hover_count), 0), 0)
           AS mean_hover_dwell_ms,
       sum(click_count)::float8 AS clicks,
       COALESCE(sum(click_count)::float8 / NULLIF(sum(page_count), 0), 0) AS click_rate,
       sum(video_play_count)::float8 AS video_plays,
       -- LEAST ignores NULLs: the COALESCE goes inside it.
       LEAST(1, COALESCE(sum(video_complete_count)::float8
                         / NULLIF(sum(video_play_count), 0), 0)) AS video_completion_rate,
       avg((device_type = 'mobile')::int)::float8 AS share_mobile,
       avg((device_type = 'tablet')::int)::float8 AS share_tablet,
       avg((device_type = 'desktop')::int)::float8 AS share_desktop,
       avg((device_type NOT IN ('mobile', 'tablet', 'desktop'))::int)::float8 AS share_other_device,
       avg((local_hour < 6)::int)::float8 AS share_night,
       avg((local_hour >= 6 AND local_hour < 12)::int)::float8 AS share_morning,
       avg((local_hour >= 12 AND local_hour < 18)::int)::float8 AS share_afternoon,
       avg((local_hour >= 18)::int)::float8 AS share_evening,
       avg((local_dow = 1)::int)::float8 AS share_monday,
       avg((local_dow = 2)::int)::float8 AS share_tuesday,
       avg((local_dow = 3)::int)::float8 AS share_wednesday,
       avg((local_dow = 4)::int)::float8 AS share_thursday,
       avg((local_dow = 5)::int)::float8 AS share_friday,
       avg((local_dow = 6)::int)::float8 AS share_saturday,
       avg((local_dow = 7)::int)::float8 AS share_sunday,
       avg((local_dow >= 6)::int)::float8 AS share_weekend
FROM s
GROUP BY person_id
""",
    # Events of one person in a time range, through the two indexes on events
    # ((site_id, user_id, timestamp) and (site_id, anonymous_id, timestamp)).
    # SECURITY DEFINER: it finds the person's ids in the raw tables, which the
    # reader cannot read; what it returns is a view the reader may read anyway.
    """
CREATE FUNCTION analytics.person_events(
    p_person_id bigint, p_from timestamptz, p_to timestamptz
) RETURNS SETOF analytics.events
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH ids AS (
        SELECT i.site_id, i.kind, i.value
        FROM public.persons p
        JOIN public.identities i ON i.person_id = p.id
        WHERE p.id = p_person_id OR p.merged_into = p_person_id
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
""",
]

READER_ROLE = """
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'footfall_reader') THEN
        IF EXISTS (SELECT 1 FROM pg_roles
                   WHERE rolname = current_user AND (rolsuper OR rolcreaterole)) THEN
            BEGIN
                CREATE ROLE footfall_reader NOLOGIN;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by a migration of another database
            END;
        ELSE
            RAISE WARNING 'role footfall_reader not created (% may not create roles): '
                'create it (CREATE ROLE footfall_reader NOLOGIN) and run the grants in '
                'docs/data-model.md', current_user;
        END IF;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'footfall_reader') THEN
        GRANT USAGE ON SCHEMA analytics TO footfall_reader;
        GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO footfall_reader;
        REVOKE ALL ON FUNCTION analytics.person_events(bigint, timestamptz, timestamptz)
            FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION analytics.person_events(bigint, timestamptz, timestamptz)
            TO footfall_reader;
        ALTER DEFAULT PRIVILEGES IN SCHEMA analytics GRANT SELECT ON TABLES TO footfall_reader;
    END IF;
END
$$
"""

DROP_READER_DEFAULTS = """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'footfall_reader') THEN
        ALTER DEFAULT PRIVILEGES IN SCHEMA analytics REVOKE SELECT ON TABLES FROM footfall_reader;
    END IF;
END
$$
"""


def upgrade() -> None:
    for name, kind in EVENT_COLUMNS:
        op.add_column("events", sa.Column(name, kind))
    op.create_index(
        "ix_events_site_id_anonymous_id_timestamp",
        "events",
        ["site_id", "anonymous_id", "timestamp"],
    )
    op.create_index(
        "ix_events_site_id_user_id_timestamp",
        "events",
        ["site_id", "user_id", "timestamp"],
        postgresql_where=sa.text("user_id IS NOT NULL"),
    )

    op.create_table(
        "persons",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("is_identified", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("merged_into", sa.BigInteger()),
        sa.Column("merged_at", TZ),
        sa.Column("created_at", TZ, server_default=NOW, nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name="fk_persons_site_id_sites"),
        sa.ForeignKeyConstraint(
            ["merged_into"], ["persons.id"], name="fk_persons_merged_into_persons"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_persons"),
    )
    op.create_index(
        "ix_persons_merged_into",
        "persons",
        ["merged_into"],
        postgresql_where=sa.text("merged_into IS NOT NULL"),
    )
    op.create_table(
        "identities",
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("person_id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.Text()),
        sa.Column("created_at", TZ, server_default=NOW, nullable=False),
        sa.CheckConstraint("kind IN ('anonymous', 'user')", name="ck_identities_kind"),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name="fk_identities_site_id_sites"),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name="fk_identities_person_id_persons"
        ),
        sa.PrimaryKeyConstraint("site_id", "kind", "value", name="pk_identities"),
    )
    op.create_index("ix_identities_person_id", "identities", ["person_id"])
    op.create_table(
        "person_merges",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("from_person", sa.BigInteger(), nullable=False),
        sa.Column("into_person", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("message_id", sa.Text()),
        sa.Column("merged_at", TZ, server_default=NOW, nullable=False),
        sa.CheckConstraint("reason IN ('identify', 'alias')", name="ck_person_merges_reason"),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name="fk_person_merges_site_id_sites"),
        sa.ForeignKeyConstraint(
            ["from_person"], ["persons.id"], name="fk_person_merges_from_person_persons"
        ),
        sa.ForeignKeyConstraint(
            ["into_person"], ["persons.id"], name="fk_person_merges_into_person_persons"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_person_merges"),
        sa.UniqueConstraint("from_person", name="uq_person_merges_from_person"),
    )
    op.create_index("ix_person_merges_into_person", "person_merges", ["into_person"])

    op.create_table(
        "sessions",
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("idle_key", sa.Text()),
        sa.Column("anonymous_id", sa.Text()),
        sa.Column("user_id", sa.Text()),
        sa.Column("first_event_at", TZ, nullable=False),
        sa.Column("first_message_id", sa.Text(), nullable=False),
        sa.Column("last_event_at", TZ, nullable=False),
        sa.Column("last_message_id", sa.Text(), nullable=False),
        sa.Column("duration_ms", sa.BigInteger(), server_default=ZERO, nullable=False),
        sa.Column("event_count", sa.Integer(), server_default=ZERO, nullable=False),
        sa.Column("page_count", sa.Integer(), server_default=ZERO, nullable=False),
        sa.Column("click_count", sa.Integer(), server_default=ZERO, nullable=False),
        sa.Column("hover_count", sa.Integer(), server_default=ZERO, nullable=False),
        sa.Column("hover_dwell_ms", sa.BigInteger(), server_default=ZERO, nullable=False),
        sa.Column("video_play_count", sa.Integer(), server_default=ZERO, nullable=False),
        sa.Column("video_complete_count", sa.Integer(), server_default=ZERO, nullable=False),
        sa.Column("max_scroll_percent", sa.Integer(), server_default=ZERO, nullable=False),
        sa.Column("engaged_ms", sa.BigInteger(), server_default=ZERO, nullable=False),
        sa.Column("entry_at", TZ, nullable=False),
        sa.Column("entry_message_id", sa.Text(), nullable=False),
        sa.Column("entry_page", sa.Text()),
        sa.Column("referrer", sa.Text()),
        sa.Column("utm_source", sa.Text()),
        sa.Column("utm_medium", sa.Text()),
        sa.Column("utm_campaign", sa.Text()),
        sa.Column("utm_term", sa.Text()),
        sa.Column("utm_content", sa.Text()),
        sa.Column("exit_at", TZ, nullable=False),
        sa.Column("exit_message_id", sa.Text(), nullable=False),
        sa.Column("exit_page", sa.Text()),
        sa.Column("device_type", sa.Text()),
        sa.Column("browser_name", sa.Text()),
        sa.Column("os_name", sa.Text()),
        sa.Column("geo_country", sa.Text()),
        sa.Column("geo_region", sa.Text()),
        sa.Column("geo_city", sa.Text()),
        sa.Column("timezone", sa.Text(), server_default=sa.text("'UTC'"), nullable=False),
        sa.Column("utc_offset_min", sa.Integer(), server_default=ZERO, nullable=False),
        sa.Column("created_at", TZ, server_default=NOW, nullable=False),
        sa.Column("updated_at", TZ, server_default=NOW, nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name="fk_sessions_site_id_sites"),
        sa.PrimaryKeyConstraint("site_id", "session_id", name="pk_sessions"),
    )
    op.create_index("ix_sessions_site_id_first_event_at", "sessions", ["site_id", "first_event_at"])
    op.create_index(
        "ix_sessions_site_id_idle_key_last_event_at",
        "sessions",
        ["site_id", "idle_key", "last_event_at"],
        postgresql_where=sa.text("idle_key IS NOT NULL"),
    )

    op.execute("CREATE SCHEMA analytics")
    for statement in VIEWS:
        op.execute(statement)
    op.execute(READER_ROLE)


def downgrade() -> None:
    op.execute(DROP_READER_DEFAULTS)
    op.execute("DROP SCHEMA analytics CASCADE")
    op.drop_table("sessions")
    op.drop_table("person_merges")
    op.drop_table("identities")
    op.drop_table("persons")
    op.drop_index("ix_events_site_id_user_id_timestamp", table_name="events")
    op.drop_index("ix_events_site_id_anonymous_id_timestamp", table_name="events")
    for name, _ in reversed(EVENT_COLUMNS):
        op.drop_column("events", name)
