"""Alembic environment: runs on the connection handed over by ``ringwatch.hub.db.migrate``."""

from __future__ import annotations

from alembic import context

from ringwatch.hub.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `ringwatch hub migrate`, not the alembic command")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
