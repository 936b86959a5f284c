"""Table definitions (SQLAlchemy Core). Migrations in ``migrations/`` create them;
``alembic check`` in CI keeps the two from drifting."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

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
    Column("settings", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
)

# One row per accepted message. (site_id, message_id) is the deduplication key:
# the writer inserts with ON CONFLICT DO NOTHING on it, so a retried message is
# stored once.
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
    PrimaryKeyConstraint("site_id", "message_id"),
    Index(None, "site_id", "timestamp"),
)

# A message that failed validation, kept with every reason so nothing is lost
# silently; ``footfall failed replay`` re-validates and stores it exactly once.
failed_events = Table(
    "failed_events",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
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
    UniqueConstraint("site_id", "message_id"),
    Index(None, "site_id", "received_at"),
)
