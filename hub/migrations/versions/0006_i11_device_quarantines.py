"""Device quarantines: logins shut out at the broker after a flood of malformed messages
(issue 11, hub/quarantine.py).

Revision ID: 0006_i11
Revises: 0005_i11
Create Date: 2026-12-03 15:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_i11"
down_revision = "0005_i11"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_quarantines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("login", sa.String(length=64), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("until", sa.DateTime(), nullable=False),
        sa.Column("bad_count", sa.Integer(), nullable=False),
        sa.Column("window_s", sa.Integer(), nullable=False),
        sa.Column("reasons", sa.String(length=500), nullable=False),
        sa.Column("broker_ban", sa.Boolean(), nullable=False),
        sa.Column("broker_client", sa.String(length=16), nullable=True),
        sa.Column("broker_error", sa.String(length=500), nullable=True),
        sa.Column("lifted_at", sa.DateTime(), nullable=True),
        sa.Column("lifted_by", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_quarantines")),
    )
    for column in ("login", "started_at", "lifted_at"):
        op.create_index(
            op.f(f"ix_device_quarantines_{column}"), "device_quarantines", [column], unique=False
        )


def downgrade() -> None:
    for column in ("login", "started_at", "lifted_at"):
        op.drop_index(op.f(f"ix_device_quarantines_{column}"), table_name="device_quarantines")
    op.drop_table("device_quarantines")
