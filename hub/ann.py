"""Approximate 1:N search for watch lists of a million templates.

:class:`LiveIndex` implements :class:`~ringwatch.hub.matching.TemplateIndex` and is changed
in place (add, drop persons, expire by date) instead of being rebuilt. Search is two-stage:

1. every template has a 256-bit sign code (``sign(v @ H)`` for fixed random hyperplanes
   ``H``: the fraction of differing bits estimates the angle, whatever the data look like);
   faiss' ``IndexBinaryFlat`` scans the codes (32 bytes each, 32 MB at a million) and keeps
   the ``candidates`` nearest by Hamming distance;
2. those candidates are re-scored by exact cosine against the float32 templates, so the
   similarity returned is the true one, and persons are ranked on it.

Below ``exact_below`` live templates the index skips stage 1 and scores every template (a
matrix product is faster there). Why sign codes rather than a graph (HNSW) or inverted
lists (IVF): measured on the benchmark's mix of uniform synthetic vectors and real face
embeddings, both lost a sizeable share of true top-1 matches (docs/hub.md); the codes'
recall does not depend on how the data cluster, they are built in a second at a million
(no graph to build), and adding or removing a template costs no re-indexing.

Removing is immediate: a dropped template's slot is marked dead (and its vector zeroed),
so it is filtered from the candidates at once; the code scan is compacted when dead
entries could crowd the candidate list. The float32 slots of dead templates are reused
only at the next full load or snapshot.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
I32 = npt.NDArray[np.int32]
BITS = 256
HYPERPLANE_SEED = 20261202  # the same hyperplanes in every worker, snapshot and release
CHUNK = 65536  # rows projected at a time (bounds the temporary to CHUNK x BITS floats)


@dataclass(frozen=True, slots=True)
class Match:
    """One watch-listed person a face resembles, with the best of their templates."""

    person_id: int
    template_id: int
    similarity: float
    rank: int


def best_persons(row: F32, person_ids: I64, template_ids: I64, k: int) -> list[Match]:
    """The ``k`` best persons of one row of similarities (best template each), best first."""
    # Several templates per person: look a little deeper than k, then keep one per person.
    depth = min(len(row), k * 8)
    if depth == 0:
        return []
    top = np.argpartition(-row, depth - 1)[:depth] if depth < len(row) else np.arange(depth)
    top = top[np.argsort(-row[top], kind="stable")]
    out: list[Match] = []
    seen: set[int] = set()
    for j in top:
        person = int(person_ids[j])
        if person not in seen:
            seen.add(person)
            out.append(Match(person, int(template_ids[j]), float(row[j]), len(out) + 1))
            if len(out) == k:
                break
    return out


def hyperplanes(dim: int, bits: int = BITS) -> F32:
    out: F32 = (
        np.random.default_rng(HYPERPLANE_SEED).standard_normal((dim, bits)).astype(np.float32)
    )
    return out


def sign_codes(vectors: F32, planes: F32) -> U8:
    """Packed sign bits of ``vectors @ planes``, one row of ``bits / 8`` bytes per vector."""
    width = planes.shape[1] // 8
    out = np.empty((len(vectors), width), np.uint8)
    if len(vectors) <= 64:  # a query: numpy's own loop, not BLAS' threads (see above)
        out[:] = np.packbits(np.einsum("ij,jk->ik", vectors, planes) > 0, axis=1)
        return out
    for start in range(0, len(vectors), CHUNK):
        block = vectors[start : start + CHUNK] @ planes
        out[start : start + len(block)] = np.packbits(block > 0, axis=1)
    return out


def day_number(day: dt.date) -> int:
    return day.toordinal()


class LiveIndex:
    """Templates in growing arrays (slots) plus a faiss code scan over the live ones."""

    def __init__(
        self,
        dim: int = 128,
        candidates: int = 1024,
        exact_below: int = 20_000,
        capacity: int = 1024,
        bits: int = BITS,
    ) -> None:
        self.dim = dim
        self.candidates = candidates
        self.exact_below = exact_below
        self.planes = hyperplanes(dim, bits)
        self.today = 0  # day number: templates whose review is due before it are not matched
        self._n = 0
        self._live_count = 0
        self._alloc(capacity, bits // 8)
        self._scan_slots: I64 = np.zeros(0, np.int64)  # faiss position -> slot
        self._scan_dead = 0
        self._scan = self._new_scan()

    def _alloc(self, capacity: int, width: int) -> None:
        self.vectors: F32 = np.zeros((capacity, self.dim), np.float32)
        self.codes: U8 = np.zeros((capacity, width), np.uint8)
        self.template_ids: I64 = np.zeros(capacity, np.int64)
        self.person_ids: I64 = np.zeros(capacity, np.int64)
        self.review_due: I32 = np.zeros(capacity, np.int32)
        self.live = np.zeros(capacity, np.bool_)

    def _new_scan(self) -> Any:
        import faiss  # heavy import, only where the index is used

        # One query scans 32 MB at a million: one core does it; OpenMP's spinning worker
        # threads made single queries 3-10x slower on a busy 2-core machine (measured).
        faiss.omp_set_num_threads(1)
        return faiss.IndexBinaryFlat(self.planes.shape[1])

    def __len__(self) -> int:
        return self._live_count

    @property
    def slots(self) -> int:
        """Slots used, live or dead (memory is held for these)."""
        return self._n

    # --- changes ---------------------------------------------------------------------

    def add(self, template_ids: I64, person_ids: I64, review_due: I32, vectors: F32) -> None:
        """Append templates (no rebuild): their codes join the scan at once."""
        if len(template_ids):
            codes = sign_codes(np.ascontiguousarray(vectors, np.float32), self.planes)
            self.add_encoded(template_ids, person_ids, review_due, vectors, codes)

    def add_encoded(
        self, template_ids: I64, person_ids: I64, review_due: I32, vectors: F32, codes: U8
    ) -> None:
        """Append templates whose codes are known (from a snapshot)."""
        count = len(template_ids)
        self._reserve(self._n + count)
        new = slice(self._n, self._n + count)
        self.vectors[new], self.codes[new] = vectors, codes
        self.template_ids[new], self.person_ids[new] = template_ids, person_ids
        self.review_due[new] = review_due
        self.live[new] = review_due >= self.today
        self._n += count
        self._live_count += int(self.live[new].sum())
        self._scan_add(np.flatnonzero(self.live[new]).astype(np.int64) + new.start)

    def drop_persons(self, person_ids: Iterable[int]) -> int:
        """Every template of these persons stops matching now; how many were live."""
        wanted = np.fromiter(person_ids, np.int64)
        if len(wanted) == 0 or self._n == 0:
            return 0
        hit = np.flatnonzero(np.isin(self.person_ids[: self._n], wanted) & self.live[: self._n])
        self._kill(hit)
        return len(hit)

    def expire(self, today: dt.date) -> int:
        """Set the date: templates whose review is due before ``today`` stop matching."""
        self.today = day_number(today)
        hit = np.flatnonzero(self.live[: self._n] & (self.review_due[: self._n] < self.today))
        self._kill(hit)
        return len(hit)

    def _kill(self, slots: I64) -> None:
        if len(slots) == 0:
            return
        self.live[slots] = False
        self.vectors[slots] = 0.0  # no decrypted copy of a dropped template stays around
        self._live_count -= len(slots)
        self._scan_dead += len(slots)
        if self._scan_dead > max(16, self.candidates // 8):
            self.compact_scan()

    def compact_scan(self) -> None:
        """Rebuild the code scan from the live slots (a copy of 32 bytes per template)."""
        self._scan = self._new_scan()
        self._scan_slots = np.zeros(0, np.int64)
        self._scan_dead = 0
        self._scan_add(np.flatnonzero(self.live[: self._n]).astype(np.int64))

    def _scan_add(self, slots: I64) -> None:
        if len(slots):
            self._scan.add(np.ascontiguousarray(self.codes[slots]))
            self._scan_slots = np.concatenate([self._scan_slots, slots])

    def _reserve(self, needed: int) -> None:
        capacity = len(self.template_ids)
        if needed <= capacity:
            return
        grown = max(needed, capacity + CHUNK, capacity + capacity // 8)
        n = self._n
        vectors, codes, tids, pids = self.vectors, self.codes, self.template_ids, self.person_ids
        due, live = self.review_due, self.live
        self._alloc(grown, codes.shape[1])
        self.vectors[:n], self.codes[:n] = vectors[:n], codes[:n]
        self.template_ids[:n], self.person_ids[:n] = tids[:n], pids[:n]
        self.review_due[:n], self.live[:n] = due[:n], live[:n]

    # --- search ----------------------------------------------------------------------

    def search(self, queries: F32, k: int) -> list[list[Match]]:
        queries = np.atleast_2d(queries).astype(np.float32)
        if self._live_count == 0:
            return [[] for _ in range(len(queries))]
        if self._live_count < self.exact_below:
            return self._search_exact(queries, k)
        return self._search_codes(queries, k)

    def _search_exact(self, queries: F32, k: int) -> list[list[Match]]:
        n = self._n
        if self._live_count == n:  # nothing dropped: no copy
            vectors, pids, tids = self.vectors[:n], self.person_ids[:n], self.template_ids[:n]
        else:
            slots = np.flatnonzero(self.live[:n])
            vectors, pids, tids = (
                self.vectors[slots],
                self.person_ids[slots],
                self.template_ids[slots],
            )
        sims = queries @ vectors.T
        return [best_persons(row, pids, tids, k) for row in sims]

    def _search_codes(self, queries: F32, k: int) -> list[list[Match]]:
        depth = min(self.candidates, len(self._scan_slots))
        _, positions = self._scan.search(sign_codes(queries, self.planes), depth)
        out = []
        for query, row in zip(queries, positions, strict=True):
            slots = self._scan_slots[row[row >= 0]]
            slots = slots[self.live[slots]]  # dropped or expired since: filtered at once
            sims = np.einsum("ij,j->i", self.vectors[slots], query)  # no BLAS threads
            out.append(best_persons(sims, self.person_ids[slots], self.template_ids[slots], k))
        return out

    def memory_bytes(self) -> int:
        """Bytes held by the templates, codes and scan (what a million costs)."""
        arrays = (self.vectors, self.codes, self.template_ids, self.person_ids, self.review_due)
        held = sum(a.nbytes for a in arrays) + self.live.nbytes + self._scan_slots.nbytes
        return int(held + len(self._scan_slots) * self.codes.shape[1])


# --- snapshot: the index saved encrypted at rest ------------------------------------------

MAGIC = b"RWANN\x00\x01\x00"
PIECE = 8 << 20  # plaintext bytes per AES-GCM piece: loading holds one piece extra
_ARRAYS = ("template_ids", "person_ids", "review_due", "vectors", "codes")


class SnapshotError(Exception):
    """A snapshot that cannot be used (missing, another key, damaged, another layout)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    index: LiveIndex
    generation: int


