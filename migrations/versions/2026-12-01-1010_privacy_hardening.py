"""Privacy hardening (issue 9, items 13-21): the analytics layer's person rules.

- ``analytics.person_events(id, from, to)`` follows a merged person's id to the
  person it was merged into (item 21): asked for a merged id, it returns the
  surviving person's events, labelled with the survivor's ``person_id``, as
  ``analytics.events`` labels them (docs/data-model.md).
- ``analytics.sessions.from_idle_rule`` also covers the parts split off an
  idle-rule session for a second user of a shared device (item 20; the split
  itself is done by the writer, storage/sessions.py).

Revision ID: 20261201_1010
Revises: 20261122_1500
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261201_1010"
down_revision: str | None = "20261122_1500"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PERSON_EVENTS = """
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
        WHERE p.id = {person} OR p.merged_into = {person}
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
# persons.merged_into is kept flat (it names a person that is not merged itself), so
# one look-up finds the survivor; an unknown id stays itself and finds nothing.
SURVIVOR = (
    "COALESCE((SELECT COALESCE(s.merged_into, s.id) FROM public.persons s"
    " WHERE s.id = p_person_id), p_person_id)"
)

_SESSIONS_OLD = "s.idle_key IS NOT NULL AS from_idle_rule"
# A part split off a session keeps its idle_key null (it must never be found by the idle
# rule's look-up); its id says where it came from.
_SESSIONS_NEW = "(s.idle_key IS NOT NULL OR left(s.session_id, 4) = 'ffs-') AS from_idle_rule"


def _sessions_view(from_idle_rule: str) -> str:
    return f"""
CREATE OR REPLACE VIEW analytics.sessions AS
SELECT COALESCE(pu.merged_into, pu.id, pa.merged_into, pa.id) AS person_id,
       s.site_id, s.session_id, s.anonymous_id, s.user_id,
       {from_idle_rule},
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
"""


def upgrade() -> None:
    op.execute(_PERSON_EVENTS.format(person=SURVIVOR))
    op.execute(_sessions_view(_SESSIONS_NEW))


def downgrade() -> None:
    op.execute(_sessions_view(_SESSIONS_OLD))
    op.execute(_PERSON_EVENTS.format(person="p_person_id"))
