"""Undeclared events, strict sites, structure (issue 9, items 6, 10, 17, 19, 23-26).

A ``track`` event no schema declares is now stored (``events.undeclared``)
unless the site is ``strict``. Sites that existed before keep what they did:
those that did not allow undeclared events become strict, and the old
``allow_undeclared_events`` setting is folded into ``strict``.

Revision ID: 20261201_1020
Revises: 20261201_1010
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261201_1020"
down_revision: str | None = "20261201_1010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A constant default: PostgreSQL adds the column without rewriting a partition.
    op.add_column(
        "events",
        sa.Column("undeclared", sa.Boolean(), nullable=False, server_default=sa.text("false")),
    )
    op.execute(
        "UPDATE sites SET settings = (settings - 'allow_undeclared_events')"
        " || jsonb_build_object('strict', true)"
        " WHERE NOT (settings ? 'strict')"
        " AND coalesce(settings->'allow_undeclared_events', 'false'::jsonb) <> 'true'::jsonb"
    )
    op.execute(
        "UPDATE sites SET settings = settings - 'allow_undeclared_events'"
        " WHERE settings ? 'allow_undeclared_events'"
    )


def downgrade() -> None:
    op.execute(
        "UPDATE sites SET settings = (settings - 'strict')"
        " || jsonb_build_object('allow_undeclared_events', true)"
        " WHERE coalesce(settings->'strict', 'false'::jsonb) <> 'true'::jsonb"
    )
    op.execute("UPDATE sites SET settings = settings - 'strict' WHERE settings ? 'strict'")
    op.drop_column("events", "undeclared")
