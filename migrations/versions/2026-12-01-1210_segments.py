"""Segment definitions, window state, memberships (issue 10).

Revision ID: 20261201_1210
Revises: 20261201_1200
Create Date: 2026-12-01
"""

from collections.abc import Sequence

revision: str = "20261201_1210"
down_revision: str | None = "20261201_1200"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
