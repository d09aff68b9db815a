"""All detectors of one box behind one call: ``Perception.analyze(bgr) -> FrameDetections``.

Built from an installed models folder for the tasks a camera needs (faces, persons, fire),
with the shipped thresholds; each model is loaded once (checksum verified) and warmed up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from ringwatch.errors import ConfigError
from ringwatch.models.detections import Detections
from ringwatch.models.fire import FireSmokeDetector
from ringwatch.models.install import model_path
from ringwatch.models.manifest import load_manifest
from ringwatch.models.nanodet import NanoDetPersonDetector
from ringwatch.models.runtime import OnnxModel, RuntimeOptions
from ringwatch.models.sface import FaceEmbedder
from ringwatch.models.tiling import TiledDetector, Tiling
from ringwatch.models.yolox import YoloxPersonDetector
from ringwatch.models.yunet import FaceDetector

if TYPE_CHECKING:
    from ringwatch.edge.config import Thresholds

U8 = npt.NDArray[np.uint8]

TASKS = ("faces", "persons", "fire")
PERSON_MODELS = ("yolox_nano", "nanodet")


class Detector(Protocol):
    def detect(self, bgr: U8) -> Detections: ...


class RegionDetector(Protocol):
    def detect(self, bgr: U8, persons: Detections) -> Detections: ...


class Embedder(Protocol):
    def embed(self, bgr: U8, faces: Detections) -> Detections: ...


def _empty() -> Detections:
    return Detections.empty()


@dataclass(frozen=True, slots=True)
class FrameDetections:
    """What one frame holds; a task that was not requested stays empty."""

    faces: Detections = field(default_factory=_empty)
    persons: Detections = field(default_factory=_empty)
    fire: Detections = field(default_factory=_empty)


class Perception:
    """Runs the requested detectors on a frame. Each slot is optional (None = not asked)."""

    def __init__(
        self,
        faces: Detector | None = None,
        persons: Detector | None = None,
        fire: Detector | None = None,
        embedder: Embedder | None = None,
        face_regions: RegionDetector | None = None,
    ) -> None:
        self.faces = faces
        self.persons = persons
        self.fire = fire
        self.embedder = embedder
        # Faces searched only in the upper parts of the person boxes (needs persons).
        self.face_regions = face_regions if persons is not None else None

    @classmethod
    def from_models_dir(
        cls,
        models_dir: Path,
        options: RuntimeOptions,
        thresholds: Thresholds,
        tasks: set[str],
        person_model: str = "yolox_nano",
        tiling: Tiling | None = None,
        faces_in_persons: bool = False,
        fit_face_canvas: bool = False,
        fit_person_canvas: bool = False,
    ) -> Perception:
        """Load, verify and warm up the models ``tasks`` need (faces also loads SFace)."""
        unknown = sorted(set(tasks) - set(TASKS))
        if unknown:
            raise ConfigError(f"unknown task(s) {unknown}: choose from {list(TASKS)}")
        loader = _Loader(models_dir, options)
        faces = embedder = persons = fire = None
        if person_model not in PERSON_MODELS:
            raise ConfigError(f"person model {person_model!r}: choose from {list(PERSON_MODELS)}")
        if "faces" in tasks:
            faces = FaceDetector(loader.load("yunet"), thresholds.face)
            embedder = FaceEmbedder(loader.load("sface"))
        tiling = tiling if tiling is not None and tiling.mode != "off" else None
        # the fitted canvas is for whole frames: a tiling camera runs the plain detector
        if (
            "persons" in tasks
            and fit_person_canvas
            and person_model == "yolox_nano"
            and tiling is None
        ):
            from ringwatch.models.face_regions import flexible_model
            from ringwatch.models.fit_yolox import FitYoloxDetector

            flex_yolox = OnnxModel(flexible_model(loader.path(person_model)), options)
            flex_yolox.run(np.zeros((1, 3, 256, 416), np.float32))  # warm-up, 16:9
            fitted: Detector = FitYoloxDetector(flex_yolox, thresholds.person)
            persons = fitted
        elif "persons" in tasks:
            persons = person_detector(loader.load(person_model), person_model, thresholds.person)
            if tiling is not None:
                persons = TiledDetector(persons, tiling)
        if "fire" in tasks:
            fire = FireSmokeDetector(loader.load("fire_smoke"), thresholds.fire, thresholds.smoke)
        regions = None
        if faces is not None and (faces_in_persons or fit_face_canvas):
            from ringwatch.models.face_regions import (
                FitFaceDetector,
                RegionFaceDetector,
                flexible_model,
            )

            flex = OnnxModel(flexible_model(loader.path("yunet")), options)
            if fit_face_canvas:
                faces = FitFaceDetector(flex, thresholds.face)
            if faces_in_persons and persons is not None:
                regions = RegionFaceDetector(FaceDetector(flex, thresholds.face))
        return cls(faces, persons, fire, embedder, regions)

    def analyze(self, bgr: U8, embeddings: bool = False) -> FrameDetections:
        """Every requested detector on ``bgr``; face embeddings only when asked (costly)."""
        persons = self.persons.detect(bgr) if self.persons is not None else Detections.empty()
        if self.face_regions is not None:
            faces = self.face_regions.detect(bgr, persons)
        else:
            faces = self.faces.detect(bgr) if self.faces is not None else Detections.empty()
        if embeddings and self.embedder is not None and len(faces):
            faces = self.embedder.embed(bgr, faces)
        return FrameDetections(
            faces=faces,
            persons=persons,
            fire=self.fire.detect(bgr) if self.fire is not None else Detections.empty(),
        )


def person_detector(model: OnnxModel, name: str, score_threshold: float) -> Detector:
    """The person detector for manifest model ``name`` (yolox_nano or nanodet)."""
    if name == "yolox_nano":
        return YoloxPersonDetector(model, score_threshold)
    if name == "nanodet":
        return NanoDetPersonDetector(model, score_threshold)
    raise ConfigError(f"person model {name!r}: choose from {list(PERSON_MODELS)}")


class _Loader:
    """Opens manifest models from one folder, each checked and warmed up once."""

    def __init__(self, models_dir: Path, options: RuntimeOptions) -> None:
        self.models_dir = models_dir
        self.options = options
        self.manifest = load_manifest()

    def path(self, name: str) -> Path:
        try:
            entry = self.manifest.get(name)
        except KeyError as exc:
            raise ConfigError(str(exc.args[0])) from None
        return model_path(entry, self.models_dir)

    def load(self, name: str) -> OnnxModel:
        model = OnnxModel(self.path(name), self.options)
        model.warm_up()
        return model
