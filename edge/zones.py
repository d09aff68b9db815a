"""Zones and lines in pixels: which detections are in which polygon, which tracks crossed a line.

Config holds normalised coordinates (:mod:`ringwatch.contract.zones`); a stage is built for one
frame size (``for_frame``), so the conversion happens once, and every test runs on all anchor
points in one numpy call (supervision's ``PolygonZone`` does the same). Persons are placed by
the bottom-centre of their box, faces by its centre.

Pure logic: numpy and the contract only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ringwatch.contract.colours import Ring, deepest_ring
from ringwatch.contract.zones import CameraZones, Line, LineDirection, Point, Zone
from ringwatch.models.detections import Detections

F32 = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]

PERSON_ANCHOR = "bottom_center"
FACE_ANCHOR = "center"


def to_pixels(points: Sequence[Point], size: tuple[int, int]) -> F32:
    """Normalised ``(x, y)`` points -> pixel coordinates for a ``(width, height)`` frame."""
    width, height = size
    out: F32 = (np.asarray(points, np.float32) * np.array([width, height], np.float32)).astype(
        np.float32
    )
    return out


def points_in_polygon(points: F32, polygon: F32) -> BoolArray:
    """Even-odd rule for every point at once: ``points (N,2)``, ``polygon (M,2)`` -> ``(N,)``."""
    if len(points) == 0:
        return np.zeros(0, np.bool_)
    x = points[:, 0:1]
    y = points[:, 1:2]
    x1, y1 = polygon[:, 0], polygon[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    spans = (y1 <= y) != (y2 <= y)
    dy = np.where(y2 == y1, np.float32(1e-12), y2 - y1)
    x_cross = x1 + (y - y1) * (x2 - x1) / dy
    inside: BoolArray = (np.count_nonzero(spans & (x < x_cross), axis=1) % 2) == 1
    return inside


@dataclass(frozen=True, slots=True)
class PolygonZone:
    """One zone's polygon in pixels; ``trigger(dets) -> bool mask`` of anchors inside it."""

    zone: Zone
    polygon: F32

    @classmethod
    def for_frame(cls, zone: Zone, size: tuple[int, int]) -> PolygonZone:
        return cls(zone=zone, polygon=to_pixels(zone.polygon, size))

    def trigger(self, dets: Detections, anchor: str = PERSON_ANCHOR) -> BoolArray:
        return points_in_polygon(dets.anchors(anchor), self.polygon)


def side_of_line(points: F32, a: F32, b: F32) -> F32:
    """Signed side of each point: < 0 left of a->b, > 0 right (image y points down)."""
    d = b - a
    side: F32 = (d[0] * (points[:, 1] - a[1]) - d[1] * (points[:, 0] - a[0])).astype(np.float32)
    return side


@dataclass(slots=True)
class LineCounter:
    """A directed line; ``trigger(dets)`` -> ``(left_to_right, right_to_left)`` masks.

    'Left' is as seen walking from ``a`` to ``b`` on the image (y down). A track crosses when
    the segment between its previous and current anchor intersects the line segment, so a
    person walking past the end of a gate line does not count. Needs ``tracker_id``.
    """

    line: Line
    a: F32
    b: F32
    _last: dict[int, F32] = field(default_factory=dict)

    @classmethod
    def for_frame(cls, line: Line, size: tuple[int, int]) -> LineCounter:
        ends = to_pixels([line.a, line.b], size)
        return cls(line=line, a=ends[0], b=ends[1])

    def trigger(self, dets: Detections, anchor: str = PERSON_ANCHOR) -> tuple[BoolArray, BoolArray]:
        if dets.tracker_id is None:
            raise ValueError("LineCounter.trigger needs tracked detections (tracker_id)")
        now = dets.anchors(anchor)
        ids = [int(t) for t in dets.tracker_id]
        before = np.array([self._last.get(t, p) for t, p in zip(ids, now, strict=True)])
        before = before.reshape(-1, 2).astype(np.float32)
        self._last.update(zip(ids, now, strict=True))
        crossed = self._segments_cross(before, now)
        side_before = side_of_line(before, self.a, self.b)
        left_to_right = crossed & (side_before < 0)
        right_to_left = crossed & (side_before > 0)
        return left_to_right, right_to_left

    def counts(self, left_to_right: BoolArray, right_to_left: BoolArray) -> BoolArray:
        """The crossings that this line's direction counts."""
        if self.line.direction is LineDirection.LEFT_TO_RIGHT:
            return left_to_right
        if self.line.direction is LineDirection.RIGHT_TO_LEFT:
            return right_to_left
        return left_to_right | right_to_left

    def forget(self, track_ids: set[int]) -> None:
        for track_id in track_ids:
            self._last.pop(track_id, None)

    def _segments_cross(self, p: F32, q: F32) -> BoolArray:
        s1 = side_of_line(p, self.a, self.b)
        s2 = side_of_line(q, self.a, self.b)
        t1 = _side_of_segments(self.a, p, q)
        t2 = _side_of_segments(self.b, p, q)
        crossing: BoolArray = (s1 * s2 < 0) & (t1 * t2 <= 0)
        return crossing


def _side_of_segments(point: F32, p: F32, q: F32) -> F32:
    d = q - p
    out: F32 = (d[:, 0] * (point[1] - p[:, 1]) - d[:, 1] * (point[0] - p[:, 0])).astype(np.float32)
    return out


@dataclass(frozen=True, slots=True)
class ZoneSet:
    """All zones of one camera in pixels; answers membership and ring questions."""

    zones: tuple[PolygonZone, ...]
    default_ring: Ring

    @classmethod
    def for_frame(cls, config: CameraZones, size: tuple[int, int]) -> ZoneSet:
        zones = tuple(PolygonZone.for_frame(z, size) for z in config.zones)
        return cls(zones=zones, default_ring=config.default_ring)

    def membership(self, dets: Detections, anchor: str = PERSON_ANCHOR) -> BoolArray:
        """``(N, Z)`` matrix: detection i is inside zone j."""
        if not self.zones:
            return np.zeros((len(dets), 0), np.bool_)
        points = dets.anchors(anchor)
        return np.stack([points_in_polygon(points, z.polygon) for z in self.zones], axis=1)

    def rings(self, dets: Detections, anchor: str = PERSON_ANCHOR) -> list[Ring]:
        """Ring of each detection: the deepest ring it is in, else the camera's default."""
        inside = self.membership(dets, anchor)
        return [self._ring_of(row) for row in inside]

    def deepest_zone(self, inside_row: BoolArray) -> Zone | None:
        """The ring zone of greatest depth among ``inside_row`` (first one on ties)."""
        best: Zone | None = None
        for zone, hit in zip(self.zones, inside_row, strict=True):
            ring = zone.zone.role.ring
            if hit and ring is not None and (best is None or ring > _ring(best)):
                best = zone.zone
        return best

    def _ring_of(self, inside_row: BoolArray) -> Ring:
        rings = [
            z.zone.role.ring
            for z, hit in zip(self.zones, inside_row, strict=True)
            if hit and z.zone.role.ring is not None
        ]
        return deepest_ring((r for r in rings if r is not None), self.default_ring)


def _ring(zone: Zone) -> Ring:
    ring = zone.role.ring
    if ring is None:
        raise ValueError(f"zone {zone.id} is a {zone.role.value} zone, not a ring")
    return ring
