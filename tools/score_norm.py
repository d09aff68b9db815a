"""Does score normalisation raise watch-list TPIR at FPIR <= 1%? (issue 16)

The identification protocol of ``ringwatch faces eval-identification`` (docs/faces.md):
LFW dev identities split into a tuning and a held-out half, two templates per person,
galleries filled with synthetic distractors to 1k / 10k / 100k. For each way of scoring a
probe's rank-1 match, the threshold is the lowest with FPIR <= 1% on the tuning half's
non-mated probes (its two quarters cross-fitted, as the shipped calibration is); the
held-out half only reports. Rank 1 is by raw cosine in every variant (each transform is
monotone per probe), so "wrong person" does not move.

Variants:
- raw: the rank-1 cosine s1 (what the hub ships);
- margin k: s1 + k (s1 - s2), s2 the best template of another person or a distractor;
- T-norm: (s1 - mean) / sd of the probe's 50 highest scores against a fixed cohort of
  real faces of the other half (or quarter);
- cohort shift: s1 - that mean;
- fused templates: each person's templates plus their L2-normalised mean, raw scores.

Also lists the held-out mated probes that no variant can take: their own template's
cosine and the best other.

    .venv/bin/python tools/score_norm.py [--data ../shared/data] [--models DIR]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ringwatch.edge import identification_eval as ie
from ringwatch.models.identification import TopMatch, threshold_at_fpir

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
SIZES = (1_000, 10_000, 100_000)
COHORT_TOP = 50


@dataclass(frozen=True, slots=True)
class Scored:
    """Per probe: rank-1 cosine and label, the best of another label, cohort mean / sd."""

    s1: F64
    label: npt.NDArray[np.int64]
    s2: F64
    mu: F64
    sd: F64


def score(probes: F32, gallery: F32, labels: npt.NDArray[np.int64], cohort: F32) -> Scored:
    sims = (probes @ gallery.T).astype(np.float64)
    j = np.argmax(sims, axis=1)
    s1 = sims[np.arange(len(sims)), j]
    label = labels[j]
    s2 = np.where(labels[None, :] == label[:, None], -np.inf, sims).max(axis=1)
    top = np.sort(probes @ cohort.T, axis=1)[:, -COHORT_TOP:].astype(np.float64)
    return Scored(s1, label, s2, top.mean(axis=1), top.std(axis=1))


Variant = Callable[[Scored], F64]
VARIANTS: dict[str, Variant] = {
    "raw (shipped)": lambda s: s.s1,
    "margin 0.5": lambda s: s.s1 + 0.5 * (s.s1 - s.s2),
    "margin 1": lambda s: s.s1 + (s.s1 - s.s2),
    "T-norm": lambda s: (s.s1 - s.mu) / s.sd,
    "cohort shift": lambda s: s.s1 - s.mu,
}


def fused(probes: ie.ProbeSet) -> ie.ProbeSet:
    """The probe set with each person's mean template added (persons with >= 2)."""
    rows, labels = list(probes.gallery), list(probes.gallery_labels)
    for label in sorted(set(probes.gallery_labels.tolist())):
        own = probes.gallery[probes.gallery_labels == label]
        if len(own) > 1:
            mean = own.mean(axis=0)
            rows.append(mean / np.linalg.norm(mean))
            labels.append(label)
    return ie.ProbeSet(
        np.stack(rows).astype(np.float32),
        np.array(labels, np.int64),
        probes.mated,
        probes.mated_labels,
        probes.non_mated,
    )


def filled(probes: ie.ProbeSet, distractors: F32, size: int) -> tuple[F32, npt.NDArray[np.int64]]:
    extra = distractors[: max(0, size - len(probes.gallery))]
    labels = np.concatenate([probes.gallery_labels, np.full(len(extra), ie.DISTRACTOR_LABEL)])
    return np.concatenate([probes.gallery, extra]), labels


def main() -> int:
    from ringwatch.table import render_table

    _, _, images = ie.tool_inputs(__doc__.splitlines()[0])

    # (probe set, distractors, cohort) for the two tuning quarters and the held-out half
    quarters = [
        (
            ie.lfw_probe_set(images, ie.in_part(part), 2),
            ie.lfw_distractors(images, max(SIZES), ie.in_part(other)),
            ie.lfw_faces_matrix(images, ie.in_part(other)),
        )
        for part, other in ((0, 2), (2, 0))
    ]
    held = (
        ie.lfw_probe_set(images, ie.HELD_OUT, 2),
        ie.lfw_distractors(images, max(SIZES), ie.TUNING),
        ie.lfw_faces_matrix(images, ie.TUNING),
    )
    rows: list[tuple[str, ...]] = []
    for fuse in (False, True):
        for name, variant in VARIANTS.items():
            if fuse and name != "raw (shipped)":
                continue
            label = "fused templates" if fuse else name
            cells = []
            for size in SIZES:
                tuning_non: list[F64] = []
                for probes, distractors, cohort in quarters:
                    p = fused(probes) if fuse else probes
                    gallery, labels = filled(p, distractors, size)
                    tuning_non.append(variant(score(p.non_mated, gallery, labels, cohort)))
                pooled = np.concatenate(tuning_non).astype(np.float32)
                threshold = threshold_at_fpir(TopMatch(pooled, np.zeros(len(pooled), np.int64)))
                probes, distractors, cohort = held
                p = fused(probes) if fuse else probes
                gallery, labels = filled(p, distractors, size)
                mated = score(p.mated, gallery, labels, cohort)
                hit = variant(mated) >= threshold
                right = mated.label == p.mated_labels
                fpir = np.mean(variant(score(p.non_mated, gallery, labels, cohort)) >= threshold)
                cells.append(
                    f"{np.mean(hit & right):.3f} ({int(np.sum(hit & right))}/{len(right)}),"
                    f" wrong {np.mean(hit & ~right):.3f}, FPIR {fpir:.3f}"
                )
            rows.append((label, *cells))
    print(f"held-out half: {held[0].describe()}; thresholds from the tuning half (FPIR <= 1%)")
    print(render_table(("scoring", *(f"{s:,} templates" for s in SIZES)), rows))

    probes = held[0]
    sims = probes.mated @ probes.gallery.T
    names = sorted(ie.lfw_identities(images))
    hard = []
    for i, truth in enumerate(probes.mated_labels):
        own = float(sims[i][probes.gallery_labels == truth].max())
        other = float(sims[i][probes.gallery_labels != truth].max())
        if own < ie.shipped_threshold(len(probes.gallery)):
            hard.append((names[int(truth)], f"{own:.3f}", f"{other:.3f}"))
    print("\nheld-out mated probes below the shipped threshold against the enrolled gallery")
    print(render_table(("person", "own template", "best other"), hard))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
