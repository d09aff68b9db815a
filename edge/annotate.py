"""Drawing zones, lines, masks and boxes on an image (for snapshots and the zone editor).

Drawing never lives in logic: each annotator has one verb, ``annotate(image, ...) -> image``,
and returns a new image. Colours follow the rings (outer yellow, perimeter orange, inner red;
sheds blue; masks grey).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ringwatch.contract.zones import CameraZones, ZoneRole
from ringwatch.edge.zones import to_pixels
from ringwatch.models.detections import Detections

Image = npt.NDArray[np.uint8]

ROLE_BGR: dict[ZoneRole, tuple[int, int, int]] = {
    ZoneRole.OUTER: (0, 215, 255),
    ZoneRole.PERIMETER: (0, 140, 255),
    ZoneRole.INNER: (0, 0, 230),
    ZoneRole.SHED: (230, 120, 0),
}
LINE_BGR = (255, 0, 255)
MASK_BGR = (128, 128, 128)
BOX_BGR = (0, 255, 0)


def _points(polygon: list[tuple[float, float]], size: tuple[int, int]) -> npt.NDArray[np.int32]:
    return np.round(to_pixels(polygon, size)).astype(np.int32)


@dataclass(frozen=True, slots=True)
class ZoneAnnotator:
    """Outlines zones (tinted), directed lines (with an arrow to the counted side), masks."""

    thickness: int = 2
    alpha: float = 0.2

    def annotate(self, image: Image, zones: CameraZones) -> Image:
        import cv2

        out = image.copy()
        size = (image.shape[1], image.shape[0])
        tint = image.copy()
        for zone in zones.zones:
            cv2.fillPoly(tint, [_points(zone.polygon, size)], ROLE_BGR[zone.role])
        for mask in zones.masks:
            cv2.fillPoly(tint, [_points(mask.polygon, size)], MASK_BGR)
        out = np.asarray(cv2.addWeighted(tint, self.alpha, out, 1 - self.alpha, 0), np.uint8)
        for zone in zones.zones:
            pts = _points(zone.polygon, size)
            cv2.polylines(out, [pts], True, ROLE_BGR[zone.role], self.thickness)
            self._label(out, f"{zone.id} ({zone.role.value})", pts[0], ROLE_BGR[zone.role])
        for line in zones.lines:
            a, b = _points([line.a, line.b], size)
            cv2.line(out, tuple(a), tuple(b), LINE_BGR, self.thickness + 1)
            self._arrow(out, a, b)
            self._label(out, f"{line.id} ({line.direction.value})", a, LINE_BGR)
        return np.asarray(out, dtype=np.uint8)

    def _arrow(self, out: Image, a: npt.NDArray[np.int32], b: npt.NDArray[np.int32]) -> None:
        import cv2

        mid = (a + b) / 2
        d = (b - a).astype(np.float64)
        right = np.array([-d[1], d[0]]) / max(float(np.hypot(*d)), 1.0)  # image y points down
        tip = mid + right * 25
        cv2.arrowedLine(out, tuple(int(v) for v in mid), tuple(int(v) for v in tip), LINE_BGR, 2)

    @staticmethod
    def _label(out: Image, text: str, at: npt.NDArray[np.int32], bgr: tuple[int, int, int]) -> None:
        import cv2

        x, y = int(at[0]) + 4, max(int(at[1]) + 16, 16)
        cv2.putText(out, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, bgr, 1, cv2.LINE_AA)


@dataclass(frozen=True, slots=True)
class BoxAnnotator:
    """Boxes with their track id (or score when untracked)."""

    thickness: int = 2

    def annotate(self, image: Image, dets: Detections, label: str = "") -> Image:
        import cv2

        out = image.copy()
        for i, xyxy in enumerate(np.round(dets.xyxy).astype(np.int32)):
            x1, y1, x2, y2 = (int(v) for v in xyxy)
            cv2.rectangle(out, (x1, y1), (x2, y2), BOX_BGR, self.thickness)
            tag = f"#{dets.tracker_id[i]}" if dets.tracker_id is not None else ""
            text = f"{label}{tag} {dets.confidence[i]:.2f}".strip()
            cv2.putText(
                out,
                text,
                (x1, max(y1 - 4, 12)),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.45,
                BOX_BGR,
                1,
                cv2.LINE_AA,
            )
        return out
