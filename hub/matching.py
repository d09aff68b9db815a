"""1:N search of face embeddings against the active watch-list templates.

:class:`TemplateIndex` is the interface; :class:`ExactIndex` is brute force (one matrix
product); :class:`ringwatch.hub.ann.LiveIndex` is the approximate index for large watch
lists (exact below a size). :class:`Matcher` keeps the decrypted templates of active persons
(not delisted, not past review) in that index and keeps it in step with the registry through
the registry generation (bumped in the same transaction as every registry change, so all
hub workers see it) and the change log written with it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ringwatch.contract.colours import Tier
from ringwatch.hub import tables as t
from ringwatch.hub.ann import (
    CHUNK,
    F32,
    I64,
    LiveIndex,
    Match,
    SnapshotError,
    best_persons,
    load_snapshot,
    save_snapshot,
)
from ringwatch.hub.clock import Clock, utc_now
from ringwatch.hub.crypto import TemplateCipher
from ringwatch.hub.inventory import MatchingConfig
from ringwatch.hub.match_threshold import match_threshold

GENERATION = "registry_generation"
LOAD_ROWS = 20_000  # templates fetched and decrypted at a time on a full load
log = logging.getLogger(__name__)


class TemplateIndex(Protocol):
    """Finds, per query, the ``k`` most similar persons (best template each), best first."""

    def __len__(self) -> int: ...

    def search(self, queries: F32, k: int) -> list[list[Match]]: ...


@dataclass(frozen=True, slots=True, eq=False)
class ExactIndex:
    """Brute-force cosine search over L2-normalised rows."""

    template_ids: I64
    person_ids: I64
    matrix: F32

    @classmethod
    def build(cls, template_ids: I64, person_ids: I64, matrix: F32) -> ExactIndex:
        return cls(template_ids, person_ids, np.ascontiguousarray(matrix, dtype=np.float32))

    @classmethod
    def empty(cls, dim: int = 128) -> ExactIndex:
        none = np.zeros((0,), np.int64)
        return cls(none, none, np.zeros((0, dim), np.float32))

    def __len__(self) -> int:
        return int(self.matrix.shape[0])

    def search(self, queries: F32, k: int) -> list[list[Match]]:
        if len(self) == 0:
            return [[] for _ in range(len(queries))]
        sims = np.atleast_2d(queries).astype(np.float32) @ self.matrix.T
        return [self._best_persons(row, k) for row in sims]

    def _best_persons(self, row: F32, k: int) -> list[Match]:
        return best_persons(row, self.person_ids, self.template_ids, k)


class Matcher:
    """Matches embeddings against the active templates, above the configured threshold.

    The decrypted templates live in one :class:`~ringwatch.hub.ann.LiveIndex`, loaded in
    full once (from the database, or from an encrypted snapshot when configured) and then
    kept in step with the registry by its change log: each batch reads the registry
    generation (one row); when it moved, only the persons changed since are re-read, and a
    new date expires the entries whose review has fallen due. A gap in the log (a change
    from before the log existed, a database reset) or a date going backwards reloads all.
    """

    def __init__(self, cipher: TemplateCipher, clock: Clock, config: MatchingConfig) -> None:
        self.cipher = cipher
        self.clock = clock
        self.config = config
        self._index: LiveIndex | None = None
        self._generation = -1
        self._today = dt.date.min
        self._lock = threading.Lock()
        self.full_loads = 0  # how often everything was (re)loaded: once, normally
        self.incremental = 0  # persons re-read from the change log
        self.snapshot_loads = 0

    @property
    def threshold(self) -> float:
        return match_threshold(self.config, 0 if self._index is None else len(self._index))

    def match(self, session: Session, embeddings: F32) -> list[list[Match]]:
        """Per embedding, the persons at or above the threshold (best first, at most top_k)."""
        if len(embeddings) == 0:
            return []
        with self._lock:
            index = self._sync(session)
            found = index.search(embeddings, self.config.top_k)
            threshold = match_threshold(self.config, len(index))
        return [[m for m in row if m.similarity >= threshold] for row in found]

    def current_index(self, session: Session) -> TemplateIndex:
        with self._lock:
            return self._sync(session)

    def warm(self, sessions: Callable[[], Session]) -> None:
        """Load the templates now (at start) rather than on the first face: from the
        snapshot file when one is configured and usable, then brought up to date from the
        change log; else from the database (and then the snapshot is written)."""
        with sessions() as session, self._lock:
            self._read_snapshot()
            loads = self.full_loads
            self._sync(session)
            if self.full_loads > loads:  # none, or unusable: save what was just built
                self._write_snapshot()

    def save_snapshot(self) -> int | None:
        """Write the snapshot (at stop); bytes written, or None when none is configured."""
        with self._lock:
            return self._write_snapshot()

    def _read_snapshot(self) -> bool:
        path = self._snapshot_path
        if path is None or not path.exists():
            return False
        try:
            snap = load_snapshot(path, self.cipher.snapshot_key, self._new_index)
        except SnapshotError as exc:
            log.warning("index snapshot not used, loading from the database: %s", exc)
            return False
        self._index, self._generation = snap.index, snap.generation
        self._today = dt.date.fromordinal(snap.index.today)
        self.snapshot_loads += 1
        return True

    def _write_snapshot(self) -> int | None:
        path = self._snapshot_path
        if path is None or self._index is None:
            return None
        try:
            return save_snapshot(self._index, self._generation, path, self.cipher.snapshot_key)
        except OSError as exc:
            log.error("cannot write the index snapshot %s: %s", path, exc)
            return None

    @property
    def _snapshot_path(self) -> Path | None:
        return None if self.config.snapshot_file is None else Path(self.config.snapshot_file)

    def _sync(self, session: Session) -> LiveIndex:
        generation = registry_generation(session)
        today = self.clock().date()
        index = self._index
        if index is None or generation < self._generation or today < self._today:
            return self._full_load(session, generation, today)
        if generation > self._generation and not self._apply_log(session, index, generation):
            return self._full_load(session, generation, today)
        if today > self._today:
            index.expire(today)
            self._today = today
        return index

    def _full_load(self, session: Session, generation: int, today: dt.date) -> LiveIndex:
        query = active_templates_query(today)
        count = session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
        index = self._new_index(count)
        index.expire(today)
        # Streamed: a million encrypted rows at once would hold ~0.8 GB of tokens.
        result = session.execute(query.execution_options(yield_per=LOAD_ROWS))
        for part in result.partitions():
            self._add_rows(index, part)
        self._index, self._generation, self._today = index, generation, today
        self.full_loads += 1
        return index

    def _new_index(self, expected: int) -> LiveIndex:
        return LiveIndex(
            candidates=self.config.candidates,
            exact_below=self.config.exact_below,
            capacity=expected + CHUNK,
        )

    def _apply_log(self, session: Session, index: LiveIndex, generation: int) -> bool:
        """Re-read the persons changed after our generation; False if the log has a gap."""
        changes = session.execute(
            sa.select(t.RegistryChange.seq, t.RegistryChange.person_id).where(
                t.RegistryChange.seq > self._generation, t.RegistryChange.seq <= generation
            )
        ).all()
        persons = {row[1] for row in changes}
        if len(changes) != generation - self._generation or None in persons:
            return False
        wanted = sorted(p for p in persons if p is not None)
        index.drop_persons(wanted)
        query = active_templates_query(self._today).where(t.Template.person_id.in_(wanted))
        self._add_rows(index, session.execute(query).all())
        self._generation = generation
        self.incremental += len(wanted)
        return True

    def _add_rows(self, index: LiveIndex, rows: Sequence[sa.Row[int, int, bytes, dt.date]]) -> None:
        if not rows:
            return
        vectors = np.empty((len(rows), index.dim), np.float32)
        for i, row in enumerate(rows):
            vectors[i] = self.cipher.decrypt_embedding(row[2])
        index.add(
            np.fromiter((r[0] for r in rows), np.int64, len(rows)),
            np.fromiter((r[1] for r in rows), np.int64, len(rows)),
            np.fromiter((r[3].toordinal() for r in rows), np.int32, len(rows)),
            vectors,
        )


def active_templates_query(today: dt.date) -> sa.Select[int, int, bytes, dt.date]:
    """Templates of persons who may be matched today: not delisted, review not past due."""
    return (
        sa.select(
            t.Template.id, t.Template.person_id, t.Template.embedding_enc, t.Person.review_due
        )
        .join(t.Person, t.Person.id == t.Template.person_id)
        .where(t.Person.tier != Tier.GREEN.value, t.Person.review_due >= today)
        .order_by(t.Template.id)
    )


def registry_generation(session: Session) -> int:
    value = session.scalar(sa.select(t.Counter.value).where(t.Counter.name == GENERATION))
    return int(value or 0)


def bump_generation(session: Session, person_id: int | None = None) -> None:
    """Mark the registry changed (call inside the transaction that changes it), naming the
    person whose entry or templates changed (``None``: unknown, every worker reloads all).

    The counter's row lock is held until commit, so registry writers take turns and each
    change row's ``seq`` (the new counter value) is committed in order, without gaps: a
    worker that has seen generation G needs exactly the rows G+1..now."""
    updated = session.execute(
        sa.update(t.Counter)
        .where(t.Counter.name == GENERATION)
        .values(value=t.Counter.value + 1)
        .returning(t.Counter.value)
    ).scalar()
    if updated is None:
        session.add(t.Counter(name=GENERATION, value=1))
        updated = 1
    session.add(t.RegistryChange(seq=updated, person_id=person_id, at=utc_now()))


def random_unit_vectors(n: int, dim: int = 128, seed: int = 0) -> F32:
    """``n`` random L2-normalised vectors (for benchmarks)."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    out: F32 = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return out


def stack(vectors: Sequence[F32]) -> F32:
    return np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, 128), np.float32)
