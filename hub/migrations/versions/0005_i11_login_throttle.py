"""Login throttle shared by every hub worker (issue 11).

Revision ID: 0005_i11
Revises: 0004_i12
Create Date: 2026-12-02 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_i11"
down_revision = "0004_i12"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.DateTime(), nullable=False),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_throttle")),
    )
    op.create_index(
        op.f("ix_login_throttle_window_start"), "login_throttle", ["window_start"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_login_throttle_window_start"), table_name="login_throttle")
    op.drop_table("login_throttle")
