"""worker heartbeats and health checks

Revision ID: 0003_monitoring
Revises: 0002_email
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0003_monitoring"
down_revision = "0002_email"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
