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

Damage: a file found empty (truncated) or failing SQLite's ``quick_check`` at start, or
reported corrupt while running, is renamed ``<file>.damaged-<n>`` (kept for a post-mortem),
its readable rows are copied into a new file, and the outbox goes on there; what happened
stays in :class:`OutboxStats` (``quarantined``, ``salvaged``, ``damage``: sent in the
heartbeat) and in the log. A write that fails (disk full) raises :class:`OutboxUnwritable`
and is counted in ``write_errors``: the caller counts the event as refused.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
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


class OutboxUnwritable(OutboxError):
    """The outbox file cannot be written now (disk full, I/O error); the message was refused."""


log = logging.getLogger(__name__)
_CORRUPT = ("malformed", "not a database", "corrupt", "file is not a database")


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
    quarantined: int = 0  # damaged files set aside since start
    salvaged: int = 0  # rows copied out of them
    write_errors: int = 0  # puts refused because the file could not be written
    damage: str | None = None  # the latest damage or write error, for the heartbeat


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
        self._sync = synchronous
        self._quarantined = 0
        self._salvaged = 0
        self._write_errors = 0
        self._damage: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutboxError(f"outbox {path}: {exc}") from None
        found_empty = path.exists() and path.stat().st_size == 0
        try:
            self._db = self._connect()
            why = "the file was empty (truncated?)" if found_empty else self._check()
        except sqlite3.DatabaseError as exc:
            why = f"cannot be read ({exc})"
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"outbox {path}: {exc}") from None
        if why is not None:
            self._recover(why)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self._sync}")
            db.executescript(_SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def _check(self) -> str | None:
        row = self._db.execute("PRAGMA quick_check").fetchone()
        return None if row is not None and row[0] == "ok" else f"quick_check: {row and row[0]}"

    def _recover(self, why: str) -> None:
        """Set the damaged file aside, copy what can be read into a new one, go on there."""
        with suppress(Exception):
            self._db.close()
        try:
            aside = self._quarantine()
            self._db = self._connect()
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"outbox {self.path} {why}; cannot set it aside: {exc}") from None
        rows, counters, lost = _salvage(aside)
        with self._transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO outbox (key, topic, payload, priority) VALUES (?,?,?,?)",
                rows,
            )
            self._db.executemany("INSERT OR REPLACE INTO counters VALUES (?, ?)", counters)
        self._quarantined += 1
        self._salvaged += len(rows)
        self._damage = (
            f"outbox {self.path} {why}: set aside as {aside.name}, {len(rows)} rows recovered"
            + (f", {lost}" if lost else "")
        )
        log.error("%s; going on with a new file", self._damage)

    def _quarantine(self) -> Path:
        n = 1
        while self.path.with_name(f"{self.path.name}.damaged-{n}").exists():
            n += 1
        aside = self.path.with_name(f"{self.path.name}.damaged-{n}")
        self.path.rename(aside)
        for suffix in ("-wal", "-shm"):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                side.rename(aside.with_name(aside.name + suffix))
        return aside

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
        """Store any message; ``key`` is its idempotency key (a repeated key is ignored).
        On a damaged file: recover (see the module docstring) and store it in the new one."""
        try:
            self._put(key, topic, payload, priority)
        except _Corrupt:  # recovered onto a new file already: store it there
            self._put(key, topic, payload, priority)

    def _put(self, key: str, topic: str, payload: bytes, priority: Priority) -> None:
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
        with self._lock, self._reading():
            rows = self._db.execute(
                "SELECT seq, key, topic, payload, priority, attempts FROM outbox "
                "WHERE last_sent_at IS NULL OR last_sent_at <= ? ORDER BY seq LIMIT ?",
                (now - receipt_timeout, limit),
            ).fetchall()
        return [Pending(s, k, t, bytes(p), Priority(pr), a) for s, k, t, p, pr, a in rows]

    def in_flight(self, now: float, receipt_timeout: float) -> int:
        """Rows sent less than ``receipt_timeout`` ago and still awaiting their receipt."""
        with self._lock, self._reading():
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
        with self._lock, self._reading():
            return self._count()

    def stats(self) -> OutboxStats:
        with self._lock, self._reading():
            return OutboxStats(
                self._count(),
                self._counter("dropped"),
                self._counter("refused") + self._write_errors,
                self._unknown,
                self._quarantined,
                self._salvaged,
                self._write_errors,
                self._damage,
            )

    # -- internals (caller holds the lock) --------------------------------------------------

    def _transaction(self, durable: bool = True) -> _Transaction:
        # Bookkeeping (sent marks, releases) need not be fsynced: losing the last of them
        # in a power cut only re-sends an event. The next durable commit fsyncs them anyway.
        return _Transaction(self, "FULL" if durable and self._sync == "FULL" else "NORMAL")

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """Reads that meet a damaged file recover it (the next call reads the new one)."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if _is_corrupt(exc):
                self._recover(f"is corrupt ({exc})")
            raise OutboxError(f"outbox {self.path}: {exc}") from None

    def _write_failed(self, exc: sqlite3.Error) -> OutboxError:
        if _is_corrupt(exc):
            self._recover(f"is corrupt ({exc})")
            return _Corrupt(str(exc))
        self._write_errors += 1
        self._damage = f"outbox {self.path}: write failed: {exc}"
        log.error("%s (%d writes refused so far)", self._damage, self._write_errors)
        return OutboxUnwritable(self._damage)

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


class _Corrupt(OutboxError):
    """Internal: SQLite says the file is damaged (the put recovers and retries once)."""


def _is_corrupt(exc: sqlite3.Error) -> bool:
    return any(word in str(exc).lower() for word in _CORRUPT)


def _salvage(path: Path) -> tuple[list[tuple[str, str, bytes, int]], list[tuple[str, int]], str]:
    """The rows and counters that can still be read from a damaged outbox file, and what
    could not be (empty when all was read)."""
    rows: list[tuple[str, str, bytes, int]] = []
    counters: list[tuple[str, int]] = []
    lost = ""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return rows, counters, f"nothing readable ({exc})"
    try:
        cursor = db.execute("SELECT key, topic, payload, priority FROM outbox ORDER BY seq")
        for key, topic, payload, priority in cursor:
            rows.append((str(key), str(topic), bytes(payload), int(priority)))
    except sqlite3.Error as exc:
        lost = f"the rest unreadable ({exc})"
    with suppress(sqlite3.Error):
        counters = [(str(n), int(v)) for n, v in db.execute("SELECT name, value FROM counters")]
    db.close()
    return rows, counters, lost


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, translating SQLite errors into :class:`OutboxError`
    (:class:`OutboxUnwritable` for a full disk, internal ``_Corrupt`` for a damaged file)."""

    def __init__(self, outbox: Outbox, synchronous: str) -> None:
        self._outbox = outbox
        self._db = outbox._db
        self._synchronous = synchronous

    def __enter__(self) -> None:
        try:
            self._db.execute(f"PRAGMA synchronous={self._synchronous}")
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._outbox._write_failed(exc) from None

    def __exit__(self, exc_type: type[BaseException] | None, exc: object, tb: object) -> bool:
        try:
            if exc_type is None or issubclass(exc_type, _DropIncoming | OutboxFull):
                self._db.execute("COMMIT")  # keeps the drop/refusal counters
                return exc_type is _DropIncoming
            self._db.execute("ROLLBACK")
        except sqlite3.Error as failed:
            with suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise self._outbox._write_failed(failed) from None
        if isinstance(exc, sqlite3.Error):
            raise self._outbox._write_failed(exc) from None
        return False
