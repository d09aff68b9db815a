"""Engine, sessions and migrations for SQLite (default) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from alembic.config import Config

from ringwatch.errors import ConfigError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SessionFactory = sessionmaker[Session]


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and enforced foreign keys."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"hub settings: database_url: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    return sa.create_engine(parsed, pool_pre_ping=True)


def _sqlite_engine(url: sa.URL) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


class WriteTurns:
    """First come, first served turns at writing, for the hub's two hot writers on SQLite
    (the ingest worker's batches and the dead-letter thread's rounds). SQLite has one
    writer at a time, and its busy handler (sleep, then retry) lets a thread that commits
    back to back starve a waiting one: under a flood of malformed payloads with valid
    events flowing, the dead-letter thread did not commit once in 10 s, and its messages
    waited in memory, unacked, in the broker's in-flight window (tools/fuzz_bench.py
    --flood). On PostgreSQL writers do not exclude each other: no
    turns (``enabled`` False)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._cond = threading.Condition()
        self._next = 0  # the next ticket to hand out
        self._serving = 0  # the ticket whose turn it is

    @classmethod
    def for_engine(cls, engine: Engine) -> WriteTurns:
        return cls(engine.dialect.name == "sqlite")

    def turn(self) -> AbstractContextManager[None]:
        """Hold the turn for one transaction (``with turns.turn(): ...``)."""
        return self._turn() if self.enabled else nullcontext()

    @contextmanager
    def _turn(self) -> Iterator[None]:
        with self._cond:
            ticket = self._next
            self._next += 1
            while ticket != self._serving:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._serving += 1
                self._cond.notify_all()


def session_factory(engine: Engine) -> SessionFactory:
    return sessionmaker(engine, expire_on_commit=False)


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with Alembic. On PostgreSQL the upgrade runs under
    an advisory lock (per schema) in its transaction: workers started together on a fresh
    database migrate one after the other, the later ones finding nothing to do."""
    from alembic import command

    from ringwatch.hub.workers import lock_keys

    config = _alembic_config()
    try:
        with engine.begin() as conn:
            lock_keys(conn, ["ringwatch:migrate"])
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
    except SQLAlchemyError as exc:
        raise ConfigError(f"database migration failed: {type(exc).__name__}: {exc}") from None


def _alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    """The newest migration shipped with this hub (what :func:`migrate` brings a schema to)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, "the hub ships at least one migration"
    return head


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
