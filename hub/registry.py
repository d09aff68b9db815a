"""Enrolment of watch-list photos through the same face pipeline as the edge.

A photo is refused (:class:`EnrolmentRefused`, shown as HTTP 422 with the reason) when it
is not a JPEG, PNG or WebP, declares more than :data:`MAX_PHOTO_PIXELS` pixels (read from
its header, before decoding), cannot be decoded or shows no face. In a photo with
bystanders the officer picks the subject (:class:`Subject`: a clicked point or a box; by
default the largest face, or when other whole faces are nearly as large the one at the
photo's centre, else the officer must say which); the chosen face is
refused when it is cut off by the photo's edge, too small, or of too low quality (the edge's
quality model).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ringwatch.contract.images import MAX_PIXELS, ImageRefused, check_image
from ringwatch.errors import InputError
from ringwatch.models.detections import Detections
from ringwatch.models.face_quality import ENROL_MIN_FACE_PX, ENROL_MIN_QUALITY

MAX_PHOTO_BYTES = 10 * 1024 * 1024
MIN_QUALITY = ENROL_MIN_QUALITY  # the edge's quality model; hub setting enrol_min_quality
MIN_FACE_PX = ENROL_MIN_FACE_PX  # short side of the face box; hub setting enrol_min_face_px
AMBIGUOUS_AREA_RATIO = 0.6  # a second whole face this large (by area) contends for subject
MIN_BOX_IOU = 0.3  # a box given by the officer must overlap the face this much
EDGE_MARGIN_PX = 1.0  # a face box within this of the photo's edge runs off it
MAX_PHOTO_PIXELS = MAX_PIXELS
CROP_SIDE = 160
F32 = npt.NDArray[np.float32]


class FaceEmbedding(Protocol):
    """What enrolment needs of the face pipeline (``ringwatch.models.faces.FacePipeline``)."""

    def detect_and_embed(self, bgr: npt.NDArray[np.uint8]) -> Detections: ...


class EnrolmentRefused(InputError):
    """A photo cannot be enrolled; ``code`` is machine-readable, the message says why;
    ``faces``: the face boxes found (photo pixels), when the officer must pick one."""

    def __init__(self, code: str, message: str, faces: list[list[int]] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.faces = faces


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


@dataclass(frozen=True, slots=True)
class Subject:
    """Which face of the photo to enrol, in the photo's pixels: the face holding ``point``
    (x, y), the face overlapping ``box`` (x1, y1, x2, y2) most, or, given neither, the
    largest face (when another whole face is nearly as large: the one at the photo's
    centre, else refused as ambiguous)."""

    point: tuple[float, float] | None = None
    box: tuple[float, float, float, float] | None = None


LARGEST = Subject()


def parse_subject(point: str | None, box: str | None) -> Subject:
    """The subject from request parameters ``point=x,y`` or ``box=x1,y1,x2,y2`` (photo
    pixels); neither: the largest face. EnrolmentRefused ``bad_subject`` says what is wrong."""
    if point is not None and box is not None:
        raise EnrolmentRefused("bad_subject", "give point or box, not both")
    if point is not None:
        x, y = _numbers("point", point, 2)
        return Subject(point=(x, y))
    if box is not None:
        x1, y1, x2, y2 = _numbers("box", box, 4)
        if x2 <= x1 or y2 <= y1:
            raise EnrolmentRefused("bad_subject", f"box {box!r}: x2 > x1 and y2 > y1 expected")
        return Subject(box=(x1, y1, x2, y2))
    return LARGEST


def _numbers(what: str, text: str, n: int) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != n or not all(np.isfinite(values)) or min(values) < 0:
        shape = "x,y" if n == 2 else "x1,y1,x2,y2"
        raise EnrolmentRefused(
            "bad_subject", f"{what} {text!r}: expected {shape}, non-negative pixels of the photo"
        )
    return values


class PhotoEnroller:
    """Turns the chosen face of one photo into an enrolled template, refusing faces that are
    cut off by the photo's edge, too small or of too low quality, with the reason."""

    def __init__(
        self,
        faces: FaceEmbedding,
        min_quality: float = MIN_QUALITY,
        min_face_px: int = MIN_FACE_PX,
    ) -> None:
        self.faces = faces
        self.min_quality = min_quality
        self.min_face_px = min_face_px

    def enrol(self, data: bytes, name: str = "photo", subject: Subject = LARGEST) -> EnrolledFace:
        bgr = decode_image(data, name)
        found = self.faces.detect_and_embed(bgr)
        if len(found) == 0:
            raise EnrolmentRefused("no_face", f"{name}: no face found")
        if found.embeddings is None or found.quality is None:
            raise InputError("the face pipeline returned no embedding or quality")
        i = choose_face(found, subject, bgr.shape[:2], name)
        self._check(found, i, bgr.shape[:2], name)
        quality = float(found.quality[i])
        return EnrolledFace(
            embedding=np.asarray(found.embeddings[i], np.float32),
            quality=quality,
            crop_jpeg=face_crop_jpeg(bgr, found.xyxy[i]),
            photo_sha256=hashlib.sha256(data).hexdigest(),
        )

    def _check(self, found: Detections, i: int, hw: tuple[int, ...], name: str) -> None:
        assert found.quality is not None
        box = _describe(found.xyxy[i])
        if is_cut_off(found, i, hw):
            raise EnrolmentRefused(
                "cut_off", f"{name}: the face at {box} is cut off by the edge of the photo"
            )
        side = float(min(found.xyxy[i, 2] - found.xyxy[i, 0], found.xyxy[i, 3] - found.xyxy[i, 1]))
        if side < self.min_face_px:
            raise EnrolmentRefused(
                "too_small",
                f"{name}: the face at {box} is {side:.0f} px across, below {self.min_face_px} px"
                " (use a closer or larger photo)",
            )
        quality = float(found.quality[i])
        if quality < self.min_quality:
            raise EnrolmentRefused(
                "low_quality",
                f"{name}: face quality {quality:.2f} is below {self.min_quality:.2f} "
                "(too small, blurred or turned away)",
            )


