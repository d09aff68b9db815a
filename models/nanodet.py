"""Person detection with NanoDet-Plus (OpenCV zoo 2022nov), the selectable alternative.

Contract (../shared/models/MODELS.md, output layout checked with onnxruntime): input
``input.1`` [1,3,416,416] BGR, ``(x - mean) / std``, centred letterbox with pad 0. Six
outputs whose names carry no meaning ('792', '814', ...): three class maps [1,N,80]
(sigmoid already applied) and three GFL box maps [1,N,32] for strides 8, 16, 32 (N =
2704, 676, 169). Each box map holds 4 distributions of 8 bins (left, top, right, bottom
distances from the cell's point); the distance is the softmax expectation times the stride.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ringwatch.errors import ModelError
from ringwatch.models.detections import Detections
from ringwatch.models.letterbox import Letterbox, LetterboxGeometry
from ringwatch.models.runtime import OnnxModel
from ringwatch.models.yolox import PERSON, DetectionFilter, grid_points

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

MEAN = np.array([103.53, 116.28, 123.675], np.float32)
STD = np.array([57.375, 57.12, 58.395], np.float32)
BINS = 8


def split_outputs(outputs: list[F32], num_classes: int = 80) -> tuple[F32, F32]:
    """Concatenate the per-stride maps, finest stride first, whatever the output order:
    class scores ``(N,C)`` and box distributions ``(N,4*BINS)``."""
    maps = [o.reshape(o.shape[-2], o.shape[-1]) for o in outputs]
    cls = sorted((m for m in maps if m.shape[1] == num_classes), key=lambda m: -m.shape[0])
    box = sorted((m for m in maps if m.shape[1] == 4 * BINS), key=lambda m: -m.shape[0])
    if len(cls) != len(box) or not cls:
        shapes = [tuple(o.shape) for o in outputs]
        raise ModelError(f"NanoDet outputs {shapes}: expected class and box maps per stride")
    return np.concatenate(cls).astype(np.float32), np.concatenate(box).astype(np.float32)


def gfl_distances(box_maps: F32) -> F32:
    """``(N,4*BINS)`` logits -> ``(N,4)`` expected distances in bins (left, top, right,
    bottom): softmax over each side's bins, then the expectation of the bin index."""
    logits = box_maps.reshape(-1, 4, BINS)
    logits = logits - logits.max(axis=2, keepdims=True)
    prob = np.exp(logits)
    prob /= prob.sum(axis=2, keepdims=True)
    distances: F32 = (prob @ np.arange(BINS, dtype=np.float32)).astype(np.float32)
    return distances


def decode_nanodet(box_maps: F32, size: int) -> F32:
    """Boxes ``(N,4)`` xyxy in input pixels. This export puts each point at
    ``cell * stride + (stride - 1) / 2`` (as the OpenCV zoo's demo does); without that
    offset its boxes sit ~5 px up-left of YOLOX's on the same people (checked on
    towncentre frames)."""
    cells, steps = grid_points(size)
    if box_maps.shape[0] != cells.shape[0]:
        raise ModelError(f"NanoDet box maps have {box_maps.shape[0]} rows, not {cells.shape[0]}")
    points = cells * steps[:, None] + (steps[:, None] - 1) / 2
    dist = gfl_distances(box_maps) * steps[:, None]
    boxes = np.concatenate([points - dist[:, :2], points + dist[:, 2:]], axis=1)
    return boxes.astype(np.float32)


class NanoDetPersonDetector:
    """NanoDet-Plus on one BGR frame -> persons (or other COCO ``classes``) in frame pixels."""

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
        self.letterbox = Letterbox(self.SIZE, self.SIZE, centred=True, pad_value=0)
        self.filter = DetectionFilter(score_threshold, nms_iou, classes, min_size)

    def preprocess(self, bgr: U8) -> tuple[F32, LetterboxGeometry]:
        """The normalised NCHW float32 tensor and the letterbox geometry."""
        image, geometry = self.letterbox.fit(bgr)
        normalised = (image.astype(np.float32) - MEAN) / STD
        tensor = normalised.transpose(2, 0, 1)[None].astype(np.float32)
        return np.ascontiguousarray(tensor), geometry

    def postprocess(self, outputs: list[F32], geometry: LetterboxGeometry) -> Detections:
        scores, box_maps = split_outputs(outputs)
        return self.filter.apply(decode_nanodet(box_maps, self.SIZE), scores, geometry)

    def detect(self, bgr: U8) -> Detections:
        """Detections in pixels of ``bgr``; ``class_id`` is the COCO id (0 = person)."""
        tensor, geometry = self.preprocess(bgr)
        return self.postprocess(self.model.run(tensor), geometry)
