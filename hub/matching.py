"""1:N search of face embeddings against the active watch-list templates.

:class:`TemplateIndex` is the interface; :class:`ExactIndex` is brute force (one matrix
product), which an approximate index can later replace. :class:`Matcher` keeps the
decrypted templates of active persons (not delisted, not past review) in memory and rebuilds
them when the registry generation (bumped in the same transaction as every registry change,
so all hub workers see it) or the date changes.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ringwatch.contract.colours import Tier
from ringwatch.hub import tables as t
from ringwatch.hub.clock import Clock
from ringwatch.hub.crypto import TemplateCipher
from ringwatch.hub.inventory import MatchingConfig
from ringwatch.hub.match_threshold import match_threshold

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
GENERATION = "registry_generation"


@dataclass(frozen=True, slots=True)
class Match:
    """One watch-listed person a face resembles, with the best of their templates."""

    person_id: int
    template_id: int
    similarity: float
    rank: int


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
        # Several templates per person: look a little deeper than k, then keep one per person.
        depth = min(len(row), k * 8)
        top = np.argpartition(-row, depth - 1)[:depth] if depth < len(row) else np.arange(depth)
        top = top[np.argsort(-row[top], kind="stable")]
        out: list[Match] = []
        seen: set[int] = set()
        for j in top:
            person = int(self.person_ids[j])
            if person not in seen:
                seen.add(person)
                out.append(Match(person, int(self.template_ids[j]), float(row[j]), len(out) + 1))
                if len(out) == k:
                    break
        return out


IndexFactory = Callable[[I64, I64, F32], TemplateIndex]


class Matcher:
    """Matches embeddings against the active templates, above the configured threshold."""

    def __init__(
        self,
        cipher: TemplateCipher,
        clock: Clock,
        config: MatchingConfig,
        index_factory: IndexFactory = ExactIndex.build,
    ) -> None:
        self.cipher = cipher
        self.clock = clock
        self.config = config
        self._factory = index_factory
        self._index: TemplateIndex = ExactIndex.empty()
        self._key: tuple[int, dt.date] | None = None
        self._lock = threading.Lock()

    @property
    def threshold(self) -> float:
        return match_threshold(self.config, len(self._index))

    def match(self, session: Session, embeddings: F32) -> list[list[Match]]:
        """Per embedding, the persons at or above the threshold (best first, at most top_k)."""
        if len(embeddings) == 0:
            return []
        index = self.current_index(session)
        found = index.search(embeddings, self.config.top_k)
        threshold = match_threshold(self.config, len(index))
        return [[m for m in row if m.similarity >= threshold] for row in found]

    def current_index(self, session: Session) -> TemplateIndex:
        key = (registry_generation(session), self.clock().date())
        with self._lock:
            if key != self._key:
                self._index = self._load(session, key[1])
                self._key = key
            return self._index

    def _load(self, session: Session, today: dt.date) -> TemplateIndex:
        rows = session.execute(active_templates_query(today)).all()
        if not rows:
            return ExactIndex.empty()
        template_ids = np.array([r[0] for r in rows], np.int64)
        person_ids = np.array([r[1] for r in rows], np.int64)
        matrix = np.stack([self.cipher.decrypt_embedding(r[2]) for r in rows])
        return self._factory(template_ids, person_ids, matrix)


def active_templates_query(today: dt.date) -> sa.Select[int, int, bytes]:
    """Templates of persons who may be matched today: not delisted, review not past due."""
    return (
        sa.select(t.Template.id, t.Template.person_id, t.Template.embedding_enc)
        .join(t.Person, t.Person.id == t.Template.person_id)
        .where(t.Person.tier != Tier.GREEN.value, t.Person.review_due >= today)
        .order_by(t.Template.id)
    )


def registry_generation(session: Session) -> int:
    value = session.scalar(sa.select(t.Counter.value).where(t.Counter.name == GENERATION))
    return int(value or 0)


def bump_generation(session: Session) -> None:
    """Mark the registry changed (call inside the transaction that changes it)."""
    updated = session.execute(
        sa.update(t.Counter).where(t.Counter.name == GENERATION).values(value=t.Counter.value + 1)
    )
    if getattr(updated, "rowcount", 0) == 0:
        session.add(t.Counter(name=GENERATION, value=1))


def random_unit_vectors(n: int, dim: int = 128, seed: int = 0) -> F32:
    """``n`` random L2-normalised vectors (for benchmarks)."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    out: F32 = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return out


def stack(vectors: Sequence[F32]) -> F32:
    return np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, 128), np.float32)
