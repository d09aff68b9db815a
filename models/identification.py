"""1:N identification: how often a face is named right (TPIR) or a stranger is named at all
(FPIR) at a threshold, for a gallery of a given size, and the threshold that follows the
gallery size.

One probe against N templates: the chance that *some* template of another person looks
alike grows with N, so a threshold that keeps strangers off a 10-person watch list lets
them onto a 100,000-template one. :data:`CALIBRATED_THRESHOLDS` holds, per gallery size,
the lowest threshold measured to keep FPIR (strangers named) at or below 1%, at 95%
confidence, on the tuning half of the LFW dev identities with synthetic distractor
templates (``ringwatch faces eval-identification``, docs/faces.md);
:func:`threshold_for_gallery` interpolates it in log(size); a gallery smaller than the
table's first row takes that row's threshold.

Definitions (ISO/IEC 19795-1 style, rank 1):

- TPIR(t): share of *mated* probes (their person is enrolled) whose most similar template
  is one of their own and reaches ``t``.
- wrong-person rate(t): share of mated probes whose most similar template is somebody
  else's and reaches ``t`` (the worst error: the wrong person is named).
- FPIR(t): share of *non-mated* probes (never enrolled) whose most similar template
  reaches ``t``.

Pure numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

TARGET_FPIR = 0.01
# (gallery size in templates, threshold at FPIR <= 1% at 95% confidence) measured on the
# tuning half of the LFW dev identities (``identification_eval.calibrate``: its ~680
# stranger probes), plain embeddings, two templates per person, synthetic distractors
# (docs/faces.md). The first row is a tuning quarter's own gallery; smaller galleries take
# it (their own FPIR-1% threshold would be lower still).
CALIBRATED_THRESHOLDS: tuple[tuple[int, float], ...] = (
    (57, 0.436),
    (1_000, 0.477),
    (10_000, 0.506),
    (100_000, 0.543),
)
CHUNK = 4096  # gallery rows scored at a time (bounds memory at 100k templates)


def threshold_for_gallery(
    size: int,
    table: Sequence[tuple[int, float]] = CALIBRATED_THRESHOLDS,
) -> float:
    """The calibrated threshold for a gallery of ``size`` templates: linear in log10(size)
    between the table's rows, the first row below them, the last segment's slope carried
    on above them (a larger gallery is never matched more loosely), never above 0.99."""
    sizes = np.log10(np.array([max(1, n) for n, _ in table], np.float64))
    values = np.array([t for _, t in table], np.float64)
    x = np.log10(max(1, size))
    at = float(np.interp(x, sizes, values))
    if x > sizes[-1] and len(sizes) > 1:
        slope = (values[-1] - values[-2]) / (sizes[-1] - sizes[-2])
        at = float(values[-1] + max(0.0, slope) * (x - sizes[-1]))
    return round(min(0.99, at), 4)


@dataclass(frozen=True, slots=True)
class TopMatch:
    """Per probe: the best similarity and the label of the template that gave it."""

    similarity: F32
    label: I64


def top_match(probes: F32, gallery: F32, labels: I64, chunk: int = CHUNK) -> TopMatch:
    """Rank-1 similarity and label of each probe (rows L2-normalised) over ``gallery``;
    label -1 and similarity -inf for an empty gallery."""
    best = np.full(len(probes), -np.inf, np.float32)
    label = np.full(len(probes), -1, np.int64)
    for start in range(0, len(gallery), chunk):
        sims = probes @ gallery[start : start + chunk].T
        j = np.argmax(sims, axis=1)
        top = sims[np.arange(len(probes)), j]
        better = top > best
        best = np.where(better, top, best)
        label = np.where(better, labels[start + j], label)
    return TopMatch(best, label)


def merge(a: TopMatch, b: TopMatch) -> TopMatch:
    """The better of two rank-1 results per probe (e.g. enrolled set and distractors)."""
    better = b.similarity > a.similarity
    return TopMatch(
        np.where(better, b.similarity, a.similarity), np.where(better, b.label, a.label)
    )


@dataclass(frozen=True, slots=True)
class Rates:
    threshold: float
    tpir: float
    wrong_person: float
    fpir: float


def rates(mated: TopMatch, truth: I64, non_mated: TopMatch, threshold: float) -> Rates:
    """TPIR, wrong-person rate and FPIR at ``threshold`` (see the module docstring)."""
    hit = mated.similarity >= threshold
    right = mated.label == truth
    return Rates(
        threshold=threshold,
        tpir=float(np.mean(hit & right)) if len(truth) else 0.0,
        wrong_person=float(np.mean(hit & ~right)) if len(truth) else 0.0,
        fpir=float(np.mean(non_mated.similarity >= threshold)) if len(non_mated.label) else 0.0,
    )


def allowed_strangers(n: int, fpir: float = TARGET_FPIR, z: float | None = None) -> int:
    """How many of ``n`` stranger probes may reach a threshold promising FPIR <= ``fpir``:
    ``floor(fpir * n)`` as measured, or, with ``z``, the most whose one-sided Wilson upper
    confidence bound (z = 1.645: 95%) is still at most ``fpir`` (the promise holds for the
    faces the sample stands for, not only for the sample). The bound takes the strangers as
    independent; photos of one person and one face probed against two galleries are not
    quite, so the confidence is nominal. Fewer than ~270 strangers cannot show 1% at 95%:
    then 0 (the threshold goes above every stranger's score)."""
    if z is None:
        return int(np.floor(fpir * n))
    k = 0
    while k + 1 <= n and _wilson_upper(k + 1, n, z) <= fpir:
        k += 1
    return k


def _wilson_upper(k: int, n: int, z: float) -> float:
    p, z2 = k / n, z * z
    centre = p + z2 / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return float((centre + spread) / (1 + z2 / n))


def threshold_at_fpir(
    non_mated: TopMatch, fpir: float = TARGET_FPIR, z: float | None = None
) -> float:
    """The lowest threshold (to 3 decimals, rounded up) whose FPIR is at most ``fpir``
    (with ``z``: at most ``fpir`` at that confidence, :func:`allowed_strangers`)."""
    scores = np.sort(non_mated.similarity.astype(np.float64))[::-1]
    allowed = allowed_strangers(len(scores), fpir, z)  # this many strangers may reach it
    if allowed >= len(scores):
        return -1.0
    cut = scores[allowed]  # the (allowed+1)-th highest must stay below the threshold
    return float(np.floor(cut * 1000) / 1000 + 0.001)


def synthetic_distractors(reference: F32, n: int, seed: int = 0) -> F32:
    """``n`` L2-normalised embeddings drawn from a Gaussian fitted to ``reference`` (one
    embedding per person, so the spread is between people): the mean and the covariance
    of real faces, shrunk a little towards its diagonal for stability. They stand in for
    the faces of strangers enrolled by other stations when no real gallery that large is
    available; docs/faces.md compares their impostor scores with real ones."""
    ref = reference.astype(np.float64)
    mean = ref.mean(axis=0)
    cov = np.cov(ref, rowvar=False)
    cov = 0.9 * cov + 0.1 * np.diag(np.diag(cov))
    rng = np.random.default_rng(seed)
    draws = rng.multivariate_normal(mean, cov, size=n, method="cholesky")
    out: F32 = (draws / np.linalg.norm(draws, axis=1, keepdims=True)).astype(np.float32)
    return out
