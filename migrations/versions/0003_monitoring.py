"""worker heartbeats and health checks

Revision ID: 0003_monitoring
Revises: 0002_email
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003_monitoring"
down_revision = "0002_email"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "worker_heartbeats",
        sa.Column("id", sa.String(length=120), nullable=False),
        sa.Column("host", sa.String(length=100), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("roles", JSON, nullable=False),
        sa.Column("queues", JSON, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("current_task_id", sa.Integer(), nullable=True),
        sa.Column("current_batch", sa.String(length=200), nullable=True),
        sa.Column("stopping", sa.Boolean(), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_worker_heartbeats")),
    )
    with op.batch_alter_table("worker_heartbeats", schema=None) as batch_op:
        batch_op.create_index("ix_worker_heartbeats_last_seen", ["last_seen"], unique=False)

    op.create_table(
        "health_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slot", sa.BigInteger(), nullable=True),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("worker_id", sa.String(length=120), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_health_runs")),
        sa.UniqueConstraint("slot", name=op.f("uq_health_runs_slot")),
    )
    with op.batch_alter_table("health_runs", schema=None) as batch_op:
        batch_op.create_index("ix_health_runs_started_at", ["started_at"], unique=False)

    op.create_table(
        "health_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", JSON, nullable=False),
        sa.Column("duration_ms", sa.Double(), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["health_runs.id"], name=op.f("fk_health_checks_run_id_health_runs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_health_checks")),
    )
    with op.batch_alter_table("health_checks", schema=None) as batch_op:
        batch_op.create_index("ix_health_checks_checked_at", ["checked_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_health_checks_run_id"), ["run_id"], unique=False)


def downgrade() -> None:
    op.drop_table("health_checks")
    op.drop_table("health_runs")
    op.drop_table("worker_heartbeats")