def save_snapshot(index: LiveIndex, generation: int, path: Path, key: bytes) -> int:
    """Write the live templates (ids, review dates, vectors, codes) to ``path``, encrypted
    with AES-256-GCM in pieces; atomic (written beside, then renamed). Returns bytes."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    live = np.flatnonzero(index.live[: index.slots])
    header = json.dumps(
        {
            "generation": generation,
            "today": index.today,
            "count": len(live),
            "dim": index.dim,
            "bits": index.planes.shape[1],
            "seed": HYPERPLANE_SEED,
        }
    ).encode()
    aead, tmp = AESGCM(key), path.with_name(path.name + ".tmp")
    with tmp.open("wb") as out:
        out.write(MAGIC + struct.pack("<I", len(header)) + header)
        for name in _ARRAYS:
            data = np.ascontiguousarray(getattr(index, name)[live])
            raw = data.reshape(-1).view(np.uint8)
            for number, start in enumerate(range(0, max(len(raw), 1), PIECE)):
                nonce = os.urandom(12)
                aad = MAGIC + header + f"{name}:{number}".encode()
                sealed = aead.encrypt(nonce, raw[start : start + PIECE].tobytes(), aad)
                out.write(nonce + struct.pack("<Q", len(sealed)) + sealed)
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)
    return path.stat().st_size


def load_snapshot(path: Path, key: bytes, make: Callable[[int], LiveIndex]) -> Snapshot:
    """Read a snapshot written by :func:`save_snapshot` into ``make(count)``."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        with path.open("rb") as src:
            if src.read(len(MAGIC)) != MAGIC:
                raise SnapshotError(f"{path}: not a ringwatch index snapshot (or another version)")
            header = src.read(struct.unpack("<I", src.read(4))[0])
            meta = json.loads(header)
            index = make(int(meta["count"]))
            if (meta["dim"], meta["bits"], meta["seed"]) != (
                index.dim,
                index.planes.shape[1],
                HYPERPLANE_SEED,
            ):
                raise SnapshotError(f"{path}: written for another index layout")
            arrays = _read_arrays(src, AESGCM(key), header, index, int(meta["count"]))
    except OSError as exc:
        raise SnapshotError(f"{path}: {exc.strerror or exc}") from None
    except InvalidTag:
        raise SnapshotError(
            f"{path}: fails authentication (another template_key, or damaged)"
        ) from None
    except (ValueError, KeyError, struct.error) as exc:
        raise SnapshotError(f"{path}: damaged ({type(exc).__name__}: {exc})") from None
    index.today = int(meta["today"])
    index.add_encoded(*arrays)
    return Snapshot(index, int(meta["generation"]))


