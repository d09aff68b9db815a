"""Enrolment of watch-list photos through the same face pipeline as the edge.

A photo is refused (:class:`EnrolmentRefused`, shown as HTTP 422 with the reason) when it
is not a JPEG, PNG or WebP, declares more than :data:`MAX_PHOTO_PIXELS` pixels (read from
its header, before decoding), cannot be decoded, shows no face, shows several faces, or
its face is of too low quality.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from ringwatch.contract.images import MAX_PIXELS, ImageRefused, check_image
from ringwatch.errors import InputError
from ringwatch.models.detections import Detections

MAX_PHOTO_BYTES = 10 * 1024 * 1024
MAX_PHOTO_PIXELS = MAX_PIXELS
MIN_QUALITY = 0.3
CROP_SIDE = 160
F32 = npt.NDArray[np.float32]


class FaceEmbedding(Protocol):
    """What enrolment needs of the face pipeline (``ringwatch.models.faces.FacePipeline``)."""

    def detect_and_embed(self, bgr: npt.NDArray[np.uint8]) -> Detections: ...


class EnrolmentRefused(InputError):
    """A photo cannot be enrolled; ``code`` is machine-readable, the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True, eq=False)
class EnrolledFace:
    embedding: F32
    quality: float
    crop_jpeg: bytes
    photo_sha256: str


def decode_image(data: bytes, name: str = "photo") -> npt.NDArray[np.uint8]:
    """BGR pixels of an uploaded image; EnrolmentRefused naming what is wrong."""
    import cv2

    if not data:
        raise EnrolmentRefused("empty", f"{name}: the file is empty")
    if len(data) > MAX_PHOTO_BYTES:
        raise EnrolmentRefused("too_large", f"{name}: {len(data)} bytes, limit {MAX_PHOTO_BYTES}")
    try:  # the pixel count from the header, before decoding (a PNG bomb is ~1 MB)
        check_image(data, MAX_PHOTO_PIXELS)
    except ImageRefused as exc:
        if exc.code == "too_many_pixels":
            raise EnrolmentRefused(exc.code, f"{name}: {exc}") from None
        raise EnrolmentRefused("undecodable", f"{name}: cannot be decoded: {exc}") from None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise EnrolmentRefused(
            "undecodable", f"{name}: cannot be decoded as an image (corrupt or unsupported format)"
        )
    return np.asarray(image, dtype=np.uint8)


def face_crop_jpeg(bgr: npt.NDArray[np.uint8], xyxy: F32, side: int = CROP_SIDE) -> bytes:
    """A JPEG of the face box with 20% margin, its long side at most ``side`` pixels."""
    import cv2

    h, w = bgr.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    mx, my = (x2 - x1) * 0.2, (y2 - y1) * 0.2
    left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
    right, bottom = min(w, int(x2 + mx) + 1), min(h, int(y2 + my) + 1)
    crop = bgr[top:bottom, left:right]
    scale = side / max(crop.shape[:2])
    if scale < 1:
        crop = np.asarray(
            cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), np.uint8
        )
    ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise InputError("cannot encode the face crop as JPEG")
    return bytes(buf.tobytes())


class PhotoEnroller:
    """Turns one photo of exactly one good face into an enrolled template."""

    def __init__(self, faces: FaceEmbedding, min_quality: float = MIN_QUALITY) -> None:
        self.faces = faces
        self.min_quality = min_quality

    def enrol(self, data: bytes, name: str = "photo") -> EnrolledFace:
        bgr = decode_image(data, name)
        found = self.faces.detect_and_embed(bgr)
        if len(found) == 0:
            raise EnrolmentRefused("no_face", f"{name}: no face found")
        if len(found) > 1:
            raise EnrolmentRefused(
                "several_faces", f"{name}: {len(found)} faces found; enrol a photo of one person"
            )
        if found.embeddings is None or found.quality is None:
            raise InputError("the face pipeline returned no embedding or quality")
        quality = float(found.quality[0])
        if quality < self.min_quality:
            raise EnrolmentRefused(
                "low_quality",
                f"{name}: face quality {quality:.2f} is below {self.min_quality:.2f} "
                "(too small, blurred or turned away)",
            )
        return EnrolledFace(
            embedding=np.asarray(found.embeddings[0], np.float32),
            quality=quality,
            crop_jpeg=face_crop_jpeg(bgr, found.xyxy[0]),
            photo_sha256=hashlib.sha256(data).hexdigest(),
        )
