"""Tiled detection for small, far people in large frames.

A 416 px detector sees a 1920x1080 frame shrunk 4.6 times: a 40 px tall person far down the
street becomes 9 px and is lost. :class:`TiledDetector` runs the detector on the whole frame
*and* on overlapping tiles (each tile shrunk far less), shifts the tiles' boxes back into
the frame and merges everything by NMS. A box touching a tile's inner edge is a person cut
by the tile; it is dropped, because the overlap (at least the height of the people tiling
is for) shows them whole in the next tile, and people too large for that come from the
whole-frame pass. For the same reason a tile's box lying inside a whole-frame box that the
tile does not hold whole (a near person larger than the tile), and a good share of its size,
is a part of that person — an arm, a head and shoulders — and is dropped too
(``FRAGMENT_IOS``, ``FRAGMENT_AREA``); a far person inside that box is far smaller and stays.

Cost: one detector run per tile plus one for the whole frame (:meth:`Tiling.runs`), e.g.
1 + 2 = 3 runs for 690x388 frames with 416 px tiles, 1 + 6 = 7 for 1920x1080 with 832 px
tiles. Pure numpy around an injected detector.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from ringwatch.models.detections import Detections
from ringwatch.models.nms import box_areas, ios_matrix, nms

U8 = npt.NDArray[np.uint8]
EDGE_PX = 2.0  # a box this close to a tile's inner edge is cut by it
FRAGMENT_IOS = 0.9  # this share of a tile box inside a whole-frame box the tile cuts: a part
FRAGMENT_AREA = 0.1  # ... when it is also this share of that box's area (a far person is not)


class Detector(Protocol):
    def detect(self, bgr: U8) -> Detections: ...


@dataclass(frozen=True, slots=True)
class Tiling:
    """When and how to tile. ``mode``: ``off``; ``auto`` (tile frames whose long side is
    more than ``auto_ratio`` times the model input); ``on`` (always). ``tile``: tile side in
    frame pixels, or None for one that follows the frame (:meth:`side`); ``overlap``: share
    of a tile shared with its neighbour."""

    mode: str = "off"
    tile: int | None = None
    overlap: float = 0.25
    model_input: int = 416
    auto_ratio: float = 2.0

    def __post_init__(self) -> None:
        if self.mode not in ("off", "auto", "on"):
            raise ValueError(f"tiling mode {self.mode!r}: choose off, auto or on")
        if (self.tile is not None and self.tile < 32) or not 0.0 <= self.overlap < 0.9:
            raise ValueError(f"tiling: tile >= 32 and overlap in [0, 0.9) expected, got {self}")

    def large(self, width: int, height: int) -> bool:
        """Whether the long side is over ``auto_ratio`` times the model input."""
        return max(width, height) > self.auto_ratio * self.model_input

    def side(self, width: int, height: int) -> int:
        """The tile side for a frame: ``tile``, or when unset twice the model input for a
        large frame (each tile shrunk 2x: 6 tiles at 1920x1080, not 24 at the model input,
        which enlarges people past what the model learnt and costs 25 runs) and the model
        input for a smaller one (docs/perception.md)."""
        if self.tile is not None:
            return self.tile
        return 2 * self.model_input if self.large(width, height) else self.model_input

    def applies(self, width: int, height: int) -> bool:
        if self.mode == "on":
            return True
        return self.mode == "auto" and self.large(width, height)

    def windows(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        """Tile windows (x1, y1, x2, y2) covering the frame, evenly spread."""
        tile = self.side(width, height)
        xs = _starts(width, tile, self.overlap)
        ys = _starts(height, tile, self.overlap)
        return [(x, y, min(width, x + tile), min(height, y + tile)) for y in ys for x in xs]

    def runs(self, width: int, height: int) -> int:
        """Detector runs per frame: 1, or 1 + the number of tiles."""
        return 1 + len(self.windows(width, height)) if self.applies(width, height) else 1


def _starts(length: int, tile: int, overlap: float) -> list[int]:
    if length <= tile:
        return [0]
    step = tile * (1.0 - overlap)
    count = math.ceil((length - tile) / step) + 1
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


class TiledDetector:
    """``detect(bgr) -> Detections``: whole frame + tiles, merged by NMS (module docstring)."""

    def __init__(self, detector: Detector, tiling: Tiling, nms_iou: float = 0.45) -> None:
        self.detector = detector
        self.tiling = tiling
        self.nms_iou = nms_iou

    def detect(self, bgr: U8) -> Detections:
        h, w = bgr.shape[:2]
        whole = self.detector.detect(bgr)
        if not self.tiling.applies(w, h):
            return whole
        parts = [whole]
        for window in self.tiling.windows(w, h):
            x1, y1, x2, y2 = window
            found = self.detector.detect(np.ascontiguousarray(bgr[y1:y2, x1:x2]))
            found = _keep_whole(found, window, w, h)
            parts.append(found[~_fragments(found, whole, window)])
        return nms(_cat(parts), self.nms_iou)


def _keep_whole(found: Detections, window: tuple[int, int, int, int], w: int, h: int) -> Detections:
    """The tile's boxes in frame pixels, less those cut by an inner edge of the tile."""
    x1, y1, x2, y2 = window
    xyxy = found.xyxy + np.array([x1, y1, x1, y1], np.float32)
    cut = np.zeros(len(found), bool)
    if x1 > 0:
        cut |= xyxy[:, 0] <= x1 + EDGE_PX
    if y1 > 0:
        cut |= xyxy[:, 1] <= y1 + EDGE_PX
    if x2 < w:
        cut |= xyxy[:, 2] >= x2 - EDGE_PX
    if y2 < h:
        cut |= xyxy[:, 3] >= y2 - EDGE_PX
    return found.with_columns(xyxy=xyxy.astype(np.float32))[~cut]


def _fragments(
    found: Detections, whole: Detections, window: tuple[int, int, int, int]
) -> npt.NDArray[np.bool_]:
    """Which of a tile's boxes (frame pixels) lie mostly inside a whole-frame box that
    reaches outside the tile and are a good share of it: parts of a person the tile cannot
    see whole. A far person standing inside a near person's box is a sliver of its area and
    is kept (the people tiling is for)."""
    x1, y1, x2, y2 = window
    big = whole.xyxy
    big = big[(big[:, 0] < x1) | (big[:, 1] < y1) | (big[:, 2] > x2) | (big[:, 3] > y2)]
    if len(found) == 0 or len(big) == 0:
        return np.zeros(len(found), np.bool_)
    inside = ios_matrix(found.xyxy, big) >= FRAGMENT_IOS
    area = box_areas(found.xyxy)[:, None] >= FRAGMENT_AREA * box_areas(big)[None, :]
    return np.asarray((inside & area).any(axis=1), np.bool_)


def _cat(parts: list[Detections]) -> Detections:
    return Detections(
        xyxy=np.concatenate([p.xyxy for p in parts]).astype(np.float32),
        confidence=np.concatenate([p.confidence for p in parts]).astype(np.float32),
        class_id=np.concatenate([p.class_id for p in parts]),
    )
