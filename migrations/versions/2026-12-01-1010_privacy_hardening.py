"""Privacy hardening (issue 9, items 13-21): the analytics layer's person rules.

- ``analytics.person_events(id, from, to)`` follows a merged person's id to the
  person it was merged into (item 21): asked for a merged id, it returns the
  surviving person's events, labelled with the survivor's ``person_id``, as
  ``analytics.events`` labels them (docs/data-model.md).
- ``analytics.sessions.from_idle_rule`` also covers the parts split off an
  idle-rule session for a second user of a shared device (item 20; the split
  itself is done by the writer, storage/sessions.py).
- Failed events stored by earlier versions lose what they should never have
  kept (items 13, 14, 16): every error text (it may quote the value sent) is
  replaced by a fixed one, keeping the JSON Pointer with e-mail addresses in it
  redacted; an id or time field holding an array or object (never valid, kept
  raw before) is replaced by ``"[removed]"`` and the row marked
  ``unreplayable``; a ``context.timezone`` that PostgreSQL does not know and a
  ``context.locale`` that is no language tag are removed. One UPDATE of
  ``failed_events`` (not of ``events``: stored events are never rewritten).
  Not undone by the downgrade (the removed values are gone).

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


ERROR_TEXT = "error text removed by the 2026-12-01 privacy migration: replay to re-validate"
EMAIL_SQL = "[A-Za-z0-9._%+-]+(@|%40)[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)*\\.[A-Za-z]{2,}"
_ID_FIELDS = ("anonymousId", "userId", "previousId", "timestamp", "originalTimestamp", "sentAt",
              "type")  # fmt: skip
# The language-tag rule of pipeline/scrub.py, in PostgreSQL's regular expression syntax.
LOCALE_SQL = (
    "^[A-Za-z]{2,3}(-[A-Za-z]{3}){0,3}(-[A-Za-z]{4})?(-([A-Za-z]{2}|[0-9]{3}))?"
    "(-([A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*(-[0-9A-WY-Za-wy-z](-[A-Za-z0-9]{2,8})+)*"
    "(-[Xx](-[A-Za-z0-9]{1,8})+)?$"
)


def _scrub_failed_events() -> None:
    op.execute(
        "UPDATE failed_events SET errors = COALESCE(("
        " SELECT jsonb_agg(jsonb_build_object("
        f"   'path', regexp_replace(e->>'path', '{EMAIL_SQL}', '[email]', 'g'),"
        f"   'message', '{ERROR_TEXT}') ORDER BY n)"
        " FROM jsonb_array_elements(CASE jsonb_typeof(errors) WHEN 'array' THEN errors"
        "      ELSE '[]'::jsonb END) WITH ORDINALITY AS t(e, n)), '[]'::jsonb)"
    )
    for name in _ID_FIELDS:
        op.execute(
            "UPDATE failed_events SET"
            f" raw = jsonb_set(raw, '{{{name}}}', '\"[removed]\"'),"
            " status = CASE WHEN status = 'pending' THEN 'unreplayable' ELSE status END"
            f" WHERE jsonb_typeof(raw->'{name}') IN ('array', 'object')"
        )
    op.execute(
        "UPDATE failed_events SET raw = jsonb_set(raw, '{context,sessionId}', '\"[removed]\"'),"
        " status = CASE WHEN status = 'pending' THEN 'unreplayable' ELSE status END"
        " WHERE jsonb_typeof(raw->'context'->'sessionId') IN ('array', 'object')"
    )
    op.execute(
        "UPDATE failed_events SET raw = jsonb_set(raw, '{context}', (raw->'context') - 'timezone')"
        " WHERE jsonb_typeof(raw->'context') = 'object' AND raw->'context' ? 'timezone'"
        " AND (jsonb_typeof(raw->'context'->'timezone') <> 'string'"
        "      OR raw->'context'->>'timezone' NOT IN (SELECT name FROM pg_timezone_names))"
    )
    op.execute(
        "UPDATE failed_events SET raw = jsonb_set(raw, '{context}', (raw->'context') - 'locale')"
        " WHERE jsonb_typeof(raw->'context') = 'object' AND raw->'context' ? 'locale'"
        " AND (jsonb_typeof(raw->'context'->'locale') <> 'string'"
        f"      OR replace(raw->'context'->>'locale', '_', '-') !~ '{LOCALE_SQL}')"
    )


def upgrade() -> None:
    op.execute(_PERSON_EVENTS.format(person=SURVIVOR))
    op.execute(_sessions_view(_SESSIONS_NEW))
    _scrub_failed_events()


def downgrade() -> None:
    op.execute(_sessions_view(_SESSIONS_OLD))
    op.execute(_PERSON_EVENTS.format(person="p_person_id"))
