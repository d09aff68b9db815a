"""Best face per track: one face event per track once a good shot exists, more only if better.

Faces are tracked on their own (a :class:`~ringwatch.edge.tracking.Tracker` over face boxes)
and linked to the person track whose box holds the face centre, when there is one; the event
then carries that person's track id, else its own face-track number offset by
``FACE_TRACK_OFFSET`` so the two id spaces never collide on the wire.

For each face track the best shot so far (highest ``quality``) is kept. The first shot at or
above ``min_quality`` is published (``start``); a later shot better by ``improve_by`` is
published again (``update``).

The tracker follows boxes, not people: someone stepping into the spot another face just
left (a queue at a gate, a scene cut, stills shown one after another) would continue that
track and never be published. So a published track keeps a 16x16 grey thumbnail of its
face; when a frame's face correlates less than ``recheck_below`` with it, the face is
embedded again (~16 ms) and, when its cosine to the published shot is under
``new_person_below``, the track starts over as a new one (new track id, published anew).
A split of one person's track costs one extra event; a merge of two people loses one.

The event carries the embedding, a small JPEG crop made by an injected
:class:`CropEncoder` (the agent's one blurs privacy masks first), the ring and zone where
the face was seen (by its centre) and the track id.

Logic over numpy and the contract (OpenCV only to shrink the thumbnail); the JPEG encoder
and the embedder are injected.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from ringwatch.contract.messages import Event, Phase
from ringwatch.contract.topics import EventKind
from ringwatch.edge.motion import unit_centred
from ringwatch.edge.rules import EventStamp
from ringwatch.edge.tracking import Tracker
from ringwatch.edge.tunables import (  # re-exported: the stage's own settings
    FaceTrackConfig as FaceTrackConfig,
)
from ringwatch.edge.zones import FACE_ANCHOR, ZoneSet, points_in_polygon
from ringwatch.models.detections import Detections

if TYPE_CHECKING:
    from ringwatch.edge.config import Thresholds

FACE_TRACK_OFFSET = 1_000_000
Image = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]


class Embedder(Protocol):
    """Adds ``embeddings`` to face detections (``ringwatch.models.sface.FaceEmbedder``)."""

    def embed(self, bgr: Image, faces: Detections) -> Detections: ...


class CropEncoder(Protocol):
    """Cuts the box (with a margin) out of ``image`` and returns it as a small JPEG."""

    def crop(self, image: Image, xyxy: F32) -> bytes: ...


def face_track_config(
    thresholds: Thresholds, tracks: FaceTrackConfig | None = None
) -> FaceTrackConfig:
    """The site file's ``face_tracks`` section, publishing at ``models.thresholds.face_quality``
    unless the section sets ``min_quality`` itself."""
    tracks = tracks or FaceTrackConfig()
    if "min_quality" in tracks.model_fields_set:
        return tracks
    return tracks.model_copy(update={"min_quality": thresholds.face_quality})


THUMB_PX = 16


@dataclass(slots=True)
class _Best:
    public_id: int
    quality: float = -1.0
    published: float | None = None
    person_id: int | None = None
    last_frame: int = 0
    embedding: F32 | None = None  # the published shot's, unit length
    thumb: F32 | None = None  # once published: the face's look in its latest frame


@dataclass(slots=True)
class FaceTracks:
    """``update(faces, persons, image, at) -> events`` for one camera."""

    stamp: EventStamp
    zones: ZoneSet
    encoder: CropEncoder
    embedder: Embedder | None = None
    config: FaceTrackConfig = field(default_factory=FaceTrackConfig)
    tracker: Tracker = field(init=False)
    _best: dict[int, _Best] = field(default_factory=dict)
    _frame: int = 0
    _public_ids: int = 0
    splits: int = 0  # tracks started over because another person took the face's place

    def __post_init__(self) -> None:
        self.tracker = Tracker(self.config.tracker)

    def update(
        self, faces: Detections, persons: Detections, image: Image, at: dt.datetime
    ) -> list[Event]:
        """Face events for this frame. ``faces`` need ``quality``; their ``embeddings`` are
        used when present, else only the shots being published are embedded (SFace costs
        ~16 ms a face: embedding every face of every frame would double a camera's cost)."""
        self._frame += 1
        tracked = self.tracker.update(faces)
        events: list[Event] = []
        if len(tracked) and tracked.quality is None:
            raise ValueError("FaceTracks.update needs faces with quality")
        if len(tracked) and tracked.embeddings is None and self.embedder is None:
            raise ValueError("FaceTracks.update needs face embeddings or an embedder")
        owners = link_to_persons(tracked, persons)
        for i in range(len(tracked)):
            event = self._consider(tracked, i, owners[i], image, at)
            if event is not None:
                events.append(event)
        self._forget()
        return events

    def _consider(
        self, faces: Detections, i: int, owner: int | None, image: Image, at: dt.datetime
    ) -> Event | None:
        assert faces.tracker_id is not None and faces.quality is not None
        key = int(faces.tracker_id[i])
        best = self._best.get(key) or self._new_track(key)
        embedding: F32 | None = None
        cfg = self.config
        if best.embedding is not None:  # published: still the same person?
            thumb = face_thumb(image, faces.xyxy[i])
            looks_changed = (
                thumb is not None
                and best.thumb is not None
                and float(thumb @ best.thumb) < cfg.recheck_below
            )
            if looks_changed:
                embedding = self._embedding(faces, i, image)
                if float(embedding @ best.embedding) < cfg.new_person_below:
                    best = self._new_track(key)
                    self.splits += 1
            if thumb is not None:
                best.thumb = thumb
        best.last_frame = self._frame
        if best.person_id is None:
            best.person_id = owner
        quality = float(faces.quality[i])
        if quality <= best.quality:
            return None
        best.quality = quality
        if best.published is None and quality >= cfg.min_quality:
            phase = Phase.START
        elif best.published is not None and quality >= best.published + cfg.improve_by:
            phase = Phase.UPDATE
        else:
            return None
        best.published = quality
        if embedding is None:
            embedding = self._embedding(faces, i, image)
        best.embedding = embedding
        best.thumb = face_thumb(image, faces.xyxy[i]) if best.thumb is None else best.thumb
        return self._event(faces, i, best, image, at, phase, embedding)

    def _new_track(self, key: int) -> _Best:
        self._public_ids += 1
        best = self._best[key] = _Best(public_id=self._public_ids)
        return best

    def _event(
        self,
        faces: Detections,
        i: int,
        best: _Best,
        image: Image,
        at: dt.datetime,
        phase: Phase,
        embedding: F32,
    ) -> Event:
        one = faces[i]
        inside = self.zones.membership(one, FACE_ANCHOR)[0]
        zone = self.zones.deepest_zone(inside)
        track_id = best.person_id or FACE_TRACK_OFFSET + best.public_id
        score = float(faces.confidence[i])
        return self.stamp.event(
            EventKind.FACE,
            phase,
            at,
            zone_id=None if zone is None else zone.id,
            ring=self.zones.rings(one, FACE_ANCHOR)[0],
            track_id=track_id,
            scores={"face": min(max(score, 0.0), 1.0)},
            boxes=[self.stamp.box(faces.xyxy[i], label="face", score=score)],
            face_crop_jpeg=base64.b64encode(self.encoder.crop(image, faces.xyxy[i])),
            embedding=[float(v) for v in embedding],
            face_quality=min(max(best.quality, 0.0), 1.0),
        )

    def _embedding(self, faces: Detections, i: int, image: Image) -> F32:
        """The face's embedding, unit length (given with the faces, else embedded now)."""
        if faces.embeddings is not None:
            row = faces.embeddings[i]
        else:
            assert self.embedder is not None
            embedded = self.embedder.embed(image, faces[i]).embeddings
            if embedded is None or len(embedded) != 1:
                raise ValueError("the face embedder returned no embedding")
            row = embedded[0]
        unit: F32 = (row / max(float(np.linalg.norm(row)), 1e-12)).astype(np.float32)
        return unit

    def _forget(self) -> None:
        limit = self.config.forget_frames
        for key in [k for k, b in self._best.items() if self._frame - b.last_frame > limit]:
            del self._best[key]


def face_thumb(image: Image, xyxy: F32) -> F32 | None:
    """The face's box as a THUMB_PX-square grey thumbnail, zero mean and unit norm, or None
    for a flat box (nothing to compare): what :class:`FaceTracks` compares frame to frame."""
    import cv2

    h, w = image.shape[:2]
    x1, y1 = max(0, int(xyxy[0])), max(0, int(xyxy[1]))
    x2, y2 = min(w, max(x1 + 1, int(np.ceil(xyxy[2])))), min(h, max(y1 + 1, int(np.ceil(xyxy[3]))))
    crop = image[y1:y2, x1:x2]
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    small = cv2.resize(grey, (THUMB_PX, THUMB_PX), interpolation=cv2.INTER_AREA)
    look = unit_centred(small.astype(np.float32).ravel())
    return look if look.any() else None


def link_to_persons(faces: Detections, persons: Detections) -> list[int | None]:
    """For each face, the track id of the smallest person box holding its centre, or None."""
    if persons.tracker_id is None or len(persons) == 0:
        return [None] * len(faces)
    centres = faces.anchors(FACE_ANCHOR)
    owners: list[int | None] = [None] * len(faces)
    order = np.argsort(persons.area)  # the smallest enclosing box is the likeliest owner
    for p in order[::-1]:
        x1, y1, x2, y2 = persons.xyxy[p]
        box = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32)
        for i in np.flatnonzero(points_in_polygon(centres, box)):
            owners[int(i)] = int(persons.tracker_id[p])
    return owners
