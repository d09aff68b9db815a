"""Privacy masks: nothing is detected inside them, and they are blurred in every image sent.

:class:`PrivacyMask` is built for one frame size. ``filter`` drops detections whose box
centre lies in a mask (pure numpy); ``apply`` pixelates and blurs the masked pixels of a copy
of the image (cv2). Snapshots and face crops are made only through :func:`encode_jpeg` and
:class:`JpegCropper`, which take the already masked image, so nothing unmasked leaves the box.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ringwatch.contract.messages import MAX_IMAGE_BYTES
from ringwatch.contract.zones import Mask
from ringwatch.edge.zones import FACE_ANCHOR, points_in_polygon, to_pixels
from ringwatch.errors import InputError
from ringwatch.models.detections import Detections

Image = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]
PIXEL_BLOCK = 16


@dataclass(frozen=True, slots=True)
class PrivacyMask:
    """All masks of one camera in pixels of a ``(width, height)`` frame."""

    polygons: tuple[F32, ...]
    size: tuple[int, int]

    @classmethod
    def for_frame(cls, masks: Sequence[Mask], size: tuple[int, int]) -> PrivacyMask:
        return cls(polygons=tuple(to_pixels(m.polygon, size) for m in masks), size=size)

    def filter(self, dets: Detections, anchor: str = FACE_ANCHOR) -> Detections:
        """``dets`` without the rows whose anchor (default: box centre) is in a mask."""
        if not self.polygons or len(dets) == 0:
            return dets
        points = dets.anchors(anchor)
        hidden = np.zeros(len(dets), np.bool_)
        for polygon in self.polygons:
            hidden |= points_in_polygon(points, polygon)
        return dets[~hidden]

    def apply(self, image: Image) -> Image:
        """A copy of ``image`` with every mask pixelated and blurred beyond recognition."""
        import cv2

        out = image.copy()
        if not self.polygons:
            return out
        h, w = image.shape[:2]
        if (w, h) != self.size:
            raise InputError(
                f"image is {w}x{h}, masks were built for {self.size[0]}x{self.size[1]}"
            )
        region = np.zeros((h, w), np.uint8)
        cv2.fillPoly(region, [np.round(p).astype(np.int32) for p in self.polygons], 255)
        small = cv2.resize(
            image,
            (max(1, w // PIXEL_BLOCK), max(1, h // PIXEL_BLOCK)),
            interpolation=cv2.INTER_AREA,
        )
        coarse = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
        coarse = cv2.GaussianBlur(coarse, (0, 0), sigmaX=PIXEL_BLOCK)
        out[region > 0] = coarse[region > 0]
        return out


def encode_jpeg(image: Image, max_bytes: int = MAX_IMAGE_BYTES, max_side: int = 1280) -> bytes:
    """JPEG of ``image`` scaled to ``max_side`` and compressed until it fits ``max_bytes``."""
    import cv2

    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    while True:
        resized = (
            image
            if scale >= 1.0
            else cv2.resize(
                image,
                (max(1, round(w * scale)), max(1, round(h * scale))),
                interpolation=cv2.INTER_AREA,
            )
        )
        for quality in (85, 70, 55, 40, 25):
            ok, buf = cv2.imencode(".jpg", resized, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise InputError("cv2 could not encode a JPEG")
            if len(buf) <= max_bytes:
                return bytes(buf.tobytes())
        scale *= 0.5


@dataclass(frozen=True, slots=True)
class JpegCropper:
    """Face crops for events: a margin around the box, cut from the masked image."""

    mask: PrivacyMask
    margin: float = 0.25
    max_side: int = 160
    max_bytes: int = 32 * 1024

    def crop(self, image: Image, xyxy: F32) -> bytes:
        h, w = image.shape[:2]
        x1, y1, x2, y2 = (float(v) for v in xyxy)
        mx, my = (x2 - x1) * self.margin, (y2 - y1) * self.margin
        left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
        right, bottom = min(w, int(np.ceil(x2 + mx))), min(h, int(np.ceil(y2 + my)))
        if right - left < 2 or bottom - top < 2:
            raise InputError(f"face box {xyxy.tolist()} is outside the {w}x{h} image")
        masked = self.mask.apply(image)[top:bottom, left:right]
        return encode_jpeg(masked, self.max_bytes, self.max_side)
