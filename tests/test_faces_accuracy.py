"""Face accuracy on real data, guarded by floors set just under what was measured.

Figures and how they were chosen: docs/faces.md. Reproduce them with
``ringwatch faces eval-lfw`` and ``ringwatch faces eval-watchlist``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ringwatch.edge.faces_cli import (
    Gallery,
    LfwImage,
    LfwResult,
    evaluate_lfw,
    image_files,
    load_gallery,
    probe_matches,
    video_faces,
)
from ringwatch.models.faces import (
    SAME_PERSON_THRESHOLD,
    FacePipeline,
    read_image,
)
from ringwatch.models.identification import threshold_for_gallery
from ringwatch.models.sface import cosine

pytestmark = [pytest.mark.slow, pytest.mark.data]

# Measured on the LFW dev fold (docs/faces.md): 100.0% at the best threshold, 100.0% at
# SAME_PERSON_THRESHOLD. Floors are about 0.5 points under.
LFW_BEST_FLOOR = 0.995
LFW_SHIPPED_FLOOR = 0.995

# Every face in each probe, left to right is not asserted: the named people must each be
# found exactly once and every other face must match nobody.
PROBES = {
    "alex_lacamoire1.jpg": ["alex_lacamoire"],
    "johnsnow_test1.jpg": ["kit_harington"],
    "kit_with_rose.jpg": ["kit_harington", "rose_leslie"],
    "obama1.jpg": ["obama"],
    "obama_and_biden.jpg": ["biden", "obama"],
}


@pytest.fixture(scope="module")
def pipeline(face_pipeline: FacePipeline) -> FacePipeline:
    return face_pipeline


@pytest.fixture(scope="module")
def lfw_dir(data_dir: Path) -> Path:
    return data_dir / "faces" / "lfw_dev"


@pytest.fixture(scope="module")
def lfw_images(lfw_embedded: dict[str, LfwImage]) -> dict[str, LfwImage]:
    """All 776 LFW images detected and embedded once for the whole session (conftest)."""
    return lfw_embedded


@pytest.fixture(scope="module")
def lfw(lfw_dir: Path, lfw_images: dict[str, LfwImage]) -> LfwResult:
    return evaluate_lfw(lfw_dir, lfw_images)


@pytest.fixture(scope="module")
def demo(data_dir: Path) -> Path:
    return data_dir / "faces" / "watchlist_demo"


@pytest.fixture(scope="module")
def gallery(pipeline: FacePipeline, demo: Path) -> Gallery:
    return load_gallery(pipeline, demo / "knn" / "train")


def test_lfw_faces_found(lfw: LfwResult) -> None:
    assert lfw.pairs == 600 and lfw.images == 776
    assert len(lfw.fallback_used) <= 0.01 * lfw.images, lfw.fallback_used
    assert lfw.not_found == []


def test_lfw_accuracy_at_best_threshold(lfw: LfwResult) -> None:
    assert lfw.best_accuracy >= max(0.99, LFW_BEST_FLOOR)


def test_lfw_held_out_pairs(lfw: LfwResult) -> None:
    """Threshold tuned on one part of the pairs, accuracy on the other (issue 16 goals:
    >= 99.6% at the best threshold, >= 99.3% at the shipped one)."""
    split = lfw.split
    assert split.tuning_pairs + split.held_out_pairs == 600 and split.held_out_pairs >= 250
    assert split.held_out_best >= 0.996
    assert split.held_out_shipped >= 0.993 and split.held_out_at_tuned >= 0.993


def test_lfw_accuracy_at_shipped_threshold(lfw: LfwResult) -> None:
    assert lfw.shipped_accuracy >= max(0.985, LFW_SHIPPED_FLOOR)


def test_lfw_same_and_different_pairs_are_apart(lfw: LfwResult) -> None:
    """Alignment errors show first here: same-person pairs fall towards impostor scores."""
    same, different = lfw.similarity[lfw.same], lfw.similarity[~lfw.same]
    assert float(np.median(same)) > 0.6 and float(np.median(different)) < 0.1


def test_watchlist_gallery(gallery: Gallery) -> None:
    assert Counter(gallery.labels) == {
        "alex_lacamoire": 1,
        "biden": 2,
        "kit_harington": 2,
        "obama": 2,
        "rose_leslie": 2,
    }


@pytest.mark.parametrize("probe", sorted(PROBES))
def test_watchlist_probe(pipeline: FacePipeline, gallery: Gallery, demo: Path, probe: str) -> None:
    matches = probe_matches(pipeline, gallery, demo / "knn" / "test" / probe)
    assert sorted(m for m in matches if m is not None) == PROBES[probe]


def test_watchlist_probes_are_all_tested(demo: Path) -> None:
    assert [p.name for p in image_files(demo / "knn" / "test")] == sorted(PROBES)


def test_lfw_faces_rarely_match_the_watchlist(
    gallery: Gallery, lfw_images: dict[str, LfwImage]
) -> None:
    """Strangers named at most 1% of the time at the gallery's threshold (FPIR <= 1%, the
    calibration's promise). Measured: 2 of 995 faces at 0.436 (highest 0.479)."""
    hits = sum(
        m is not None
        for image in lfw_images.values()
        if image.faces.embeddings is not None
        for m in gallery.match(image.faces.embeddings)
    )
    faces = sum(len(image.faces) for image in lfw_images.values())
    assert faces >= 776
    assert hits <= 0.01 * faces, hits


def test_lin_manuel_miranda_found_in_the_clip(pipeline: FacePipeline, demo: Path) -> None:
    _, lin = pipeline.largest_face_embedding(read_image(demo / "lin-manuel-miranda.png"))
    matched = []
    for index, faces in video_faces(pipeline, demo / "short_hamilton_clip.mp4", every_n=5):
        assert faces.embeddings is not None
        if len(faces) and float(cosine(faces.embeddings, lin).max()) >= threshold_for_gallery(1):
            matched.append(index)
    # He is on stage in the close-up from about 2.8 s to 7 s (frames 85-210); from frame 215
    # the camera shows the audience, where he is not.
    assert len(matched) >= 20
    assert all(i < 215 for i in matched)
    assert threshold_for_gallery(1) >= SAME_PERSON_THRESHOLD
