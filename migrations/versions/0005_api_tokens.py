"""api tokens

Revision ID: 0005_api_tokens
Revises: 0004_auth
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_api_tokens"
down_revision = "0004_auth"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("role", sa.String(length=10), nullable=False),
        sa.Column("branch_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("role IN ('admin', 'staff')", name=op.f("ck_api_tokens_role")),
        sa.CheckConstraint("role = 'admin' OR branch_id IS NOT NULL", name=op.f("ck_api_tokens_staff_branch")),
        sa.ForeignKeyConstraint(["branch_id"], ["branches.id"], name=op.f("fk_api_tokens_branch_id_branches")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )


def downgrade() -> None:
    op.drop_table("api_tokens")