def _read_arrays(
    src: BinaryIO, aead: Any, header: bytes, index: LiveIndex, count: int
) -> tuple[I64, I64, I32, F32, U8]:
    shapes = {
        "template_ids": ((count,), np.int64),
        "person_ids": ((count,), np.int64),
        "review_due": ((count,), np.int32),
        "vectors": ((count, index.dim), np.float32),
        "codes": ((count, index.codes.shape[1]), np.uint8),
    }
    out: dict[str, npt.NDArray[Any]] = {}
    for name in _ARRAYS:
        shape, dtype = shapes[name]
        array = np.empty(shape, dtype)
        raw = array.reshape(-1).view(np.uint8)
        for number, start in enumerate(range(0, max(len(raw), 1), PIECE)):
            nonce = src.read(12)
            sealed = src.read(struct.unpack("<Q", src.read(8))[0])
            plain = aead.decrypt(nonce, sealed, MAGIC + header + f"{name}:{number}".encode())
            if len(plain) != len(raw[start : start + PIECE]):
                raise ValueError(f"{name} piece {number} has {len(plain)} bytes")
            raw[start : start + len(plain)] = np.frombuffer(plain, np.uint8)
        out[name] = array
    return (
        out["template_ids"],
        out["person_ids"],
        out["review_due"],
        out["vectors"],
        out["codes"],
    )


__all__ = [
    "BITS",
    "LiveIndex",
    "Match",
    "Snapshot",
    "SnapshotError",
    "best_persons",
    "hyperplanes",
    "load_snapshot",
    "save_snapshot",
    "sign_codes",
]
