"""Live person profiles; analytics.person_features reads them (issue 10).

``person_profiles`` holds one row per canonical person, ``person_sessions``
one per person and session (storage/profiles.py keeps both in the writer's
transaction). Existing databases get them filled by the same SQL as
``footfall profiles rebuild``: run it once after upgrading (docs/operations.md);
until then ``analytics.person_features`` shows only persons seen since.

``analytics.person_profiles`` shows the profile to the reader role.
``analytics.person_features`` keeps its columns and their meaning but reads the
profile and the person's own session rows instead of aggregating every session
of the site (one person: an index look-up, not a scan).

Revision ID: 20261201_1200
Revises: 20261201_1100
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261201_1200"
down_revision: str | None = "20261201_1100"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
ZERO = sa.text("0")

COUNTERS = (
    "events",
    "pages",
    "clicks",
    "hovers",
    "hover_dwell_ms",
    "scrolls",
    "video_plays",
    "video_completions",
    "custom_tracks",
    "engaged_ms",
)

# Same columns, names and types as the view of 20261122_1400 (CREATE OR REPLACE
# needs that, and the data team's queries do too).
PERSON_FEATURES = """
CREATE OR REPLACE VIEW analytics.person_features AS
SELECT p.person_id,
       p.site_id,
       p.first_seen,
       p.last_seen,
       (extract(epoch FROM now() - p.last_seen) / 86400)::float8 AS recency_days,
       p.events::float8 AS frequency,
       p.sessions::float8 AS sessions,
       s.mean_duration_s AS mean_session_duration_s,
       (p.engaged_ms::float8 / p.sessions / 1000)::float8 AS mean_engaged_s,
       p.pages::float8 AS page_views,
       (p.pages::float8 / p.sessions)::float8 AS pages_per_session,
       s.mean_scroll AS mean_scroll_depth,
       p.max_scroll_percent::float8 AS max_scroll_depth,
       p.hovers::float8 AS hover_count,
       COALESCE(p.hover_dwell_ms::float8 / NULLIF(p.hovers, 0), 0) AS mean_hover_dwell_ms,
       p.clicks::float8 AS clicks,
       COALESCE(p.clicks::float8 / NULLIF(p.pages, 0), 0) AS click_rate,
       p.video_plays::float8 AS video_plays,
       LEAST(1, COALESCE(p.video_completions::float8 / NULLIF(p.video_plays, 0), 0))
           AS video_completion_rate,
       s.share_mobile, s.share_tablet, s.share_desktop, s.share_other_device,
       s.share_night, s.share_morning, s.share_afternoon, s.share_evening,
       s.share_monday, s.share_tuesday, s.share_wednesday, s.share_thursday,
       s.share_friday, s.share_saturday, s.share_sunday, s.share_weekend
FROM public.person_profiles p
CROSS JOIN LATERAL (
    SELECT (avg(floor(extract(epoch FROM ps.last_at - ps.first_at) * 1000)) / 1000)::float8
               AS mean_duration_s,
           avg(ps.max_scroll_percent)::float8 AS mean_scroll,
           avg((ps.device_type = 'mobile')::int)::float8 AS share_mobile,
           avg((ps.device_type = 'tablet')::int)::float8 AS share_tablet,
           avg((ps.device_type = 'desktop')::int)::float8 AS share_desktop,
           avg((COALESCE(ps.device_type, 'other') NOT IN ('mobile', 'tablet', 'desktop'))::int)
               ::float8 AS share_other_device,
           avg((l.hour < 6)::int)::float8 AS share_night,
           avg((l.hour >= 6 AND l.hour < 12)::int)::float8 AS share_morning,
           avg((l.hour >= 12 AND l.hour < 18)::int)::float8 AS share_afternoon,
           avg((l.hour >= 18)::int)::float8 AS share_evening,
           avg((l.dow = 1)::int)::float8 AS share_monday,
           avg((l.dow = 2)::int)::float8 AS share_tuesday,
           avg((l.dow = 3)::int)::float8 AS share_wednesday,
           avg((l.dow = 4)::int)::float8 AS share_thursday,
           avg((l.dow = 5)::int)::float8 AS share_friday,
           avg((l.dow = 6)::int)::float8 AS share_saturday,
           avg((l.dow = 7)::int)::float8 AS share_sunday,
           avg((l.dow >= 6)::int)::float8 AS share_weekend
    FROM public.person_sessions ps
    CROSS JOIN LATERAL (
        SELECT extract(hour FROM local) AS hour, extract(isodow FROM local) AS dow
        FROM (SELECT (ps.first_at AT TIME ZONE 'UTC')
                     + make_interval(mins => ps.utc_offset_min) AS local) AS t
    ) l
    WHERE ps.site_id = p.site_id AND ps.person_id = p.person_id
) s
WHERE p.sessions > 0
"""

# The live profile for the data team (the reader role sees analytics.* only).
PROFILES_VIEW = """
CREATE VIEW analytics.person_profiles AS
SELECT p.person_id, p.site_id, pe.is_identified AS identified,
       p.events, p.pages, p.clicks, p.hovers, p.hover_dwell_ms, p.scrolls, p.video_plays,
       p.video_completions, p.custom_tracks, p.engaged_ms, p.max_scroll_percent, p.sessions,
       p.first_seen, p.last_seen, p.last_page_path, p.last_page_url,
       p.first_touch_at, p.first_touch_page, p.referrer,
       p.utm_source, p.utm_medium, p.utm_campaign, p.utm_term, p.utm_content,
       p.device_type, p.country, p.updated_at
