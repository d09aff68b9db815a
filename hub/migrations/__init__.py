"""Alembic migrations of the hub schema (run by ``ringwatch hub migrate``)."""
