"""Segment definitions, window state, memberships (issue 10).

``segment_definitions``: one row per version of a segment (a new version on every
update; the current one has ``retired_at IS NULL``). ``segment_state``: one row per
evaluated person with the window state of every active rule and when the sweeper
must look at it again. ``segment_memberships``: entry/exit history, at most one open
row per person and segment. docs/segments.md describes them column by column.

Revision ID: 20261201_1210
Revises: 20261201_1200
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "20261201_1210"
down_revision: str | None = "20261201_1200"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "segment_definitions",
        sa.Column("site_id", sa.Integer(), sa.ForeignKey("sites.id"), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("rule", JSONB(), nullable=False),
        sa.Column("expose", sa.Text(), nullable=False, server_default=sa.text("'server'")),
        sa.Column("webhooks", sa.ARRAY(sa.Text()), nullable=False, server_default=sa.text("'{}'")),
        sa.Column("created_at", TZ, nullable=False, server_default=NOW),
        sa.Column("retired_at", TZ),
        sa.PrimaryKeyConstraint("site_id", "key", "version", name="pk_segment_definitions"),
        sa.CheckConstraint("expose IN ('browser', 'server')", name="ck_segment_definitions_expose"),
    )
    op.create_index(
        "ix_segment_definitions_site_id_key",
        "segment_definitions",
        ["site_id", "key"],
        unique=True,
        postgresql_where=sa.text("retired_at IS NULL"),
    )
    op.create_table(
        "segment_state",
        sa.Column("site_id", sa.Integer(), sa.ForeignKey("sites.id"), nullable=False),
        sa.Column("person_id", sa.BigInteger(), nullable=False),
        sa.Column("state", JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("due_at", TZ),
        sa.Column("updated_at", TZ, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("site_id", "person_id", name="pk_segment_state"),
    )
    op.create_index(
        "ix_segment_state_due_at",
        "segment_state",
        ["due_at"],
        postgresql_where=sa.text("due_at IS NOT NULL"),
    )
    op.create_table(
        "segment_memberships",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("site_id", sa.Integer(), sa.ForeignKey("sites.id"), nullable=False),
        sa.Column("person_id", sa.BigInteger(), nullable=False),
        sa.Column("segment_key", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("entered_at", TZ, nullable=False),
        sa.Column("exited_at", TZ),
        sa.Column("exit_reason", sa.Text()),
        sa.PrimaryKeyConstraint("site_id", "id", name="pk_segment_memberships"),
        sa.CheckConstraint(
            "exit_reason IN ('rule', 'merged', 'deleted', 'consent')",
            name="ck_segment_memberships_exit_reason",
        ),
    )
    op.create_index(
        "ix_segment_memberships_site_id_person_id_segment_key",
        "segment_memberships",
        ["site_id", "person_id", "segment_key"],
        unique=True,
        postgresql_where=sa.text("exited_at IS NULL"),
    )
    op.create_index(
        "ix_segment_memberships_site_id_segment_key_entered_at",
        "segment_memberships",
        ["site_id", "segment_key", "entered_at"],
    )


def downgrade() -> None:
    op.drop_table("segment_memberships")
    op.drop_table("segment_state")
    op.drop_table("segment_definitions")
