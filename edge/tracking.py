"""ByteTrack-style multi-object tracking: ``Tracker.update(dets) -> dets`` with tracker ids.

Two-stage association by IoU (Zhang et al., ByteTrack, 2022): confident detections are
matched first against every live track (tracked or recently lost), then the low-score ones
against the tracks still unmatched that were seen in the previous frame, which keeps a
person tracked through partial occlusion when the detector's score dips. A constant-velocity
prediction stands in for ByteTrack's Kalman filter. Matching is greedy by descending IoU
(optimal for the few, well separated boxes a camera sees; no scipy needed).

A track is born after ``min_hits`` consecutive matches and gets its id only then, so ids are
dense and a one-frame false positive never becomes a track. A track that loses its detection
is kept for ``lost_frames`` frames and can be picked up again with the same id.

Pure logic: numpy and :class:`~ringwatch.models.detections.Detections` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ringwatch.edge.tunables import (  # re-exported: the stage's own settings
    TrackerConfig as TrackerConfig,
)
from ringwatch.models.detections import Detections
from ringwatch.models.nms import iou_matrix

F32 = npt.NDArray[np.float32]


def greedy_match(iou: F32, threshold: float) -> list[tuple[int, int]]:
    """(row, col) pairs, highest IoU first, each row and column used at most once."""
    pairs: list[tuple[int, int]] = []
    if iou.size == 0:
        return pairs
    rows_used: set[int] = set()
    cols_used: set[int] = set()
    order = np.argsort(-iou, axis=None, kind="stable")
    for flat in order:
        r, c = divmod(int(flat), iou.shape[1])
        if iou[r, c] < threshold:
            break
        if r not in rows_used and c not in cols_used:
            pairs.append((r, c))
            rows_used.add(r)
            cols_used.add(c)
    return pairs


@dataclass(slots=True, eq=False)  # identity, not array equality
class _Track:
    box: F32
    velocity: F32 = field(default_factory=lambda: np.zeros(4, np.float32))
    hits: int = 1
    missed: int = 0
    track_id: int | None = None

    def predicted(self) -> F32:
        out: F32 = (self.box + self.velocity * np.float32(self.missed + 1)).astype(np.float32)
        return out

    def hit(self, box: F32) -> None:
        step = (box - self.box) / np.float32(self.missed + 1)
        self.velocity = (np.float32(0.6) * self.velocity + np.float32(0.4) * step).astype(
            np.float32
        )
        self.box = box.astype(np.float32)
        self.hits += 1
        self.missed = 0


class Tracker:
    """``update(dets) -> dets``: the rows of confirmed tracks, with ``tracker_id`` set."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._tracks: list[_Track] = []
        self._next_id = 1

    @property
    def active_ids(self) -> frozenset[int]:
        """Ids of confirmed tracks that are tracked or waiting as lost."""
        return frozenset(t.track_id for t in self._tracks if t.track_id is not None)

    def update(self, dets: Detections) -> Detections:
        """Associate one frame's detections; unconfirmed and unmatched rows are left out."""
        cfg = self.config
        conf = dets.confidence
        high = np.flatnonzero(conf >= cfg.high_score)
        low = np.flatnonzero((conf >= cfg.low_score) & (conf < cfg.high_score))
        assigned: dict[int, _Track] = {}
        free = list(self._tracks)
        self._associate(dets, high, free, cfg.match_iou, assigned)
        recent = [t for t in free if t.missed == 0]
        self._associate(dets, low, recent, cfg.low_match_iou, assigned)
        matched = {id(t) for t in assigned.values()}
        self._age([t for t in self._tracks if id(t) not in matched])
        self._birth(dets, [int(i) for i in high if int(i) not in assigned], assigned)
        return self._confirmed_rows(dets, assigned)

    def _associate(
        self,
        dets: Detections,
        rows: npt.NDArray[np.intp],
        tracks: list[_Track],
        threshold: float,
        assigned: dict[int, _Track],
    ) -> None:
        if len(rows) == 0 or not tracks:
            return
        predicted = np.stack([t.predicted() for t in tracks])
        iou = iou_matrix(predicted, dets.xyxy[rows])
        taken: list[_Track] = []
        for ti, di in greedy_match(iou, threshold):
            track = tracks[ti]
            track.hit(dets.xyxy[rows[di]])
            assigned[int(rows[di])] = track
            taken.append(track)
        for track in taken:
            tracks.remove(track)

    def _age(self, unmatched: list[_Track]) -> None:
        for track in unmatched:
            track.missed += 1
        self._tracks = [
            t
            for t in self._tracks
            if t.missed == 0 or (t.track_id is not None and t.missed <= self.config.lost_frames)
        ]

    def _birth(self, dets: Detections, rows: list[int], assigned: dict[int, _Track]) -> None:
        for row in rows:
            if dets.confidence[row] >= self.config.new_track_score:
                track = _Track(box=dets.xyxy[row].astype(np.float32))
                self._tracks.append(track)
                assigned[row] = track

    def _confirmed_rows(self, dets: Detections, assigned: dict[int, _Track]) -> Detections:
        for track in self._tracks:
            if track.track_id is None and track.hits >= self.config.min_hits:
                track.track_id = self._next_id
                self._next_id += 1
        rows = sorted(r for r, t in assigned.items() if t.track_id is not None)
        ids = np.array([assigned[r].track_id for r in rows], dtype=np.int64)
        return dets[np.array(rows, dtype=np.int64)].with_columns(tracker_id=ids)
