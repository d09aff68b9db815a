"""YOLOX-nano on a canvas fitted to the frame instead of the 416x416 square.

A 640x360 frame letterboxed onto 416x416 leaves 44 % of the canvas as padding that the
network still convolves. :class:`FitYoloxDetector` keeps the same scale (the long side to
416) but pads the short side only to the next multiple of 32 (416x256 for 16:9), and
decodes the rectangular grid that this gives. It needs the free-size variant of the model
(:func:`ringwatch.models.face_regions.flexible_model`); the weights are the same.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from ringwatch.models.detections import Detections
from ringwatch.models.letterbox import Letterbox
from ringwatch.models.yolox import STRIDES, YoloxPersonDetector

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]
ALIGN = 32


def rect_grid(height: int, width: int) -> tuple[F32, F32]:
    """Cell (col, row) and stride of each output row for a ``height`` x ``width`` input."""
    cells, steps = [], []
    for stride in STRIDES:
        rows, cols = np.mgrid[0 : height // stride, 0 : width // stride]
        cells.append(np.stack([cols.ravel(), rows.ravel()], axis=1))
        steps.append(np.full(rows.size, stride))
    return np.concatenate(cells).astype(np.float32), np.concatenate(steps).astype(np.float32)


class FitYoloxDetector(YoloxPersonDetector):
    """Same detections as :class:`YoloxPersonDetector`, on a fitted canvas."""

    def _canvas(self, bgr: U8) -> Letterbox:
        h, w = bgr.shape[:2]
        scale = min(self.SIZE / w, self.SIZE / h)
        cw = math.ceil(max(1, round(w * scale)) / ALIGN) * ALIGN
        ch = math.ceil(max(1, round(h * scale)) / ALIGN) * ALIGN
        return Letterbox(cw, ch, centred=False, pad_value=114)

    def detect(self, bgr: U8) -> Detections:
        box = self._canvas(bgr)
        image, geometry = box.fit(bgr)
        tensor = np.ascontiguousarray(image.transpose(2, 0, 1)[None].astype(np.float32))
        raw = self.model.run(tensor)[0][0]
        cells, steps = rect_grid(box.height, box.width)
        centre = (raw[:, :2] + cells) * steps[:, None]
        half = np.exp(np.clip(raw[:, 2:4], -20.0, 20.0)) * steps[:, None] / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)
        scores: F32 = (raw[:, 4:5] * raw[:, 5:]).astype(np.float32)
        return self.filter.apply(boxes, scores, geometry)
