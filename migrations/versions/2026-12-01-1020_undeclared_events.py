"""Undeclared events, strict sites, structure (issue 9, items 6, 10, 17, 19, 23-26).

Revision ID: 20261201_1020
Revises: 20261201_1010
Create Date: 2026-12-01
"""

from collections.abc import Sequence

revision: str = "20261201_1020"
down_revision: str | None = "20261201_1010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
