"""Registry change log: hub workers follow watch-list changes incrementally (issue 17).

Revision ID: 0004_i17
Revises: 0003
Create Date: 2026-12-02 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_i17"
down_revision = "0004_i14"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_changes",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_registry_changes")),
    )


def downgrade() -> None:
    op.drop_table("registry_changes")
