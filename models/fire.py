"""Fire and smoke detection with any model that follows the YOLOv8 output contract.

Contract: input [1,3,S,S] RGB scaled to 0-1, centred letterbox with pad 114; output
[1, 4+K, N]: rows ``cx, cy, w, h`` in input pixels, then K class probabilities (no
objectness). The shipped export (../shared/models/MODELS.md) has K=2: class 0 smoke,
class 1 fire. Nothing here depends on that particular network: a site may drop in its own
model with the same contract.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from ringwatch.errors import ModelError
from ringwatch.models.detections import Detections
from ringwatch.models.letterbox import Letterbox, LetterboxGeometry
from ringwatch.models.nms import nms
from ringwatch.models.runtime import OnnxModel

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

SMOKE_CLASS = 0
FIRE_CLASS = 1
CLASS_NAMES = {SMOKE_CLASS: "smoke", FIRE_CLASS: "fire"}


def decode_yolov8(raw: F32) -> tuple[F32, F32]:
    """``(4+K, N)`` -> boxes ``(N,4)`` xyxy in input pixels and class scores ``(N,K)``."""
    if raw.ndim != 2 or raw.shape[0] < 5:
        raise ModelError(f"YOLOv8 output {raw.shape}: expected (4+K, N) with K >= 1")
    cx, cy, w, h = raw[0], raw[1], raw[2], raw[3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return boxes.astype(np.float32), np.ascontiguousarray(raw[4:].T, dtype=np.float32)


def per_class_candidates(boxes: F32, scores: F32, thresholds: dict[int, float]) -> Detections:
    """One candidate per (box, class) whose score reaches that class's own threshold, so a
    box scoring 0.6 fire and 0.8 smoke can count as both (classes not in ``thresholds``
    are ignored)."""
    rows: list[npt.NDArray[np.int64]] = []
    classes: list[npt.NDArray[np.int32]] = []
    for class_id, threshold in sorted(thresholds.items()):
        if class_id >= scores.shape[1]:
            raise ModelError(f"model has {scores.shape[1]} classes, no class {class_id}")
        hit = np.flatnonzero(scores[:, class_id] >= threshold)
        rows.append(hit)
        classes.append(np.full(hit.size, class_id, np.int32))
    index = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    ids = np.concatenate(classes) if classes else np.zeros(0, np.int32)
    return Detections(
        xyxy=boxes[index], confidence=scores[index, ids].astype(np.float32), class_id=ids
    )


class FireSmokeDetector:
    """Fire (class 1) and smoke (class 0) boxes in frame pixels, each class kept only at
    or above its own threshold, then class-wise NMS."""

    def __init__(
        self,
        model: OnnxModel,
        fire_threshold: float,
        smoke_threshold: float,
        nms_iou: float = 0.45,
    ) -> None:
        self.model = model
        size = self._input_size(model)
        self.letterbox = Letterbox(size, size, centred=True, pad_value=114)
        self.thresholds = {FIRE_CLASS: fire_threshold, SMOKE_CLASS: smoke_threshold}
        self.nms_iou = nms_iou

    @staticmethod
    def _input_size(model: OnnxModel) -> int:
        side = model.input_shape[-1] if model.input_shape else None
        return side if isinstance(side, int) and side > 0 else 416

    def preprocess(self, bgr: U8) -> tuple[F32, LetterboxGeometry]:
        """The NCHW float32 tensor (RGB, 0-1) and the letterbox geometry."""
        image, geometry = self.letterbox.fit(bgr)
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        tensor = rgb.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255.0)
        return np.ascontiguousarray(tensor), geometry

    def postprocess(self, outputs: list[F32], geometry: LetterboxGeometry) -> Detections:
        boxes, scores = decode_yolov8(outputs[0][0])
        dets = per_class_candidates(boxes, scores, self.thresholds)
        dets = dets.with_columns(xyxy=geometry.to_source(dets.xyxy))
        return nms(dets, self.nms_iou)

    def detect(self, bgr: U8) -> Detections:
        """Fire and smoke detections in pixels of ``bgr``."""
        tensor, geometry = self.preprocess(bgr)
        return self.postprocess(self.model.run(tensor), geometry)
