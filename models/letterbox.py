"""Letterbox resize (keep the aspect ratio, pad the rest) and its inverse for boxes.

Detectors trained at a fixed square size see the frame scaled by one factor and padded;
:class:`Letterbox` makes that input and a :class:`LetterboxGeometry` that maps boxes from
model-input pixels back to the original frame (and forward, for tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class LetterboxGeometry:
    """How one frame was placed in the model input: ``input = source * scale + pad``."""

    scale: float
    pad_x: int
    pad_y: int
    source_width: int
    source_height: int

    def to_source(self, xyxy: F32) -> F32:
        """Boxes in model-input pixels -> boxes in source pixels, clipped to the frame."""
        offset = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], np.float32)
        boxes = (xyxy.astype(np.float32) - offset) / np.float32(self.scale)
        limit = np.array(
            [self.source_width, self.source_height, self.source_width, self.source_height],
            np.float32,
        )
        clipped: F32 = np.clip(boxes, 0, limit).astype(np.float32)
        return clipped

    def to_input(self, xyxy: F32) -> F32:
        """Boxes in source pixels -> boxes in model-input pixels."""
        offset = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], np.float32)
        boxes: F32 = (xyxy.astype(np.float32) * np.float32(self.scale) + offset).astype(np.float32)
        return boxes


@dataclass(frozen=True, slots=True)
class Letterbox:
    """Fit a frame into ``width`` x ``height``: one scale for both axes, then pad.

    ``centred`` splits the padding evenly on both sides (Ultralytics, NanoDet); otherwise
    the image sits at the top-left and the padding goes right and bottom (YOLOX, YuNet).
    """

    width: int
    height: int
    centred: bool
    pad_value: int

    def fit(self, image: U8) -> tuple[U8, LetterboxGeometry]:
        """The padded model-size image and the geometry to map boxes back."""
        h, w = image.shape[:2]
        scale = min(self.width / w, self.height / h)
        new_w = max(1, min(self.width, round(w * scale)))
        new_h = max(1, min(self.height, round(h * scale)))
        if (new_w, new_h) != (w, h):
            # bilinear, as the detectors' own training pipelines resize
            image = np.asarray(
                cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR), np.uint8
            )
        pad_x = (self.width - new_w) // 2 if self.centred else 0
        pad_y = (self.height - new_h) // 2 if self.centred else 0
        canvas = np.full((self.height, self.width, 3), self.pad_value, np.uint8)
        canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = image
        return canvas, LetterboxGeometry(scale, pad_x, pad_y, w, h)
