"""The media queue: clips and snapshots wait on the edge's disk until the hub confirms them.

Same proof style as the event outbox (:mod:`ringwatch.edge.outbox`): a file is written to a
temporary name, fsynced and renamed into ``files/``, and only then its row is committed in
SQLite (WAL, ``synchronous=FULL``), so a row always has its file. A confirmed item loses its
row first, then its file. Opening the queue removes files without a row (a crash between
the two steps) and rows whose file is gone (counted as ``lost``).

Bound policy (``max_bytes`` of files): a new item pushes out the oldest snapshots first,
then the oldest clips (both counted as ``dropped`` and logged): the newest evidence is the
one an officer is waiting for. An item bigger than the whole bound is refused
(:class:`MediaQueueFull`, counted as ``refused``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from ringwatch.contract.media import MediaKind, MediaMeta
from ringwatch.errors import RingwatchError

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS media (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    id       TEXT NOT NULL UNIQUE,
    kind     TEXT NOT NULL,
    meta     TEXT NOT NULL,
    file     TEXT NOT NULL,
    size     INTEGER NOT NULL,
    sha256   TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at  REAL NOT NULL DEFAULT 0,
    error    TEXT
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_DROP_ORDER = (MediaKind.SNAPSHOT.value, MediaKind.CLIP.value)


class MediaQueueError(RingwatchError):
    """The media queue cannot be opened or written."""


class MediaQueueFull(MediaQueueError):
    """An item larger than the whole queue bound was refused."""


@dataclass(frozen=True, slots=True)
class QueuedMedia:
    id: str
    meta: MediaMeta
    path: Path
    size: int
    sha256: str
    attempts: int


@dataclass(frozen=True, slots=True)
class MediaQueueStats:
    depth: int
    bytes: int
    dropped: int
    refused: int
    lost: int
    uploaded: int


class MediaQueue:
    """A bounded, crash-safe folder of media files awaiting the hub. Thread-safe."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.files = folder / "files"
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        try:
            self.files.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                folder / "queue.sqlite3", check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._recover()
        except (sqlite3.Error, OSError) as exc:
            raise MediaQueueError(f"media queue {folder}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def put(self, meta: MediaMeta, data: bytes) -> None:
        """Store ``data`` durably under ``meta.media_id`` (a repeated id is ignored)."""
        if len(data) > self.max_bytes:
            with self._lock:
                self._bump("refused")
            raise MediaQueueFull(
                f"media {meta.media_id} is {len(data)} bytes, more than the whole queue bound "
                f"{self.max_bytes} (raise clips.queue_max_mb)"
            )
        name = f"{meta.media_id}.{'mp4' if meta.kind is MediaKind.CLIP else 'jpg'}"
        with self._lock:
            if self._db.execute("SELECT 1 FROM media WHERE id = ?", (meta.media_id,)).fetchone():
                return
            self._make_room(len(data))
            _write_durably(self.files / name, data)
            self._db.execute(
                "INSERT INTO media (id, kind, meta, file, size, sha256) VALUES (?,?,?,?,?,?)",
                (
                    meta.media_id,
                    meta.kind.value,
                    meta.model_dump_json(),
                    name,
                    len(data),
                    hashlib.sha256(data).hexdigest(),
                ),
            )

    def due(self, now: float) -> QueuedMedia | None:
        """The oldest item whose retry time has come."""
        with self._lock:
            row = self._db.execute(
                "SELECT id, meta, file, size, sha256, attempts FROM media WHERE next_at <= ? "
                "ORDER BY seq LIMIT 1",
                (now,),
            ).fetchone()
        if row is None:
            return None
        mid, meta, name, size, digest, attempts = row
        return QueuedMedia(
            mid,
            MediaMeta.model_validate_json(meta),
            self.files / name,
            int(size),
            str(digest),
            int(attempts),
        )

    def failed(self, media_id: str, retry_at: float, error: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE media SET attempts = attempts + 1, next_at = ?, error = ? WHERE id = ?",
                (retry_at, error[:500], media_id),
            )

    def retry_all(self) -> None:
        """Make every item due now (the link is back)."""
        with self._lock:
            self._db.execute("UPDATE media SET next_at = 0")

    def confirm(self, media_id: str, sha256: str) -> bool:
        """Remove an item the hub confirmed with this digest; False (kept) if it differs."""
        with self._lock:
            row = self._db.execute(
                "SELECT file, sha256 FROM media WHERE id = ?", (media_id,)
            ).fetchone()
            if row is None or row[1] != sha256:
                return False
            self._db.execute("DELETE FROM media WHERE id = ?", (media_id,))
            self._bump("uploaded")
        (self.files / row[0]).unlink(missing_ok=True)
        return True

    def stats(self) -> MediaQueueStats:
        with self._lock:
            depth, size = self._db.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM media"
            ).fetchone()
            return MediaQueueStats(
                int(depth),
                int(size),
                self._counter("dropped"),
                self._counter("refused"),
                self._counter("lost"),
                self._counter("uploaded"),
            )

    # -- internals (caller holds the lock) --------------------------------------------------

    def _make_room(self, incoming: int) -> None:
        used = int(self._db.execute("SELECT coalesce(sum(size), 0) FROM media").fetchone()[0])
        for kind in _DROP_ORDER:
            while used + incoming > self.max_bytes:
                row = self._db.execute(
                    "SELECT id, file, size FROM media WHERE kind = ? ORDER BY seq LIMIT 1", (kind,)
                ).fetchone()
                if row is None:
                    break
                self._db.execute("DELETE FROM media WHERE id = ?", (row[0],))
                (self.files / row[1]).unlink(missing_ok=True)
                self._bump("dropped")
                used -= int(row[2])
                log.error("media queue full: dropped %s %s to make room", kind, row[0])

    def _recover(self) -> None:
        known = {str(r[0]) for r in self._db.execute("SELECT file FROM media")}
        for path in self.files.iterdir():
            if path.name not in known:
                path.unlink(missing_ok=True)  # written but never committed, or half-deleted
        for name in known:
            if not (self.files / name).exists():
                self._db.execute("DELETE FROM media WHERE file = ?", (name,))
                self._bump("lost")

    def _bump(self, name: str) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, 1) "
            "ON CONFLICT(name) DO UPDATE SET value = value + 1",
            (name,),
        )

    def _counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return 0 if row is None else int(row[0])


def _write_durably(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself survives a power cut
    finally:
        os.close(fd)


def utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)
