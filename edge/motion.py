"""Motion gating: does this frame need the detectors, or is the scene as it was?

A frame is shrunk to a small grey thumbnail (``width`` px wide, area interpolation, which
also averages away sensor noise) and compared with the thumbnail of the last frame that was
analysed: it *moved* when at least ``min_changed`` of the pixels differ by ``pixel_delta``
grey levels or more. Comparing with the last analysed frame (not the previous one) means a
slow walk still adds up to a change. A still frame may reuse the last detections, but at
most ``recheck_every - 1`` times in a row, so a person standing still, or one who walked in
too slowly to register, is re-detected at least every ``recheck_every`` frames.

Costs about 0.1-0.3 ms a frame at 640x360-1080p (one resize of the colour frame, then a grey
conversion of the 64 px thumbnail, never of the full frame).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

from ringwatch.edge.config import MotionConfig

U8 = npt.NDArray[np.uint8]


def thumbnail(bgr: U8, width: int) -> U8:
    """The grey ``width``-wide thumbnail of a BGR frame (resize first, convert the small one)."""
    h, w = bgr.shape[:2]
    height = max(1, round(h * width / max(w, 1)))
    small = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)
    return np.asarray(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), np.uint8)


def unit_centred(values: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``values`` less their mean, scaled to unit norm (all zeros when flat): a look that
    correlates by a dot product (camera tamper's scene match, face tracks' look check)."""
    centred: npt.NDArray[np.float32] = (values - values.mean()).astype(np.float32)
    norm = float(np.linalg.norm(centred))
    if norm <= 1e-6:
        return centred
    unit: npt.NDArray[np.float32] = (centred / norm).astype(np.float32)
    return unit


@dataclass(slots=True)
class MotionGate:
    """``needs_analysis(bgr) -> bool``; call :meth:`analysed` after each full analysis."""

    config: MotionConfig = field(default_factory=MotionConfig)
    still: int = 0  # frames let through as still since the last full analysis
    skipped: int = 0  # total still frames (counted in the worker stats)
    _reference: U8 | None = None
    _pending: U8 | None = None

    def needs_analysis(self, bgr: U8) -> bool:
        cfg = self.config
        thumb = thumbnail(bgr, cfg.width)
        self._pending = thumb
        ref = self._reference
        if ref is None or ref.shape != thumb.shape or self.still + 1 >= cfg.recheck_every:
            return True
        moved = np.count_nonzero(cv2.absdiff(thumb, ref) >= cfg.pixel_delta)
        if moved >= cfg.min_changed * thumb.size:
            return True
        self.still += 1
        self.skipped += 1
        return False

    def analysed(self) -> None:
        """The frame just checked was analysed in full: it becomes the reference."""
        self._reference = self._pending
        self.still = 0
