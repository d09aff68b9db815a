"""Duty console: site time zones, per-user language, suppressions after a rejected match.

Revision ID: 0004_i13
Revises: 0003
Create Date: 2026-12-02 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_i13"
down_revision = "0004_i17"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sites") as batch:
        batch.add_column(
            sa.Column(
                "time_zone", sa.String(length=64), server_default="Asia/Shanghai", nullable=False
            )
        )
    op.create_table(
        "console_preferences",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_console_preferences_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_console_preferences")),
    )
    op.create_table(
        "match_suppressions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("camera_id", sa.String(length=64), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("until", sa.DateTime(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_match_suppressions")),
    )
    op.create_index(
        "ix_match_suppressions_key",
        "match_suppressions",
        ["site_id", "camera_id", "person_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_match_suppressions_key", table_name="match_suppressions")
    op.drop_table("match_suppressions")
    op.drop_table("console_preferences")
    with op.batch_alter_table("sites") as batch:
        batch.drop_column("time_zone")
