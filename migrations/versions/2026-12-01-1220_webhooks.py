"""Webhook endpoints and the transactional outbox (issue 10).

Revision ID: 20261201_1220
Revises: 20261201_1210
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "20261201_1220"
down_revision: str | None = "20261201_1210"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("site_id", sa.Integer(), sa.ForeignKey("sites.id"), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("secret_key_id", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.text("true")),
        sa.Column("created_at", TZ, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("site_id", "name"),
    )
    op.create_table(
        "webhook_outbox",
        sa.Column("site_id", sa.Integer(), sa.ForeignKey("sites.id"), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("data", postgresql.JSONB(), nullable=False),
        sa.Column("person_id", sa.BigInteger()),
        sa.Column("status", sa.Text(), nullable=False, server_default=sa.text("'pending'")),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("next_attempt_at", TZ, nullable=False, server_default=NOW),
        sa.Column("claim", sa.Text()),
        sa.Column("last_status", sa.Integer()),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", TZ, nullable=False, server_default=NOW),
        sa.Column("delivered_at", TZ),
        sa.PrimaryKeyConstraint("site_id", "id"),
        sa.UniqueConstraint("site_id", "endpoint", "message_id"),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'dead', 'cancelled', 'undeliverable')",
            name="status",
        ),
    )
    op.create_index(
        "ix_webhook_outbox_next_attempt_at",
        "webhook_outbox",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_webhook_outbox_site_id_person_id",
        "webhook_outbox",
        ["site_id", "person_id"],
        postgresql_where=sa.text("person_id IS NOT NULL"),
    )
    op.create_index(
        "ix_webhook_outbox_site_id_status_id", "webhook_outbox", ["site_id", "status", "id"]
    )
    op.create_index("ix_webhook_outbox_created_at", "webhook_outbox", ["created_at"])


def downgrade() -> None:
    op.drop_table("webhook_outbox")
    op.drop_table("webhook_endpoints")
