"""The face pipeline used by the edge agent and the hub's enrolment: detect, align, embed.

Also the small, pure measures used to choose and guard the same-person threshold
(verification accuracy, best threshold, gallery matching); see docs/faces.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ringwatch.errors import InputError
from ringwatch.models.detections import Detections
from ringwatch.models.install import model_path
from ringwatch.models.manifest import load_manifest
from ringwatch.models.runtime import OnnxModel, RuntimeOptions
from ringwatch.models.sface import FaceEmbedder, cosine
from ringwatch.models.yunet import FaceDetector

# 1:1 verification (`faces compare`, "are these two photos the same person?"): cosine at or
# above this is the same person. On the LFW dev fold every threshold in [0.319, 0.374] makes
# no error (best-accuracy midpoint 0.347); OpenCV's published 0.363 lies in that band, on its
# strict side, so it is kept (docs/faces.md).
SAME_PERSON_THRESHOLD: float = 0.363
# 1:N watch-list matching (one face against every enrolled template) has no fixed
# threshold: it follows the gallery size (models.identification.threshold_for_gallery).
# Still photos only (enrolment, `faces compare`): when nothing reaches the detector's
# threshold, look again at this lower one before saying there is no face.
FALLBACK_SCORE_THRESHOLD = 0.3

F32 = npt.NDArray[np.float32]
DEFAULT_OPTIONS = RuntimeOptions()  # frozen, so one shared default is safe


def read_image(path: Path) -> npt.NDArray[np.uint8]:
    """The image at ``path`` as BGR uint8; InputError naming the file if it cannot be read."""
    import cv2

    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:  # cv2 says nothing about why; the file is unreadable or not an image
        raise InputError(f"{path}: cannot be decoded as an image (corrupt or unsupported)")
    return np.asarray(image, dtype=np.uint8)


class FacePipeline:
    """YuNet detection + SFace embedding over one shared pair of onnxruntime sessions."""

    def __init__(
        self, detector: FaceDetector, embedder: FaceEmbedder, fallback: FaceDetector | None = None
    ) -> None:
        self.detector = detector
        self.embedder = embedder
        self.fallback = fallback

    @classmethod
    def from_models_dir(
        cls,
        models_dir: Path,
        options: RuntimeOptions = DEFAULT_OPTIONS,
        score_threshold: float = 0.6,
    ) -> FacePipeline:
        """Load the manifest's ``yunet`` and ``sface`` from ``models_dir`` (verified by
        checksum) and warm each up once."""
        manifest = load_manifest()
        yunet = OnnxModel(model_path(manifest.get("yunet"), models_dir), options)
        sface = OnnxModel(model_path(manifest.get("sface"), models_dir), options)
        yunet.warm_up()
        sface.warm_up()
        fallback = FaceDetector(yunet, min(score_threshold, FALLBACK_SCORE_THRESHOLD))
        return cls(FaceDetector(yunet, score_threshold), FaceEmbedder(sface), fallback)

    def detect(self, bgr: npt.NDArray[np.uint8]) -> Detections:
        return self.detector.detect(bgr)

    def detect_and_embed(self, bgr: npt.NDArray[np.uint8]) -> Detections:
        return self.embedder.embed(bgr, self.detector.detect(bgr))

    def largest_face_embedding(
        self, bgr: npt.NDArray[np.uint8], source: str = "the image"
    ) -> tuple[Detections, F32]:
        """The largest face (one row, with its embedding) and its (128,) embedding; falls
        back to a lower detector threshold on a still photo before giving up."""
        faces = self.detector.detect(bgr)
        if len(faces) == 0 and self.fallback is not None:
            faces = self.fallback.detect(bgr)
        if len(faces) == 0:
            raise InputError(f"no face found in {source}")
        largest = self.embedder.embed(bgr, faces[int(np.argmax(faces.area))])
        assert largest.embeddings is not None
        return largest, largest.embeddings[0]


def accuracy_at(similarity: F32, same: npt.NDArray[np.bool_], threshold: float) -> float:
    """Share of pairs called right when ``similarity >= threshold`` means same person."""
    return float(np.mean((similarity >= threshold) == same))


def best_threshold(similarity: F32, same: npt.NDArray[np.bool_]) -> tuple[float, float]:
    """(threshold, accuracy) maximising accuracy; among equally good thresholds, the middle
    one of the candidates (midpoints between consecutive similarities)."""
    values = np.unique(similarity.astype(np.float64))
    candidates = np.concatenate([[values[0] - 1e-6], (values[:-1] + values[1:]) / 2])
    scores = np.array([accuracy_at(similarity, same, float(t)) for t in candidates])
    best = np.flatnonzero(scores == scores.max())
    pick = int(best[len(best) // 2])
    return float(candidates[pick]), float(scores[pick])


def match_gallery(
    probes: F32, gallery: F32, labels: Sequence[str], threshold: float
) -> list[str | None]:
    """For each probe embedding, the label of its most similar gallery embedding if that
    similarity reaches ``threshold``, else None (nobody)."""
    if len(probes) == 0:
        return []
    if len(gallery) == 0:
        return [None] * len(probes)
    sims = cosine(np.atleast_2d(probes), np.atleast_2d(gallery))
    best = np.argmax(sims, axis=1)
    return [labels[int(j)] if sims[i, j] >= threshold else None for i, j in enumerate(best)]
