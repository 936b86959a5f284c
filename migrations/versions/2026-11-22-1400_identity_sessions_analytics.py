"""Enrichment columns, persons, identities, sessions, analytics views, reader role (issue 5).

Revision ID: 20261122_1400
Revises: 20261122_1300
Create Date: 2026-11-22 14:00:00
"""

from collections.abc import Sequence

revision: str = "20261122_1400"
down_revision: str | None = "20261122_1300"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
