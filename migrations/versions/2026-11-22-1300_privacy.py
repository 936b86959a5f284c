"""Privacy: consent ledger, visitor salts, erasure log, IP network (issue 4).

Revision ID: 20261122_1300
Revises: 20261122_1200
Create Date: 2026-11-22 13:00:00
"""

from collections.abc import Sequence

revision: str = "20261122_1300"
down_revision: str | None = "20261122_1200"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
