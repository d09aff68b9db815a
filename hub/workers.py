"""Several hub workers on one PostgreSQL: locks, claims, leases and the workers' heartbeats.

- :func:`lock_keys`: transaction-scoped advisory locks (``pg_advisory_xact_lock``), one per
  key, taken in sorted order (so two workers never deadlock on them), keyed by
  ``current_schema()`` + key (so parallel test schemas on one server never share a lock).
  Incidents take one per correlation key before looking for the open incident to continue:
  two events of one person/site landing on two workers in the same millisecond make one
  incident. Migrations and the inventory load take one too (workers start together).
- :func:`claim_lease`: a lease with an expiry in ``hub_leases`` (one holder at a time; a
  holder that dies loses it when it expires), for work that keeps state in memory between
  rounds (the technical watch).
- :func:`claim_round`: "has this periodic job been done in the last ``every``?" claimed with
  ``FOR UPDATE SKIP LOCKED`` on its row, in the transaction that does the job (retention):
  exactly one worker per period; a claimer that dies rolls back, so another takes it.
- :class:`WorkerBeat`: each worker's row in ``hub_workers`` (name, started, last heartbeat,
  lag, events/s), written every few seconds, shown by ``/health``.
- :class:`SqliteWorkerLock`: SQLite serves one process; a second ``hub serve`` on the same
  file is refused with a clear message (an ``flock`` the kernel drops when the holder dies).

On SQLite the advisory locks are no-ops (one process, and SQLite serialises writers).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import Float, Integer, String
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from ringwatch.errors import ConfigError
from ringwatch.hub.clock import Clock
from ringwatch.hub.tables import ID, Base

if TYPE_CHECKING:
    from ringwatch.hub.db import SessionFactory

log = logging.getLogger(__name__)
#: A worker whose heartbeat is older than this is shown as ``stale``.
STALE_AFTER = dt.timedelta(seconds=15)


class HubWorker(Base):
    """One ``hub serve`` process (migration 0004_i12)."""

    __tablename__ = "hub_workers"
    name: Mapped[str] = mapped_column(String(ID), primary_key=True)
    instance: Mapped[str] = mapped_column(String(120), doc="host:pid of the running process.")
    started_at: Mapped[dt.datetime]
    heartbeat_at: Mapped[dt.datetime]
    events: Mapped[int] = mapped_column(Integer, default=0, doc="Events stored since start.")
    events_per_s: Mapped[float] = mapped_column(Float, default=0.0)
    lag_s: Mapped[float | None] = mapped_column(Float, doc="Age of the oldest waiting message.")
    queued: Mapped[int] = mapped_column(Integer, default=0, doc="Messages waiting to be stored.")


class HubLease(Base):
    """A named lease (``holder`` until ``expires_at``) or periodic job (``done_at``)."""

    __tablename__ = "hub_leases"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(ID))
    expires_at: Mapped[dt.datetime | None]
    done_at: Mapped[dt.datetime | None]


def is_postgres(bind: Session | Connection | Engine) -> bool:
    engine = bind.get_bind() if isinstance(bind, Session) else bind
    return engine.dialect.name == "postgresql"


_LOCK_SQL = sa.text(
    "SELECT count(pg_advisory_xact_lock(hashtextextended(current_schema() || '/' || k, 0)))"
    " FROM (SELECT k FROM unnest(CAST(:keys AS text[])) AS k ORDER BY k) AS sorted"
)


def lock_keys(bind: Session | Connection, keys: Iterable[str]) -> int:
    """Take a transaction-scoped advisory lock per key (sorted; released at commit or
    rollback). Returns how many were taken (0 on SQLite)."""
    wanted = sorted(set(keys))
    if not wanted or not is_postgres(bind):
        return 0
    bind.execute(_LOCK_SQL, {"keys": wanted})
    return len(wanted)


def claim_lease(
    session: Session, name: str, holder: str, now: dt.datetime, ttl: dt.timedelta
) -> bool:
    """Take or renew lease ``name`` for ``holder`` until ``now + ttl``; False while another
    holder's lease has not expired."""
    table = HubLease.__table__
    values = {"name": name, "holder": holder, "expires_at": now + ttl}
    insert: Any
    if is_postgres(session):
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(table).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.name],
        set_={"holder": holder, "expires_at": now + ttl},
        where=sa.or_(table.c.holder == holder, table.c.holder.is_(None), table.c.expires_at < now),
    ).returning(table.c.holder)
    return session.execute(statement).scalar() == holder


def release_lease(session: Session, name: str, holder: str) -> None:
    session.execute(
        sa.update(HubLease)
        .where(HubLease.name == name, HubLease.holder == holder)
        .values(holder=None, expires_at=None)
    )


