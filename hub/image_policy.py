"""Who may see people in the images that leave the hub, and the pixelation for the rest.

Policy (every route that returns a camera image goes through :func:`release`):

- admin, station officer, auditor: the image as the device sent it (the device has applied
  its privacy masks already).
- technician, property manager: people pixelated. An event snapshot has the person boxes
  the edge found (``boxes`` with label ``person`` or ``face``): those areas, with a margin,
  become coarse blocks. An image without boxes (a zone-editor snapshot or preview) is
  pixelated whole: enough to draw zones on the scene, not to recognise anyone.

Every release is audited by the route (who, which image, which policy). Images are read
by their header first (:func:`~ringwatch.contract.images.check_image`), never decoded
blind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ringwatch.contract.images import check_image
from ringwatch.hub.roles import Role

SEES_PEOPLE = frozenset({Role.ADMIN, Role.STATION_OFFICER, Role.AUDITOR})
PERSON_LABELS = frozenset({"person", "face"})
BOX_MARGIN = 0.15
WHOLE_BLOCKS = 24  # blocks across the long side when the whole frame is pixelated
BOX_BLOCKS = 6  # blocks across a person box


@dataclass(frozen=True, slots=True)
class Released:
    jpeg: bytes
    policy: str  # "original", "persons_pixelated" or "pixelated"


def may_see_people(role: Role) -> bool:
    return role in SEES_PEOPLE


def release(
    jpeg: bytes,
    role: Role,
    boxes: Sequence[dict[str, Any]] | None = None,
    frame: tuple[int, int] | None = None,
) -> Released:
    """``jpeg`` as ``role`` may see it. ``boxes`` (contract ``Box`` dicts) are in pixels of
    a ``frame`` of (width, height); None: no boxes known, the whole image is pixelated."""
    if may_see_people(role):
        return Released(jpeg, "original")
    check_image(jpeg)
    image = _decode(jpeg)
    people = [b for b in boxes or () if str(b.get("label", "person")) in PERSON_LABELS]
    if boxes is None or frame is None:
        return Released(_encode(_mosaic(image, WHOLE_BLOCKS)), "pixelated")
    scale_x, scale_y = image.shape[1] / frame[0], image.shape[0] / frame[1]
    for box in people:
        _pixelate_box(image, box, scale_x, scale_y)
    return Released(_encode(image), "persons_pixelated")


def _pixelate_box(image: npt.NDArray[np.uint8], box: dict[str, Any], sx: float, sy: float) -> None:
    x1, y1, x2, y2 = (float(box[k]) for k in ("x1", "y1", "x2", "y2"))
    mx, my = (x2 - x1) * BOX_MARGIN, (y2 - y1) * BOX_MARGIN
    h, w = image.shape[:2]
    left, top = max(0, int((x1 - mx) * sx)), max(0, int((y1 - my) * sy))
    right, bottom = min(w, int((x2 + mx) * sx) + 1), min(h, int((y2 + my) * sy) + 1)
    if right > left and bottom > top:
        image[top:bottom, left:right] = _mosaic(image[top:bottom, left:right], BOX_BLOCKS)


def _mosaic(image: npt.NDArray[np.uint8], blocks: int) -> npt.NDArray[np.uint8]:
    import cv2

    h, w = image.shape[:2]
    side = max(h, w)
    small_w, small_h = max(1, w * blocks // side), max(1, h * blocks // side)
    small = cv2.resize(image, (small_w, small_h), interpolation=cv2.INTER_AREA)
    return np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST), np.uint8)


def _decode(jpeg: bytes) -> npt.NDArray[np.uint8]:
    import cv2

    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("the image cannot be decoded")
    return np.asarray(image, np.uint8)


def _encode(image: npt.NDArray[np.uint8]) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ValueError("cannot encode the image as JPEG")
    return bytes(buf.tobytes())
