"""Compare approximate 1:N indexes on the hub bench's data (why hub/ann.py uses sign codes).

Same gallery for every candidate: synthetic unit vectors with the real LFW dev embeddings
(SFace) mixed in, probes = the other LFW photos and synthetic random vectors; every
candidate's top 32 (or ``--candidates`` for the codes) are re-scored by exact cosine, as the
hub does, and recall@1 is measured against exact search. Candidates: usearch HNSW (i8),
hnswlib HNSW, faiss HNSW, faiss IVF (SQ8), faiss binary sign codes (the hub's choice).
usearch and hnswlib are not hub dependencies: ``pip install usearch hnswlib`` first.

    .venv/bin/python tools/ann_compare.py --size 100000 [--data ../shared/data] [--only hnswlib]
"""

from __future__ import annotations

import argparse
import functools
import importlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ringwatch.hub.ann import LiveIndex
from ringwatch.hub.bench import DECISIVE, RealFaces, _exact_top1, _gallery, _probes, _rss_mb
from ringwatch.table import render_table

Search = Callable[[np.ndarray], np.ndarray]  # one query (1, 128) -> candidate rows


def _lib(name: str) -> Any:
    return importlib.import_module(name)  # optional, untyped libraries


def usearch_hnsw(gallery: np.ndarray, ef: int) -> Search:
    index = _lib("usearch.index").Index(
        ndim=128, metric="cos", dtype="i8", connectivity=16, expansion_add=128
    )
    index.add(np.arange(len(gallery), dtype=np.uint64), gallery, threads=2)
    index.expansion_search = ef
    return lambda q: np.asarray(index.search(q, 32, threads=1).keys).ravel().astype(np.int64)


def hnswlib_hnsw(gallery: np.ndarray, ef: int) -> Search:
    index = _lib("hnswlib").Index(space="ip", dim=128)
    index.init_index(max_elements=len(gallery), ef_construction=128, M=16)
    index.set_num_threads(2)
    index.add_items(gallery, np.arange(len(gallery)))
    index.set_num_threads(1)
    index.set_ef(ef)
    return lambda q: np.asarray(index.knn_query(q, k=32)[0]).ravel().astype(np.int64)


def faiss_hnsw(gallery: np.ndarray, ef: int) -> Search:
    faiss = _lib("faiss")
    faiss.omp_set_num_threads(2)
    index = faiss.IndexHNSWFlat(128, 16, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 128
    index.add(gallery)
    faiss.omp_set_num_threads(1)
    index.hnsw.efSearch = ef
    return lambda q: np.asarray(index.search(q, 32)[1]).ravel()


def faiss_ivf(gallery: np.ndarray, nprobe: int) -> Search:
    faiss = _lib("faiss")
    faiss.omp_set_num_threads(2)
    nlist = 1024
    coarse = faiss.IndexFlatIP(128)
    index = faiss.IndexIVFScalarQuantizer(
        coarse, 128, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    rng = np.random.default_rng(0)
    index.train(gallery[rng.choice(len(gallery), min(len(gallery), nlist * 64), replace=False)])
    index.add(gallery)
    faiss.omp_set_num_threads(1)
    index.nprobe = nprobe
    return lambda q: np.asarray(index.search(q, 32)[1]).ravel()


CANDIDATES: dict[str, tuple[Callable[[np.ndarray, int], Search], int]] = {
    "usearch-hnsw-i8 ef128": (usearch_hnsw, 128),
    "hnswlib-hnsw ef128": (hnswlib_hnsw, 128),
    "faiss-hnsw ef128": (faiss_hnsw, 128),
    "faiss-ivf-sq8 nprobe64": (faiss_ivf, 64),
}


def _run(name: str, build: Callable[[], Search], gallery: np.ndarray, probes: Any) -> list[Any]:
    rss, t0 = _rss_mb(), time.perf_counter()
    search = build()
    built, held = time.perf_counter() - t0, _rss_mb() - rss
    rows = []
    for probe_name, (queries, truth, best) in probes.items():
        lat, hit = [], []
        for i, q in enumerate(queries):
            t1 = time.perf_counter()
            rows_ = search(q[None, :])
            rows_ = rows_[(rows_ >= 0) & (rows_ < len(gallery))]
            top = rows_[np.argmax(gallery[rows_] @ q)] if len(rows_) else -1
            lat.append((time.perf_counter() - t1) * 1000)
            hit.append(top == truth[i])
        hits = np.array(hit)
        sure = best >= DECISIVE
        rows.append(
            [
                name,
                probe_name,
                f"{np.percentile(lat, 50):.2f} / {np.percentile(lat, 99):.2f}",
                f"{hits.mean():.3f}",
                f"{hits[sure].mean():.3f}" if sure.any() else "-",
                f"{built:.1f}",
                f"{held:.0f}",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--data", type=Path, default=None, help="../shared/data (LFW faces)")
    parser.add_argument("--models", type=Path, default=Path("../shared/models"))
    parser.add_argument("--candidates", type=int, default=1024, help="codes re-scored")
    parser.add_argument("--only", default="", help="comma-separated names to run")
    args = parser.parse_args()
    real = None if args.data is None else RealFaces.from_lfw(args.models, args.data)
    gallery = _gallery(args.size, real)
    probes = {n: (q, *_exact_top1(gallery, q)) for n, q in _probes(gallery, real).items()}

    def codes() -> Search:
        index = LiveIndex(exact_below=0, candidates=args.candidates, capacity=len(gallery))
        ids = np.arange(len(gallery), dtype=np.int64)
        index.add(ids, ids, np.full(len(gallery), 10**6, np.int32), gallery)
        return lambda q: np.array([m.template_id for m in index.search(q, 1)[0]], np.int64)

    builders: dict[str, Callable[[], Search]] = {
        f"faiss-binary-codes (hub) K={args.candidates}": codes
    }
    for name, (make, param) in CANDIDATES.items():
        builders[name] = functools.partial(make, gallery, param)
    wanted = [w for w in args.only.split(",") if w]
    rows = []
    for name, build in builders.items():
        if not wanted or any(w in name for w in wanted):
            rows.extend(_run(name, build, gallery, probes))
    head = [
        "index",
        "probes",
        "p50 / p99 ms",
        "recall@1",
        "recall@1 best>=0.5",
        "build s",
        "RSS+ MB",
    ]
    print(f"{args.size:,} templates\n" + render_table(head, rows))


if __name__ == "__main__":
    main()
