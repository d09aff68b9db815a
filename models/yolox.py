"""Person detection with YOLOX-nano: letterbox, grid decode, class filter, size filter, NMS.

Contract (../shared/models/MODELS.md): input ``images`` [1,3,416,416] BGR 0-255, no
normalisation, letterbox top-left with pad 114; output [1,3549,85] raw, rows
``x, y, w, h, objectness, 80 class scores`` over the grids of strides 8, 16 and 32;
``xy = (p + grid) * stride``, ``wh = exp(p) * stride``, score = objectness * class score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ringwatch.errors import ModelError
from ringwatch.models.detections import Detections
from ringwatch.models.letterbox import Letterbox, LetterboxGeometry
from ringwatch.models.nms import nms
from ringwatch.models.runtime import OnnxModel

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

STRIDES = (8, 16, 32)
PERSON = 0


def grid_points(size: int, strides: tuple[int, ...] = STRIDES) -> tuple[F32, F32]:
    """Cell coordinates ``(N,2)`` (col, row) and the stride ``(N,)`` of each anchor point,
    row-major per stride, strides in order (the layout of YOLOX and NanoDet outputs)."""
    cells, steps = [], []
    for stride in strides:
        n = size // stride
        rows, cols = np.mgrid[0:n, 0:n]
        cells.append(np.stack([cols.ravel(), rows.ravel()], axis=1))
        steps.append(np.full(n * n, stride))
    return (
        np.concatenate(cells).astype(np.float32),
        np.concatenate(steps).astype(np.float32),
    )


def decode_yolox(raw: F32, size: int) -> tuple[F32, F32]:
    """Boxes ``(N,4)`` xyxy in input pixels and class scores ``(N,C)`` from ``(N,5+C)``."""
    cells, steps = grid_points(size)
    if raw.shape[0] != cells.shape[0]:
        raise ModelError(f"YOLOX output has {raw.shape[0]} rows, expected {cells.shape[0]}")
    centre = (raw[:, :2] + cells) * steps[:, None]
    half = np.exp(np.clip(raw[:, 2:4], -20.0, 20.0)) * steps[:, None] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)
    scores: F32 = (raw[:, 4:5] * raw[:, 5:]).astype(np.float32)
    return boxes, scores


@dataclass(frozen=True, slots=True)
class DetectionFilter:
    """Turn decoded boxes and per-class scores into final :class:`Detections`.

    Keeps, for each box, its best class among ``classes`` when that score reaches
    ``score_threshold``; maps boxes back to the source frame; drops boxes narrower or
    shorter than ``min_size`` source pixels; then class-wise NMS.
    """

    score_threshold: float
    nms_iou: float
    classes: tuple[int, ...]
    min_size: int

    def apply(self, boxes: F32, class_scores: F32, geometry: LetterboxGeometry) -> Detections:
        wanted = np.asarray(self.classes, np.int64)
        scores = class_scores[:, wanted]
        best = np.argmax(scores, axis=1) if scores.shape[0] else np.zeros(0, np.int64)
        confidence = scores[np.arange(scores.shape[0]), best]
        keep = confidence >= self.score_threshold
        xyxy = geometry.to_source(boxes[keep])
        dets = Detections(
            xyxy=xyxy,
            confidence=confidence[keep].astype(np.float32),
            class_id=wanted[best[keep]].astype(np.int32),
        )
        wide = (xyxy[:, 2] - xyxy[:, 0] >= self.min_size) & (
            xyxy[:, 3] - xyxy[:, 1] >= self.min_size
        )
        return nms(dets[wide], self.nms_iou)


class YoloxPersonDetector:
    """YOLOX-nano on one BGR frame -> persons (or other COCO ``classes``) in frame pixels."""

    SIZE = 416

    def __init__(
        self,
        model: OnnxModel,
        score_threshold: float = 0.3,
        nms_iou: float = 0.45,
        classes: tuple[int, ...] = (PERSON,),
        min_size: int = 8,
    ) -> None:
        self.model = model
        self.letterbox = Letterbox(self.SIZE, self.SIZE, centred=False, pad_value=114)
        self.filter = DetectionFilter(score_threshold, nms_iou, classes, min_size)

    def preprocess(self, bgr: U8) -> tuple[F32, LetterboxGeometry]:
        """The NCHW float32 input tensor (BGR 0-255) and the letterbox geometry."""
        image, geometry = self.letterbox.fit(bgr)
        tensor = image.transpose(2, 0, 1)[None].astype(np.float32)
        return np.ascontiguousarray(tensor), geometry

    def postprocess(self, outputs: list[F32], geometry: LetterboxGeometry) -> Detections:
        boxes, scores = decode_yolox(outputs[0][0], self.SIZE)
        return self.filter.apply(boxes, scores, geometry)

    def detect(self, bgr: U8) -> Detections:
        """Detections in pixels of ``bgr``; ``class_id`` is the COCO id (0 = person)."""
        tensor, geometry = self.preprocess(bgr)
        return self.postprocess(self.model.run(tensor), geometry)
