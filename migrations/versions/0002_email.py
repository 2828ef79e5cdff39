"""email configuration and outbox

Revision ID: 0002_email
Revises: 0001_core
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002_email"
down_revision = "0001_core"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "email_configurations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=40), nullable=False),
        sa.Column("branch_id", sa.Integer(), nullable=True),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("security", sa.String(length=10), nullable=False),
        sa.Column("username", sa.String(length=255), nullable=True),
        sa.Column("password_encrypted", sa.Text(), nullable=True),
        sa.Column("from_address", sa.String(length=254), nullable=True),
        sa.Column("from_name", sa.String(length=120), nullable=True),
        sa.Column("recipients", JSON, nullable=False),
        sa.Column("notify_on_success", sa.Boolean(), nullable=False),
        sa.Column("notify_on_failure", sa.Boolean(), nullable=False),
        sa.Column("include_task_details", sa.Boolean(), nullable=False),
        sa.Column("include_error_log", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=120), nullable=True),
        sa.ForeignKeyConstraint(["branch_id"], ["branches.id"],
                                name=op.f("fk_email_configurations_branch_id_branches"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_configurations")),
        sa.UniqueConstraint("scope", name=op.f("uq_email_configurations_scope")),
    )
    op.create_index(op.f("ix_email_configurations_branch_id"), "email_configurations", ["branch_id"], unique=False)
    op.create_table(
        "email_notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("branch_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("recipients", JSON, nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.Column("body_html", sa.Text(), nullable=False),
        sa.Column("attachments", JSON, nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sender", sa.String(length=400), nullable=True),
        sa.Column("delivered_via", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["branch_id"], ["branches.id"],
                                name=op.f("fk_email_notifications_branch_id_branches"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["task_id"], ["background_tasks.id"],
                                name=op.f("fk_email_notifications_task_id_background_tasks"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_notifications")),
    )
    op.create_index("ix_email_notifications_due", "email_notifications", ["status", "next_attempt_at"], unique=False)
    op.create_index(op.f("ix_email_notifications_task_id"), "email_notifications", ["task_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_email_notifications_task_id"), table_name="email_notifications")
    op.drop_index("ix_email_notifications_due", table_name="email_notifications")
    op.drop_table("email_notifications")
    op.drop_index(op.f("ix_email_configurations_branch_id"), table_name="email_configurations")
    op.drop_table("email_configurations")
