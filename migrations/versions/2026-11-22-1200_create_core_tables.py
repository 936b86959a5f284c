"""Create sites, events and failed_events.

Revision ID: 20261122_1200
Revises:
Create Date: 2026-11-22 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "20261122_1200"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sites",
        sa.Column("id", sa.Integer(), sa.Identity(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("write_key", sa.Text(), nullable=False),
        sa.Column("secret_key_hash", sa.Text()),
        sa.Column(
            "allowed_origins",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("consent_mode", sa.Text(), server_default=sa.text("'implied'"), nullable=False),
        sa.Column(
            "settings",
            postgresql.JSONB(),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("created_at", TZ, server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sites"),
        sa.UniqueConstraint("name", name="uq_sites_name"),
        sa.UniqueConstraint("write_key", name="uq_sites_write_key"),
    )
    op.create_table(
        "events",
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("event", sa.Text()),
        sa.Column("schema", sa.Text()),
        sa.Column("timestamp", TZ, nullable=False),
        sa.Column("original_timestamp", TZ),
        sa.Column("sent_at", TZ),
        sa.Column("received_at", TZ, nullable=False),
        sa.Column("anonymous_id", sa.Text()),
        sa.Column("user_id", sa.Text()),
        sa.Column("pii_key_id", sa.Text()),
        sa.Column("session_id", sa.Text()),
        sa.Column("page_url", sa.Text()),
        sa.Column("page_path", sa.Text()),
        sa.Column("page_title", sa.Text()),
        sa.Column("page_referrer", sa.Text()),
        sa.Column("page_search", sa.Text()),
        sa.Column("utm_source", sa.Text()),
        sa.Column("utm_medium", sa.Text()),
        sa.Column("utm_campaign", sa.Text()),
        sa.Column("utm_term", sa.Text()),
        sa.Column("utm_content", sa.Text()),
        sa.Column("library_name", sa.Text()),
        sa.Column("library_version", sa.Text()),
        sa.Column("user_agent", sa.Text()),
        sa.Column("locale", sa.Text()),
        sa.Column("timezone", sa.Text()),
        sa.Column(
            "context", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
        sa.Column(
            "properties",
            postgresql.JSONB(),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("traits", postgresql.JSONB()),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name="fk_events_site_id_sites"),
        sa.PrimaryKeyConstraint("site_id", "message_id", name="pk_events"),
    )
    op.create_index("ix_events_site_id_timestamp", "events", ["site_id", "timestamp"])
    op.create_table(
        "failed_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("received_at", TZ, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("errors", postgresql.JSONB(), nullable=False),
        sa.Column("schema", sa.Text()),
        sa.Column("collector_version", sa.Text(), nullable=False),
        sa.Column("raw", postgresql.JSONB(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("replayed_at", TZ),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name="fk_failed_events_site_id_sites"),
        sa.PrimaryKeyConstraint("id", name="pk_failed_events"),
        sa.UniqueConstraint("site_id", "message_id", name="uq_failed_events_site_id_message_id"),
    )
    op.create_index(
        "ix_failed_events_site_id_received_at", "failed_events", ["site_id", "received_at"]
    )


def downgrade() -> None:
    op.drop_table("failed_events")
    op.drop_table("events")
    op.drop_table("sites")