def claim_round(session: Session, name: str, every: dt.timedelta, now: dt.datetime) -> bool:
    """True when job ``name`` is due (not done within ``every`` before ``now``) and this
    transaction now owns this round: its row is locked until commit and marked done at
    ``now``. Another worker meanwhile skips it (``SKIP LOCKED``); if this transaction rolls
    back (the worker died), the round stays due."""
    if session.get(HubLease, name) is None:
        with session.begin_nested():
            table = HubLease.__table__
            insert: Any
            if is_postgres(session):
                from sqlalchemy.dialects.postgresql import insert
            else:
                from sqlalchemy.dialects.sqlite import insert
            session.execute(insert(table).values(name=name).on_conflict_do_nothing())
    row = session.scalar(
        sa.select(HubLease)
        .where(HubLease.name == name)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    if row is None:
        return False  # another worker is doing this round right now
    if row.done_at is not None and now - _aware(row.done_at) < every:
        return False
    row.done_at = now
    return True


def claim_mark(session: Session, name: str, mark: dt.datetime) -> bool:
    """True for the one caller that first records ``mark`` under ``name`` (e.g. the
    ``at`` of a retained status every worker receives): the others get False."""
    table = HubLease.__table__
    insert: Any
    if is_postgres(session):
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = (
        insert(table)
        .values(name=name, done_at=mark)
        .on_conflict_do_update(
            index_elements=[table.c.name],
            set_={"done_at": mark},
            where=sa.or_(table.c.done_at.is_(None), table.c.done_at != mark),
        )
        .returning(table.c.name)
    )
    return session.execute(statement).scalar() is not None


def _aware(at: dt.datetime) -> dt.datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)


# --- start-up ---------------------------------------------------------------------------


class SqliteWorkerLock:
    """An exclusive ``flock`` next to the SQLite file, held for the process's life."""

    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + ".worker-lock")
        self._file: IO[str] | None = None

    def acquire(self, worker: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise ConfigError(
                f"database {self.path.with_suffix('')}: SQLite serves one hub worker and"
                f" {holder} is running on it; refusing to start worker {worker!r}. For"
                " several workers use PostgreSQL (database_url: postgresql+psycopg://...)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"worker {worker!r} ({socket.gethostname()}:{os.getpid()})\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def sqlite_path(engine: Engine) -> Path | None:
    """The SQLite database file, or None (PostgreSQL, or an in-memory database)."""
    if engine.dialect.name != "sqlite":
        return None
    name = engine.url.database
    return None if not name or name == ":memory:" else Path(name).resolve()


# --- heartbeats ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Load:
    """What a worker reports in each heartbeat."""

    events: int  # stored since start
    queued: int  # messages received and not yet stored
    lag_s: float | None  # age of the oldest of them


class WorkerBeat:
    """Writes this worker's ``hub_workers`` row every ``every_s`` seconds (own thread)."""

    def __init__(
        self,
        sessions: SessionFactory,
        name: str,
        clock: Clock,
        load: Callable[[], Load],
        every_s: float = 2.0,
    ) -> None:
        self.sessions = sessions
        self.name = name
        self.clock = clock
        self.load = load
        self.every_s = every_s
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self.started_at = clock()
        self._last: tuple[dt.datetime, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self, now: dt.datetime | None = None) -> HubWorker:
        """Write one heartbeat (tests call this with an injected time)."""
        now = self.clock() if now is None else now
        load = self.load()
        rate = 0.0
        if self._last is not None:
            seconds = (now - self._last[0]).total_seconds()
            rate = (load.events - self._last[1]) / seconds if seconds > 0 else 0.0
        first = self._last is None
        self._last = (now, load.events)
        with self.sessions.begin() as session:
            row = session.get(HubWorker, self.name)
            if row is None:
                row = HubWorker(name=self.name)
                session.add(row)
            elif (
                first
                and row.instance != self.instance
                and now - _aware(row.heartbeat_at) < STALE_AFTER
            ):
                log.warning(
                    "worker name %r was in use by %s until %s: give each worker its own"
                    " ingest.worker name",
                    self.name,
                    row.instance,
                    row.heartbeat_at.isoformat(),
                )
            row.instance, row.started_at, row.heartbeat_at = self.instance, self.started_at, now
            row.events, row.events_per_s = load.events, round(max(rate, 0.0), 2)
            row.lag_s = None if load.lag_s is None else round(load.lag_s, 3)
            row.queued = load.queued
        return row

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hub-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except Exception:
                log.exception("worker heartbeat failed; trying again")
            self._stop.wait(self.every_s)


def workers_view(session: Session, now: dt.datetime) -> list[dict[str, Any]]:
    """Every worker's last heartbeat, for ``/health`` and the Devices page."""
    rows = session.scalars(sa.select(HubWorker).order_by(HubWorker.name))
    return [
        {
            "name": r.name,
            "instance": r.instance,
            "started_at": _aware(r.started_at).isoformat(),
            "last_heartbeat": _aware(r.heartbeat_at).isoformat(),
            "heartbeat_age_s": round((now - _aware(r.heartbeat_at)).total_seconds(), 1),
            "state": "ok" if now - _aware(r.heartbeat_at) < STALE_AFTER else "stale",
            "lag_s": r.lag_s,
            "queued": r.queued,
            "events": r.events,
            "events_per_s": r.events_per_s,
        }
        for r in rows
    ]
