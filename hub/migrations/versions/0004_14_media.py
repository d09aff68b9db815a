"""Evidence media: uploaded clips and snapshots, and the alert events they show (issue 14).

Revision ID: 0004_i14
Revises: 0003
Create Date: 2026-12-02 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_i14"
down_revision = "0004_i16"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "media_items",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("content_type", sa.String(length=64), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("camera_id", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=500), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media_items")),
    )
    op.create_index(
        "ix_media_items_site_started", "media_items", ["site_id", "started_at"], unique=False
    )
    op.create_index(
        op.f("ix_media_items_received_at"), "media_items", ["received_at"], unique=False
    )
    op.create_table(
        "media_events",
        sa.Column("media_id", sa.String(length=36), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["media_id"],
            ["media_items.id"],
            name=op.f("fk_media_events_media_id_media_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("media_id", "event_id", name=op.f("pk_media_events")),
    )
    op.create_index(op.f("ix_media_events_event_id"), "media_events", ["event_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_media_events_event_id"), table_name="media_events")
    op.drop_table("media_events")
    op.drop_index(op.f("ix_media_items_received_at"), table_name="media_items")
    op.drop_index("ix_media_items_site_started", table_name="media_items")
    op.drop_table("media_items")