FROM public.person_profiles p
JOIN public.persons pe ON pe.id = p.person_id
"""

# The view as 20261122_1400 made it (downgrade).
OLD_PERSON_FEATURES = """
CREATE OR REPLACE VIEW analytics.person_features AS
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
"""


def upgrade() -> None:
    op.create_table(
        "person_profiles",
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.BigInteger(), nullable=False),
        *[sa.Column(c, sa.BigInteger(), server_default=ZERO, nullable=False) for c in COUNTERS],
        sa.Column("max_scroll_percent", sa.Integer(), server_default=ZERO, nullable=False),
        sa.Column("sessions", sa.BigInteger(), server_default=ZERO, nullable=False),
        sa.Column("first_seen", TZ, nullable=False),
        sa.Column("first_message_id", sa.Text(), nullable=False),
        sa.Column("last_seen", TZ, nullable=False),
        sa.Column("last_message_id", sa.Text(), nullable=False),
        sa.Column("last_page_at", TZ),
        sa.Column("last_page_message_id", sa.Text()),
        sa.Column("last_page_path", sa.Text()),
        sa.Column("last_page_url", sa.Text()),
        sa.Column("first_touch_at", TZ, nullable=False),
        sa.Column("first_touch_message_id", sa.Text(), nullable=False),
        sa.Column("first_touch_page", sa.Text()),
        sa.Column("referrer", sa.Text()),
        sa.Column("utm_source", sa.Text()),
        sa.Column("utm_medium", sa.Text()),
        sa.Column("utm_campaign", sa.Text()),
        sa.Column("utm_term", sa.Text()),
        sa.Column("utm_content", sa.Text()),
        sa.Column("device_at", TZ),
        sa.Column("device_message_id", sa.Text()),
        sa.Column("device_type", sa.Text()),
        sa.Column("country_at", TZ),
        sa.Column("country_message_id", sa.Text()),
        sa.Column("country", sa.Text()),
        sa.Column("updated_at", TZ, server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name="fk_person_profiles_site_id_sites"),
        sa.PrimaryKeyConstraint("site_id", "person_id", name="pk_person_profiles"),
    )
    # person_features is queried by person_id alone (person ids are unique across sites).
    op.create_index("ix_person_profiles_person_id", "person_profiles", ["person_id"])
    op.create_table(
        "person_sessions",
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.BigInteger(), nullable=False),
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("first_at", TZ, nullable=False),
        sa.Column("first_message_id", sa.Text(), nullable=False),
        sa.Column("last_at", TZ, nullable=False),
        sa.Column("max_scroll_percent", sa.Integer(), server_default=ZERO, nullable=False),
        sa.Column("device_type", sa.Text()),
        sa.Column("utc_offset_min", sa.Integer(), server_default=ZERO, nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name="fk_person_sessions_site_id_sites"),
        sa.PrimaryKeyConstraint("site_id", "person_id", "session_id", name="pk_person_sessions"),
    )
    op.execute(PERSON_FEATURES)
    op.execute(PROFILES_VIEW)  # the reader role gets it by the schema's default privileges


def downgrade() -> None:
    op.execute("DROP VIEW analytics.person_profiles")
    op.execute(OLD_PERSON_FEATURES)
    op.drop_table("person_sessions")
    op.drop_index("ix_person_profiles_person_id", table_name="person_profiles")
    op.drop_table("person_profiles")