def choose_face(found: Detections, subject: Subject, hw: tuple[int, ...], name: str) -> int:
    """Row of the face to enrol (see :class:`Subject`); EnrolmentRefused when the point or
    box holds no face, or when no face is given and the photo does not say which it is.

    Given neither: the largest whole face. Whole faces of at least
    :data:`AMBIGUOUS_AREA_RATIO` of its area contend with it; a portrait centres its subject,
    so the one contender whose box holds the photo's centre wins (as if the officer had
    pointed there). Two people framed side by side (the centre between them) are refused
    (``several_faces``): the officer points."""
    if subject.point is not None:
        return _face_at(found, subject.point, name)
    if subject.box is not None:
        return _face_in(found, subject.box, name)
    whole = [j for j in range(len(found)) if not is_cut_off(found, j, hw)]
    order = sorted(whole or range(len(found)), key=lambda j: -float(found.area[j]))
    largest = order[0]
    contenders = [j for j in order if found.area[j] >= AMBIGUOUS_AREA_RATIO * found.area[largest]]
    if len(contenders) > 1:
        at_centre = _holding(found, hw[1] / 2.0, hw[0] / 2.0)
        centred = [j for j in contenders if at_centre[j]]
        if len(centred) == 1:
            return centred[0]
        boxes = ", ".join(_describe(found.xyxy[j]) for j in order)
        raise EnrolmentRefused(
            "several_faces",
            f"{name}: {len(found)} faces found of similar size, none at the photo's centre"
            f" ({boxes}); say which person to enrol with point=x,y or box=x1,y1,x2,y2",
            _boxes(found),
        )
    return order[0]


def _holding(found: Detections, x: float, y: float) -> npt.NDArray[np.bool_]:
    """Per face, whether its box holds the point (x, y)."""
    xyxy = found.xyxy
    holds: npt.NDArray[np.bool_] = (
        (xyxy[:, 0] <= x) & (x <= xyxy[:, 2]) & (xyxy[:, 1] <= y) & (y <= xyxy[:, 3])
    )
    return holds


def _face_at(found: Detections, point: tuple[float, float], name: str) -> int:
    x, y = point
    inside = _holding(found, x, y)
    if not inside.any():
        raise EnrolmentRefused(
            "no_face_at_point",
            f"{name}: no face at ({x:.0f}, {y:.0f}) among {len(found)} found",
            _boxes(found),
        )
    rows = np.flatnonzero(inside)  # nested boxes: the smallest holding the point
    return int(rows[np.argmin(found.area[rows])])


def _face_in(found: Detections, box: tuple[float, float, float, float], name: str) -> int:
    from ringwatch.models.nms import iou_matrix

    overlap = iou_matrix(np.array([box], np.float32), found.xyxy)[0]
    best = int(np.argmax(overlap))
    if overlap[best] < MIN_BOX_IOU:
        raise EnrolmentRefused(
            "no_face_in_box",
            f"{name}: no face overlaps the box {_describe(np.array(box))} (best IoU"
            f" {float(overlap[best]):.2f}, needs {MIN_BOX_IOU})",
            _boxes(found),
        )
    return best


def _boxes(found: Detections) -> list[list[int]]:
    """The faces' boxes as whole photo pixels, largest first (for the console to draw)."""
    order = np.argsort(-found.area)
    return [[round(float(v)) for v in found.xyxy[j]] for j in order]


def is_cut_off(found: Detections, i: int, hw: tuple[int, ...]) -> bool:
    """True when the face box reaches the photo's edge or a landmark lies outside it (the
    detector clips boxes to the image, so a face running off the photo touches the edge)."""
    h, w = int(hw[0]), int(hw[1])
    x1, y1, x2, y2 = (float(v) for v in found.xyxy[i])
    m = EDGE_MARGIN_PX
    if x1 <= m or y1 <= m or x2 >= w - m or y2 >= h - m:
        return True
    if found.landmarks is None:
        return False
    lm = found.landmarks[i]
    return bool(
        (lm[:, 0] < 0).any()
        or (lm[:, 1] < 0).any()
        or (lm[:, 0] >= w).any()
        or (lm[:, 1] >= h).any()
    )


def _describe(xyxy: npt.NDArray[np.floating[Any]]) -> str:
    x1, y1, x2, y2 = (round(float(v)) for v in xyxy)
    return f"({x1},{y1})-({x2},{y2})"
