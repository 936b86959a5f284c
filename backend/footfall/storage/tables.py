"""Table definitions (SQLAlchemy Core). Migrations in ``migrations/`` create them;
``alembic check`` in CI keeps the two from drifting."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, CIDR, JSONB

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

NOW = text("now()")

sites = Table(
    "sites",
    metadata,
    Column("id", Integer, Identity(), primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("write_key", Text, nullable=False, unique=True),
    Column("secret_key_hash", Text),
    Column("allowed_origins", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("consent_mode", Text, nullable=False, server_default=text("'implied'")),
    CheckConstraint("consent_mode IN ('implied', 'anonymous', 'required')", name="consent_mode"),
    Column("settings", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
)

# One row per accepted message, range-partitioned by month of ``timestamp``
# (when the event happened), so time-range queries read only their months
# (storage/partitions.py creates the partitions; retention drops whole ones).
# A unique index of a partitioned table must contain the partition key, so
# (site_id, message_id) cannot be unique here across months: ``event_ids``
# below is the deduplication key, and the primary key only identifies a row.
events = Table(
    "events",
    metadata,
    Column("site_id", Integer, ForeignKey("sites.id"), nullable=False),
    Column("message_id", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("event", Text),
    Column("schema", Text),
    Column("timestamp", DateTime(timezone=True), nullable=False),
    Column("original_timestamp", DateTime(timezone=True)),
    Column("sent_at", DateTime(timezone=True)),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("anonymous_id", Text),
    Column("user_id", Text),
    Column("pii_key_id", Text),
    # Privacy (docs/privacy.md): never the IP, at most its /24 or /48; the daily
    # cookieless visitor hash of messages stored without identifiers.
    Column("ip_network", CIDR),
    Column("visitor_hash", Text),
    Column("session_id", Text),
    Column("page_url", Text),
    Column("page_path", Text),
    Column("page_title", Text),
    Column("page_referrer", Text),
    Column("page_search", Text),
    Column("utm_source", Text),
    Column("utm_medium", Text),
    Column("utm_campaign", Text),
    Column("utm_term", Text),
    Column("utm_content", Text),
    Column("library_name", Text),
    Column("library_version", Text),
    Column("user_agent", Text),
    Column("locale", Text),
    Column("timezone", Text),
    Column("context", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("properties", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("traits", JSONB),
    # Device enrichment (pipeline/device.py), from the User-Agent and client hints.
    Column("device_type", Text),
    Column("browser_name", Text),
    Column("browser_version", Text),
    Column("os_name", Text),
    Column("os_version", Text),
    Column("device_brand", Text),
    Column("device_model", Text),
    # Geo enrichment (pipeline/geo.py), from the IP (which is not stored).
    Column("geo_country", Text),
    Column("geo_region", Text),
    Column("geo_city", Text),
    Column("geo_latitude", Double),
    Column("geo_longitude", Double),
    Column("geo_timezone", Text),
    Column("geo_asn", BigInteger),
    Column("geo_asn_org", Text),
    # A track event without a schema, stored because the site is not ``strict``.
    Column("undeclared", Boolean, nullable=False, server_default=text("false")),
    PrimaryKeyConstraint("site_id", "message_id", "timestamp"),
    Index(None, "site_id", "timestamp"),
    # "Events of one person in a time range" (analytics.person_events).
    Index(None, "site_id", "anonymous_id", "timestamp"),
    Index(None, "site_id", "user_id", "timestamp", postgresql_where=text("user_id IS NOT NULL")),
    Index(
        None,
        "site_id",
        "visitor_hash",
        "received_at",
        postgresql_where=text("visitor_hash IS NOT NULL"),
    ),
    postgresql_partition_by='RANGE ("timestamp")',
)

# The deduplication key of ``events``, one row per stored message, not
# partitioned so the key is unique across every month. The writer inserts here
# first (ON CONFLICT DO NOTHING RETURNING) and then only the new rows into
# ``events``; ``timestamp`` is the stored copy's (so it names the partition the
# event went to), and lets retention delete the keys of dropped partitions.
event_ids = Table(
    "event_ids",
    metadata,
    Column("site_id", Integer, nullable=False),
    Column("message_id", Text, nullable=False),
    Column("timestamp", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("site_id", "message_id"),
    Index(None, "timestamp"),
)

# A message that failed validation, kept with every reason so nothing is lost
# silently; ``footfall failed replay`` re-validates and stores it exactly once.
failed_events = Table(
    "failed_events",
    metadata,
    Column("id", BigInteger, Identity(), nullable=False),
    Column("site_id", Integer, ForeignKey("sites.id"), nullable=False),
    Column("message_id", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=False),
    Column("errors", JSONB, nullable=False),
    Column("schema", Text),
    Column("collector_version", Text, nullable=False),
    Column("raw", JSONB, nullable=False),
    Column("status", Text, nullable=False, server_default=text("'pending'")),
    Column("replayed_at", DateTime(timezone=True)),
    PrimaryKeyConstraint("site_id", "id"),
    UniqueConstraint("site_id", "message_id"),
    Index(None, "site_id", "received_at"),
)


# The consent ledger (docs/privacy.md): every decision, appended, never updated
# (a trigger refuses UPDATE). The latest ``decided_at`` per id wins; ids are
# stored as in ``events`` (anonymous id as sent, user id hashed with pii_key_id).
consent_log = Table(
    "consent_log",
    metadata,
    Column("id", BigInteger, Identity(), nullable=False),
    Column("site_id", Integer, ForeignKey("sites.id"), nullable=False),
    Column("anonymous_id", Text),
    Column("user_id", Text),
    Column("pii_key_id", Text),
    Column("analytics", Boolean),
    Column("granted", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("denied", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("source", Text, nullable=False),
    Column("policy_version", Text),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("message_id", Text),
    CheckConstraint("source IN ('message', 'api', 'admin')", name="source"),
    CheckConstraint("anonymous_id IS NOT NULL OR user_id IS NOT NULL", name="subject"),
    PrimaryKeyConstraint("site_id", "id"),
    UniqueConstraint("site_id", "message_id"),
    Index(None, "site_id", "anonymous_id", "decided_at"),
    Index(None, "site_id", "user_id", "decided_at"),
)

# Secret random salts of the cookieless visitor hash, one per UTC day; only
# today's and yesterday's exist (storage/salts.py deletes older ones).
visitor_salts = Table(
    "visitor_salts",
    metadata,
    Column("day", Date, primary_key=True),
    Column("salt", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
)

# One row per erasure, without PII: a keyed hash of the subject (not equal to
# anything stored elsewhere) and how many rows of each table went.
erasure_log = Table(
    "erasure_log",
    metadata,
    Column("id", BigInteger, Identity(), nullable=False),
    Column("site_id", Integer, ForeignKey("sites.id"), nullable=False),
    Column("subject_kind", Text, nullable=False),
    Column("subject_hash", Text, nullable=False),
    Column("pii_key_id", Text, nullable=False),
    Column("counts", JSONB, nullable=False),
    Column("suppressed", Boolean, nullable=False),
    Column("requested_via", Text, nullable=False),
    Column("erased_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    PrimaryKeyConstraint("site_id", "id"),
)

# Erased ids whose future messages are refused (reason "erased"): keyed hashes
# with their own domain, one row per key so a rotation keeps them matching.
privacy_suppressions = Table(
    "privacy_suppressions",
    metadata,
    Column("site_id", Integer, ForeignKey("sites.id"), nullable=False),
    Column("subject_hash", Text, nullable=False),
    Column("pii_key_id", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    PrimaryKeyConstraint("site_id", "subject_hash"),
)


# --- identities (storage/identity.py, docs/data-model.md) ------------------------------

# A person: what the ids of one human resolve to. ``merged_into`` points straight
# at the surviving person (kept flat: never at a person that is merged itself).
# Keys and references carry site_id (persons never span sites; Citus-ready:
# docs/operations.md).
persons = Table(
    "persons",
    metadata,
    Column("id", BigInteger, Identity(), nullable=False),
    Column("site_id", Integer, ForeignKey("sites.id"), nullable=False),
    Column("is_identified", Boolean, nullable=False, server_default=text("false")),
    Column("merged_into", BigInteger),
    Column("merged_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    PrimaryKeyConstraint("site_id", "id"),
    ForeignKeyConstraint(
        ["site_id", "merged_into"],
        ["persons.site_id", "persons.id"],
        name="fk_persons_merged_into_persons",
    ),
    # By id alone too (ids are unique across sites): analytics.person_events.
    Index(None, "id"),
    Index(None, "merged_into", postgresql_where=text("merged_into IS NOT NULL")),
)

# An anonymous id (as stored in events.anonymous_id) or a hashed user id, and the
# person it was first attached to. Never re-pointed: merges move persons.
identities = Table(
    "identities",
    metadata,
    Column("site_id", Integer, ForeignKey("sites.id"), nullable=False),
    Column("kind", Text, nullable=False),
    Column("value", Text, nullable=False),
    Column("person_id", BigInteger, nullable=False),
    Column("message_id", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    PrimaryKeyConstraint("site_id", "kind", "value"),
    CheckConstraint("kind IN ('anonymous', 'user')", name="kind"),
    ForeignKeyConstraint(
        ["site_id", "person_id"],
        ["persons.site_id", "persons.id"],
        name="fk_identities_person_id_persons",
    ),
    Index(None, "site_id", "person_id"),
)

# The merge history: one row per merged person (so a merge is recorded once).
person_merges = Table(
    "person_merges",
    metadata,
    Column("id", BigInteger, Identity(), nullable=False),
    Column("site_id", Integer, ForeignKey("sites.id"), nullable=False),
    Column("from_person", BigInteger, nullable=False),
    Column("into_person", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Column("message_id", Text),
    Column("merged_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    PrimaryKeyConstraint("site_id", "id"),
    UniqueConstraint("site_id", "from_person"),
    CheckConstraint("reason IN ('identify', 'alias')", name="reason"),
    ForeignKeyConstraint(
        ["site_id", "from_person"],
        ["persons.site_id", "persons.id"],
        name="fk_person_merges_from_person_persons",
    ),
    ForeignKeyConstraint(
        ["site_id", "into_person"],
        ["persons.site_id", "persons.id"],
        name="fk_person_merges_into_person_persons",
    ),
    Index(None, "site_id", "into_person"),
)

# --- sessions (storage/sessions.py, docs/data-model.md) --------------------------------

sessions = Table(
    "sessions",
    metadata,
    Column("site_id", Integer, ForeignKey("sites.id"), nullable=False),
    Column("session_id", Text, nullable=False),
    Column("idle_key", Text),  # set for sessions made by the 30-minute idle rule
    Column("anonymous_id", Text),
    Column("user_id", Text),
    Column("first_event_at", DateTime(timezone=True), nullable=False),
    Column("first_message_id", Text, nullable=False),
    Column("last_event_at", DateTime(timezone=True), nullable=False),
    Column("last_message_id", Text, nullable=False),
    Column("duration_ms", BigInteger, nullable=False, server_default=text("0")),
    Column("event_count", Integer, nullable=False, server_default=text("0")),
    Column("page_count", Integer, nullable=False, server_default=text("0")),
    Column("click_count", Integer, nullable=False, server_default=text("0")),
    Column("hover_count", Integer, nullable=False, server_default=text("0")),
    Column("hover_dwell_ms", BigInteger, nullable=False, server_default=text("0")),
    Column("video_play_count", Integer, nullable=False, server_default=text("0")),
    Column("video_complete_count", Integer, nullable=False, server_default=text("0")),
    Column("max_scroll_percent", Integer, nullable=False, server_default=text("0")),
    Column("engaged_ms", BigInteger, nullable=False, server_default=text("0")),
    Column("entry_at", DateTime(timezone=True), nullable=False),
    Column("entry_message_id", Text, nullable=False),
    Column("entry_page", Text),
    Column("referrer", Text),
    Column("utm_source", Text),
    Column("utm_medium", Text),
    Column("utm_campaign", Text),
    Column("utm_term", Text),
    Column("utm_content", Text),
    Column("exit_at", DateTime(timezone=True), nullable=False),
    Column("exit_message_id", Text, nullable=False),
    Column("exit_page", Text),
    Column("device_type", Text),
    Column("browser_name", Text),
    Column("os_name", Text),
    Column("geo_country", Text),
    Column("geo_region", Text),
    Column("geo_city", Text),
    Column("timezone", Text, nullable=False, server_default=text("'UTC'")),
    Column("utc_offset_min", Integer, nullable=False, server_default=text("0")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    PrimaryKeyConstraint("site_id", "session_id"),
    # "Sessions per day per site".
    Index(None, "site_id", "first_event_at"),
    # The idle rule's look-up of an actor's recent sessions.
    Index(
        None,
        "site_id",
        "idle_key",
        "last_event_at",
        postgresql_where=text("idle_key IS NOT NULL"),
    ),
)

# --- live profiles (storage/profiles.py, docs/data-model.md) ---------------------------

_PROFILE_COUNTERS = (
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

# One row per canonical person (no foreign key to persons: ids resolve through merges).
person_profiles = Table(
    "person_profiles",
    metadata,
    Column("site_id", Integer, ForeignKey("sites.id"), nullable=False),
    Column("person_id", BigInteger, nullable=False),
    *[
        Column(name, BigInteger, nullable=False, server_default=text("0"))
        for name in _PROFILE_COUNTERS
    ],
    Column("max_scroll_percent", Integer, nullable=False, server_default=text("0")),
    Column("sessions", BigInteger, nullable=False, server_default=text("0")),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("first_message_id", Text, nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Column("last_message_id", Text, nullable=False),
    Column("last_page_at", DateTime(timezone=True)),
    Column("last_page_message_id", Text),
    Column("last_page_path", Text),
    Column("last_page_url", Text),
    Column("first_touch_at", DateTime(timezone=True), nullable=False),
    Column("first_touch_message_id", Text, nullable=False),
    Column("first_touch_page", Text),
    Column("referrer", Text),
    Column("utm_source", Text),
    Column("utm_medium", Text),
    Column("utm_campaign", Text),
    Column("utm_term", Text),
    Column("utm_content", Text),
    Column("device_at", DateTime(timezone=True)),
    Column("device_message_id", Text),
    Column("device_type", Text),
    Column("country_at", DateTime(timezone=True)),
    Column("country_message_id", Text),
    Column("country", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    PrimaryKeyConstraint("site_id", "person_id"),
    # analytics.person_features is queried by person_id alone.
    Index(None, "person_id"),
)

# A person's part of one session (one row per person and session).
person_sessions = Table(
    "person_sessions",
    metadata,
    Column("site_id", Integer, ForeignKey("sites.id"), nullable=False),
    Column("person_id", BigInteger, nullable=False),
    Column("session_id", Text, nullable=False),
    Column("first_at", DateTime(timezone=True), nullable=False),
    Column("first_message_id", Text, nullable=False),
    Column("last_at", DateTime(timezone=True), nullable=False),
    Column("max_scroll_percent", Integer, nullable=False, server_default=text("0")),
    Column("device_type", Text),
    Column("utc_offset_min", Integer, nullable=False, server_default=text("0")),
    PrimaryKeyConstraint("site_id", "person_id", "session_id"),
)

# --- segments (storage/segments.py, docs/segments.md) ----------------------------------

# One row per version of a segment; the current version has retired_at NULL.
segment_definitions = Table(
    "segment_definitions",
    metadata,
    Column("site_id", Integer, ForeignKey("sites.id"), nullable=False),
    Column("key", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("rule", JSONB, nullable=False),
    Column("expose", Text, nullable=False, server_default=text("'server'")),
    Column("webhooks", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("retired_at", DateTime(timezone=True)),
    PrimaryKeyConstraint("site_id", "key", "version"),
    CheckConstraint("expose IN ('browser', 'server')", name="expose"),
    Index(None, "site_id", "key", unique=True, postgresql_where=text("retired_at IS NULL")),
)

# A person's window state for every active rule (pipeline/segments/evaluate.py) and
# when the sweeper must evaluate them again without a new event. The row is also
# the person's lock: the writer and the sweeper both hold it while evaluating.
segment_state = Table(
    "segment_state",
    metadata,
    Column("site_id", Integer, ForeignKey("sites.id"), nullable=False),
    Column("person_id", BigInteger, nullable=False),
    Column("state", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("due_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    PrimaryKeyConstraint("site_id", "person_id"),
    Index(None, "due_at", postgresql_where=text("due_at IS NOT NULL")),
)

# Entry/exit history; at most one open row (exited_at NULL) per person and segment.
segment_memberships = Table(
    "segment_memberships",
    metadata,
    Column("id", BigInteger, Identity(), nullable=False),
    Column("site_id", Integer, ForeignKey("sites.id"), nullable=False),
    Column("person_id", BigInteger, nullable=False),
    Column("segment_key", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("entered_at", DateTime(timezone=True), nullable=False),
    Column("exited_at", DateTime(timezone=True)),
    Column("exit_reason", Text),
    PrimaryKeyConstraint("site_id", "id"),
    CheckConstraint("exit_reason IN ('rule', 'merged', 'deleted', 'consent')", name="exit_reason"),
    Index(
        None,
        "site_id",
        "person_id",
        "segment_key",
        unique=True,
        postgresql_where=text("exited_at IS NULL"),
    ),
    Index(None, "site_id", "segment_key", "entered_at"),
)

# --- webhooks (storage/webhooks.py, docs/webhooks.md) -----------------------------------

# Where a site's webhooks go. The signing secret must be recoverable to sign, so it
# is sealed (AES-GCM, key derived from the PII key named by ``secret_key_id``),
# never stored or logged in clear.
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("site_id", Integer, ForeignKey("sites.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("secret_sealed", LargeBinary, nullable=False),
    Column("secret_key_id", Text, nullable=False),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    PrimaryKeyConstraint("site_id", "name"),
)

# The transactional outbox: one row per (message, endpoint), written in the
# transaction that decided to send it; the dispatcher claims due rows with
# FOR UPDATE SKIP LOCKED and a lease (``next_attempt_at`` pushed ahead by the
# claim), so a collector killed mid-flight leaves rows that fall due again.
# No foreign key to webhook_endpoints: a name unknown at enqueue is kept, as
# ``undeliverable``, so a misconfiguration is visible and nothing is lost.
webhook_outbox = Table(
    "webhook_outbox",
    metadata,
    Column("site_id", Integer, ForeignKey("sites.id"), nullable=False),
    Column("id", BigInteger, Identity(), nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("message_id", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("data", JSONB, nullable=False),
    Column("person_id", BigInteger),
    Column("status", Text, nullable=False, server_default=text("'pending'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("claim", Text),
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("delivered_at", DateTime(timezone=True)),
    PrimaryKeyConstraint("site_id", "id"),
    UniqueConstraint("site_id", "endpoint", "message_id"),
    CheckConstraint(
        "status IN ('pending', 'delivered', 'dead', 'cancelled', 'undeliverable')",
        name="status",
    ),
    # The dispatcher's "what is due" (all sites at once).
    Index(None, "next_attempt_at", postgresql_where=text("status = 'pending'")),
    Index(None, "site_id", "person_id", postgresql_where=text("person_id IS NOT NULL")),
    Index(None, "site_id", "status", "id"),
    Index(None, "created_at"),
)
