"""Range-partition events by time, dedup across partitions (issue 6).

Revision ID: 20261122_1500
Revises: 20261122_1400
Create Date: 2026-11-22 15:00:00
"""

from collections.abc import Sequence

revision: str = "20261122_1500"
down_revision: str | None = "20261122_1400"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
