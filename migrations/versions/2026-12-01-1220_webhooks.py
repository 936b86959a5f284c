"""Webhook endpoints and the transactional outbox (issue 10).

Revision ID: 20261201_1220
Revises: 20261201_1210
Create Date: 2026-12-01
"""

from collections.abc import Sequence

revision: str = "20261201_1220"
down_revision: str | None = "20261201_1210"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
