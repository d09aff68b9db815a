"""Confirmed live shots as templates: where such a template came from, and the consent.

Revision ID: 0004_i16
Revises: 0003
Create Date: 2026-12-02 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_i16"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "template_sources",
        sa.Column("template_id", sa.Integer(), nullable=False),
        sa.Column("sighting_id", sa.Integer(), nullable=False),
        sa.Column("consent", sa.Text(), nullable=False),
        sa.Column("confirmed_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["templates.id"],
            name=op.f("fk_template_sources_template_id_templates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("template_id", name=op.f("pk_template_sources")),
    )
    with op.batch_alter_table("template_sources", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_template_sources_sighting_id"), ["sighting_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("template_sources", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_template_sources_sighting_id"))
    op.drop_table("template_sources")
