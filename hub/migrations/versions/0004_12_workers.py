"""City scale: hub workers' heartbeats, leases for single-worker jobs, edge clock skew.

Revision ID: 0004_i12
Revises: 0003
Create Date: 2026-12-02 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_i12"
down_revision = "0004_i13"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hub_workers",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("instance", sa.String(length=120), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("events_per_s", sa.Float(), nullable=False),
        sa.Column("lag_s", sa.Float(), nullable=True),
        sa.Column("queued", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_hub_workers")),
    )
    op.create_table(
        "hub_leases",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=True),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.Column("done_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_hub_leases")),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("clock_skew_s", sa.Float(), nullable=True))
    # Retention goes by the hub's receive time (an edge's clock may be off).
    op.create_index(op.f("ix_events_received_at"), "events", ["received_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_events_received_at"), table_name="events")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("clock_skew_s")
    op.drop_table("hub_leases")
    op.drop_table("hub_workers")
