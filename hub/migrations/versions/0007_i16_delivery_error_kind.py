"""Deliveries: why the last attempt failed, as a word the console translates
(``webhooks.ERROR_KINDS``), beside the raw error kept for the technician.

Revision ID: 0007_i16
Revises: 0006_i11
Create Date: 2026-12-07 15:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_i16"
down_revision = "0006_i11"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("last_error_kind", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("last_error_kind")
