"""Privacy: consent ledger, visitor salts, erasure log, suppressions, IP network (issue 4).

Revision ID: 20261122_1300
Revises: 20261122_1200
Create Date: 2026-11-22 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "20261122_1300"
down_revision: str | None = "20261122_1200"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
NOW = sa.text("now()")


def upgrade() -> None:
    op.create_check_constraint(
        "ck_sites_consent_mode", "sites", "consent_mode IN ('implied', 'anonymous', 'required')"
    )
    op.add_column("events", sa.Column("ip_network", postgresql.CIDR()))
    op.add_column("events", sa.Column("visitor_hash", sa.Text()))
    op.create_index(
        "ix_events_site_id_visitor_hash_received_at",
        "events",
        ["site_id", "visitor_hash", "received_at"],
        postgresql_where=sa.text("visitor_hash IS NOT NULL"),
    )

    op.create_table(
        "consent_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("anonymous_id", sa.Text()),
        sa.Column("user_id", sa.Text()),
        sa.Column("pii_key_id", sa.Text()),
        sa.Column("analytics", sa.Boolean()),
        sa.Column(
            "granted", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column(
            "denied", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("policy_version", sa.Text()),
        sa.Column("decided_at", TZ, nullable=False),
        sa.Column("recorded_at", TZ, server_default=NOW, nullable=False),
        sa.Column("message_id", sa.Text()),
        sa.CheckConstraint("source IN ('message', 'api', 'admin')", name="ck_consent_log_source"),
        sa.CheckConstraint(
            "anonymous_id IS NOT NULL OR user_id IS NOT NULL", name="ck_consent_log_subject"
        ),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name="fk_consent_log_site_id_sites"),
        sa.PrimaryKeyConstraint("id", name="pk_consent_log"),
        sa.UniqueConstraint("site_id", "message_id", name="uq_consent_log_site_id_message_id"),
    )
    op.create_index(
        "ix_consent_log_site_id_anonymous_id_decided_at",
        "consent_log",
        ["site_id", "anonymous_id", "decided_at"],
    )
    op.create_index(
        "ix_consent_log_site_id_user_id_decided_at",
        "consent_log",
        ["site_id", "user_id", "decided_at"],
    )
    # Append-only: a decision is never rewritten (erasure and retention may delete).
    op.execute(
        "CREATE FUNCTION consent_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN RAISE EXCEPTION 'consent_log is append-only'; END $$"
    )
    op.execute(
        "CREATE TRIGGER consent_log_append_only BEFORE UPDATE ON consent_log"
        " FOR EACH ROW EXECUTE FUNCTION consent_log_append_only()"
    )

    op.create_table(
        "visitor_salts",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("salt", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TZ, server_default=NOW, nullable=False),
        sa.PrimaryKeyConstraint("day", name="pk_visitor_salts"),
    )

    op.create_table(
        "erasure_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("subject_kind", sa.Text(), nullable=False),
        sa.Column("subject_hash", sa.Text(), nullable=False),
        sa.Column("pii_key_id", sa.Text(), nullable=False),
        sa.Column("counts", postgresql.JSONB(), nullable=False),
        sa.Column("suppressed", sa.Boolean(), nullable=False),
        sa.Column("requested_via", sa.Text(), nullable=False),
        sa.Column("erased_at", TZ, server_default=NOW, nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name="fk_erasure_log_site_id_sites"),
        sa.PrimaryKeyConstraint("id", name="pk_erasure_log"),
    )

    op.create_table(
        "privacy_suppressions",
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("subject_hash", sa.Text(), nullable=False),
        sa.Column("pii_key_id", sa.Text(), nullable=False),
        sa.Column("created_at", TZ, server_default=NOW, nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name="fk_privacy_suppressions_site_id_sites"
        ),
        sa.PrimaryKeyConstraint("site_id", "subject_hash", name="pk_privacy_suppressions"),
    )


def downgrade() -> None:
    op.drop_table("privacy_suppressions")
    op.drop_table("erasure_log")
    op.drop_table("visitor_salts")
    op.execute("DROP TRIGGER consent_log_append_only ON consent_log")
    op.execute("DROP FUNCTION consent_log_append_only()")
    op.drop_table("consent_log")
    op.drop_index("ix_events_site_id_visitor_hash_received_at", table_name="events")
    op.drop_column("events", "visitor_hash")
    op.drop_column("events", "ip_network")
    op.drop_constraint("ck_sites_consent_mode", "sites", type_="check")
