"""api tokens

Revision ID: 0005_api_tokens
Revises: 0004_auth
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0005_api_tokens"
down_revision = "0004_auth"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
