"""Storage at scale: events partitioned by event time, Citus-ready keys, reader role (issue 11).

Revision ID: 20261201_1100
Revises: 20261201_1020
Create Date: 2026-12-01
"""

from collections.abc import Sequence

revision: str = "20261201_1100"
down_revision: str | None = "20261201_1020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
