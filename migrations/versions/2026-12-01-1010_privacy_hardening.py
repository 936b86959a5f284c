"""Privacy hardening (issue 9, items 13-21).

Revision ID: 20261201_1010
Revises: 20261122_1500
Create Date: 2026-12-01
"""

from collections.abc import Sequence

revision: str = "20261201_1010"
down_revision: str | None = "20261122_1500"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
