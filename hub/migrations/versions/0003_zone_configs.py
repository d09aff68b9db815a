"""Zone editor: per-camera zone configs (hub source of truth) and their pushes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "camera_zone_configs",
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("camera_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("zones", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("applied_zones", sa.JSON(), nullable=True),
        sa.Column("applied_version", sa.Integer(), nullable=True),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("pushed_at", sa.DateTime(), nullable=True),
        sa.Column("pushes", sa.Integer(), nullable=False),
        sa.Column("answered_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["site_id", "camera_id"],
            ["cameras.site_id", "cameras.id"],
            name=op.f("fk_camera_zone_configs_site_id_cameras"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("site_id", "camera_id", name=op.f("pk_camera_zone_configs")),
    )
    op.create_table(
        "zone_pushes",
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("camera_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("zones", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("answered_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_zone_pushes")),
    )
    with op.batch_alter_table("zone_pushes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_zone_pushes_camera", ["site_id", "camera_id", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("zone_pushes", schema=None) as batch_op:
        batch_op.drop_index("ix_zone_pushes_camera")
    op.drop_table("zone_pushes")
    op.drop_table("camera_zone_configs")
