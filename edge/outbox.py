"""The durable outbox: every event is on disk before it is published, and leaves only on the
hub's receipt.

SQLite in WAL mode with ``synchronous=FULL`` for puts: each is fsynced before it returns, so
an event survives not only a killed process (WAL with ``NORMAL`` would do for that) but also
a power cut of the camera box, where ``NORMAL`` may roll back the last transactions. Events
are rare (a few per second per camera), so one fsync each is affordable (~150 puts/s on this
machine's disk under load, ~4,900/s with ``NORMAL``; see docs/delivery.md).

Bound policy (``max_events`` rows): when full, the oldest health row is dropped first, then
the oldest update-phase event, but only a row worth no more than the incoming one (health <
update < start/end): a health row arriving when no health row is left is itself dropped.
An alert's start or end (and any other start/end event) is never dropped: if only those
remain, ``put`` raises :class:`OutboxFull` and counts it as ``refused``, so the caller sees
the loss instead of the queue hiding it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Literal

from ringwatch.contract.messages import Event, Phase, encode
from ringwatch.contract.topics import event_topic
from ringwatch.errors import RingwatchError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    key          TEXT NOT NULL UNIQUE,
    topic        TEXT NOT NULL,
    payload      BLOB NOT NULL,
    priority     INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_sent_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_priority ON outbox (priority, seq);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class OutboxError(RingwatchError):
    """The outbox file cannot be opened or written."""


class OutboxFull(OutboxError):
    """Full of start/end events that must not be dropped; the new one was refused."""


class Priority(IntEnum):
    """Higher values are dropped first when the outbox is full."""

    KEEP = 0  # start / end phases: never dropped
    UPDATE = 1
    HEALTH = 2


@dataclass(frozen=True, slots=True)
class Pending:
    """One queued message as the uplink sees it."""

    seq: int
    key: str
    topic: str
    payload: bytes
    priority: Priority
    attempts: int


@dataclass(frozen=True, slots=True)
class OutboxStats:
    depth: int
    dropped: int
    refused: int
    unknown_releases: int


def priority_of(event: Event) -> Priority:
    return Priority.UPDATE if event.phase is Phase.UPDATE else Priority.KEEP


class Outbox:
    """A bounded, ordered, crash-safe queue in one SQLite file. Thread-safe."""

    def __init__(
        self, path: Path, max_events: int, synchronous: Literal["FULL", "NORMAL"] = "FULL"
    ) -> None:
        if max_events < 1:
            raise OutboxError(f"outbox max_events must be >= 1, got {max_events}")
        self.path = path
        self.max_events = max_events
        self._lock = threading.Lock()
        self._unknown = 0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._sync = synchronous
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"outbox {path}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def put(self, event: Event) -> None:
        """Store ``event`` durably (committed and fsynced) before anyone publishes it."""
        topic = event_topic(event.site, event.device, event.kind)
        self.put_raw(event.event_id, topic, encode(event), priority_of(event))

    def put_raw(self, key: str, topic: str, payload: bytes, priority: Priority) -> None:
        """Store any message; ``key`` is its idempotency key (a repeated key is ignored)."""
        with self._lock, self._transaction():
            if self._db.execute("SELECT 1 FROM outbox WHERE key = ?", (key,)).fetchone():
                return  # already queued (an idempotent retry by the caller)
            if self._count() >= self.max_events and not self._evict_one(priority):
                self._bump("refused")
                raise OutboxFull(
                    f"outbox {self.path} holds {self.max_events} start/end events that must "
                    f"not be dropped; refused {key} (raise outbox.max_events or restore the "
                    "uplink)"
                )
            self._db.execute(
                "INSERT INTO outbox (key, topic, payload, priority) VALUES (?,?,?,?)",
                (key, topic, payload, int(priority)),
            )

    def due(self, now: float, receipt_timeout: float, limit: int = 500) -> list[Pending]:
        """Never-sent rows and rows sent longer than ``receipt_timeout`` ago, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, key, topic, payload, priority, attempts FROM outbox "
                "WHERE last_sent_at IS NULL OR last_sent_at <= ? ORDER BY seq LIMIT ?",
                (now - receipt_timeout, limit),
            ).fetchall()
        return [Pending(s, k, t, bytes(p), Priority(pr), a) for s, k, t, p, pr, a in rows]

    def in_flight(self, now: float, receipt_timeout: float) -> int:
        """Rows sent less than ``receipt_timeout`` ago and still awaiting their receipt."""
        with self._lock:
            row = self._db.execute(
                "SELECT count(*) FROM outbox WHERE last_sent_at > ?", (now - receipt_timeout,)
            ).fetchone()
        return int(row[0])

    def mark_sent(self, seqs: Iterable[int], now: float) -> None:
        """Record a publish attempt of these rows at ``now``."""
        params = [(now, s) for s in seqs]
        with self._lock, self._transaction(durable=False):
            self._db.executemany(
                "UPDATE outbox SET attempts = attempts + 1, last_sent_at = ? WHERE seq = ?", params
            )

    def mark_unsent(self) -> None:
        """Make every row due now (after a reconnect or a restart: replay in order)."""
        with self._lock, self._transaction(durable=False):
            self._db.execute("UPDATE outbox SET last_sent_at = NULL")

    def release(self, keys: Iterable[str]) -> int:
        """Remove rows the hub confirmed; return how many were removed. Unknown keys (already
        released, or never ours) are ignored and counted."""
        keys = list(keys)
        with self._lock, self._transaction(durable=False):
            before = self._db.total_changes
            self._db.executemany("DELETE FROM outbox WHERE key = ?", [(k,) for k in keys])
            removed = self._db.total_changes - before
        self._unknown += len(keys) - removed
        return removed

    def release_seqs(self, seqs: Iterable[int]) -> None:
        """Remove rows by position (health rows, which get no receipt)."""
        with self._lock, self._transaction(durable=False):
            self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])

    def depth(self) -> int:
        with self._lock:
            return self._count()

    def stats(self) -> OutboxStats:
        with self._lock:
            return OutboxStats(
                self._count(), self._counter("dropped"), self._counter("refused"), self._unknown
            )

    # -- internals (caller holds the lock) --------------------------------------------------

    def _transaction(self, durable: bool = True) -> _Transaction:
        # Bookkeeping (sent marks, releases) need not be fsynced: losing the last of them
        # in a power cut only re-sends an event. The next durable commit fsyncs them anyway.
        level = self._sync if durable else "NORMAL"
        self._db.execute(f"PRAGMA synchronous={level}")
        return _Transaction(self._db, self.path)

    def _count(self) -> int:
        row = self._db.execute("SELECT count(*) FROM outbox").fetchone()
        return int(row[0])

    def _evict_one(self, incoming: Priority) -> bool:
        """Drop the oldest row of the most droppable class, but never one worth more than
        ``incoming`` (a health row must not push out an update); False if nothing may go."""
        row = self._db.execute(
            "SELECT seq FROM outbox WHERE priority > ? AND priority >= ? "
            "ORDER BY priority DESC, seq LIMIT 1",
            (int(Priority.KEEP), int(incoming)),
        ).fetchone()
        if row is None:
            # Nothing worth as little as the newcomer is queued: a droppable newcomer is
            # dropped itself; a start/end one is refused.
            if incoming is Priority.KEEP:
                return False
            self._bump("dropped")
            raise _DropIncoming
        self._db.execute("DELETE FROM outbox WHERE seq = ?", (row[0],))
        self._bump("dropped")
        return True

    def _bump(self, name: str) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, 1) "
            "ON CONFLICT(name) DO UPDATE SET value = value + 1",
            (name,),
        )

    def _counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return 0 if row is None else int(row[0])


class _DropIncoming(Exception):
    """Internal: the incoming row is the one to drop (commit the drop counter, insert nothing)."""


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, translating SQLite errors into :class:`OutboxError`."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self._path = path

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, exc: object, tb: object) -> bool:
        if exc_type is None or issubclass(exc_type, _DropIncoming | OutboxFull):
            self._db.execute("COMMIT")  # keeps the drop/refusal counters
            return exc_type is _DropIncoming
        self._db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise OutboxError(f"outbox {self._path}: {exc}") from None
        return False
