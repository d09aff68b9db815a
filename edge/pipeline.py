"""One camera's chain of stages after perception, and the small Protocols that keep the
world out of it.

:class:`CameraPipeline` is one camera's chain of stages after perception; ``process`` is a
short list of stage calls. Frame-size dependent stages are built on the first frame, and a
zone config pushed from the hub is swapped in whole between two frames (open presences are
ended first; the tracker keeps its tracks). World-touching parts sit behind small Protocols
(:class:`Analyzer`, :class:`EventSink`, :class:`Publisher`), so tests drive a pipeline with
recorded frames and a list as the sink.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from ringwatch.contract.messages import Event, Phase
from ringwatch.contract.topics import EventKind
from ringwatch.contract.zones import CameraZones
from ringwatch.edge.capture import Frame
from ringwatch.edge.faces_track import Embedder, FaceTrackConfig, FaceTracks
from ringwatch.edge.privacy import JpegCropper, PrivacyMask, encode_jpeg
from ringwatch.edge.rules import EventStamp, RulesConfig, ZoneRules
from ringwatch.edge.shed import ShedMonitor
from ringwatch.edge.tamper import TamperWatch
from ringwatch.edge.tracking import Tracker, TrackerConfig
from ringwatch.edge.zones import PERSON_ANCHOR, ZoneSet
from ringwatch.models.detections import Detections

if TYPE_CHECKING:
    from ringwatch.edge.clips import CameraClips


log = logging.getLogger("ringwatch.edge.agent")  # one logger for the agent's parts


Image = npt.NDArray[np.uint8]


SNAPSHOT_KINDS = {EventKind.INTRUSION, EventKind.LOITERING, EventKind.SHED, EventKind.TAMPER}


EVENT_SNAPSHOT_BYTES = 150 * 1024


class Found(Protocol):
    """What perception found in one frame (``ringwatch.models.perception.FrameDetections``)."""

    @property
    def faces(self) -> Detections: ...

    @property
    def persons(self) -> Detections: ...

    @property
    def fire(self) -> Detections: ...


class Analyzer(Protocol):
    """Perception: all requested detectors on one frame (``Perception`` is the real one)."""

    def analyze(self, bgr: Image, embeddings: bool = False) -> Found: ...


class EventSink(Protocol):
    """Where events go: the durable outbox through the uplink (a list in tests)."""

    def put(self, event: Event) -> None: ...


class Publisher(Protocol):
    """Publishes replies to hub commands (the MQTT client)."""

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool: ...


@dataclass(frozen=True, slots=True)
class Ident:
    site: str
    device: str
    camera: str


@dataclass(frozen=True, slots=True)
class Tunables:
    """The site file's tracker, rules and face-track sections, for every camera."""

    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    faces: FaceTrackConfig = field(default_factory=FaceTrackConfig)


@dataclass(slots=True)
class _Stages:
    """Everything that depends on the frame size and the zone config; replaced whole."""

    stamp: EventStamp
    zones: CameraZones
    privacy: PrivacyMask
    rules: ZoneRules
    faces: FaceTracks

    @classmethod
    def build(
        cls,
        ident: Ident,
        zones: CameraZones,
        size: tuple[int, int],
        embedder: Embedder | None,
        tunables: Tunables | None = None,
    ) -> _Stages:
        tunables = tunables or Tunables()
        stamp = EventStamp(ident.site, ident.device, ident.camera, size[0], size[1])
        privacy = PrivacyMask.for_frame(zones.masks, size)
        zone_set = ZoneSet.for_frame(zones, size)
        return cls(
            stamp=stamp,
            zones=zones,
            privacy=privacy,
            rules=ZoneRules(zones, stamp, tunables.rules),
            faces=FaceTracks(stamp, zone_set, JpegCropper(privacy), embedder, tunables.faces),
        )


class CameraPipeline:
    """``process(frame, found) -> events`` for one camera; thread-safe zone swaps."""

    def __init__(
        self,
        ident: Ident,
        zones: CameraZones,
        shed: ShedMonitor | None = None,
        embedder: Embedder | None = None,
        tunables: Tunables | None = None,
        tamper: TamperWatch | None = None,
    ) -> None:
        self.ident = ident
        self.embedder = embedder
        self.tunables = tunables or Tunables()
        self.tamper = tamper  # issue 18: camera tamper (edge/tamper.py)
        self.tracker = Tracker(self.tunables.tracker)
        self.shed = shed
        self._zones = zones
        self._pending: CameraZones | None = None
        self._stages: _Stages | None = None
        self._last: tuple[Image, _Stages] | None = None
        self.last_frame_at: dt.datetime | None = None  # when the latest frame was read
        self._lock = threading.Lock()
        self.clips: CameraClips | None = None  # issue 14: evidence clips (edge/clips.py)

    @property
    def zones(self) -> CameraZones:
        with self._lock:
            return self._pending or self._zones

    def process(self, frame: Frame, found: Found) -> list[Event]:
        at = dt.datetime.fromtimestamp(frame.captured_at, dt.UTC)
        events, stages = self._stages_for(frame.image, at)
        persons = self.tracker.update(stages.privacy.filter(found.persons, PERSON_ANCHOR))
        events += stages.rules.update(persons, at)
        faces = stages.privacy.filter(found.faces)
        if len(faces):
            events += stages.faces.update(faces, persons, frame.image, at)
        if self.shed is not None:
            events += self.shed.observe_frame(stages.privacy.filter(found.fire), stages.stamp, at)
        if self.tamper is not None:  # issue 18: camera tamper
            events += self.tamper.observe(frame.image, stages.stamp, at)
        with self._lock:
            self._last = (frame.image, stages)
            self.last_frame_at = at
        if self.clips is not None:  # issue 14: queued only; clips are made in their own thread
            self.clips.observe(frame.image, frame.captured_at, events, stages.privacy)
        return self.with_snapshots(events)

    def swap_zones(self, zones: CameraZones) -> None:
        """Use ``zones`` from the next frame on (validated already; replaced whole)."""
        with self._lock:
            self._pending = zones

    def close(self, at: dt.datetime) -> list[Event]:
        """End every open zone presence (the camera stops)."""
        if self._stages is None:
            return []
        ended = self._stages.rules.close(at)
        if self.tamper is not None:  # issue 18: an open tamper ends with the camera
            ended += self.tamper.close(self._stages.stamp, at)
        return ended

    def snapshot(self, max_bytes: int, annotate: bool = False) -> tuple[bytes, int, int] | None:
        """The latest frame, masks applied (and zones drawn if asked), as a JPEG."""
        with self._lock:
            last = self._last
        if last is None:
            return None
        image, stages = last
        masked = stages.privacy.apply(image)
        if annotate:
            from ringwatch.edge.annotate import ZoneAnnotator

            masked = ZoneAnnotator().annotate(masked, stages.zones)
        return encode_jpeg(masked, max_bytes), stages.stamp.width, stages.stamp.height

    def with_snapshots(self, events: Iterable[Event]) -> list[Event]:
        """Alerts (intrusion, loitering, shed) start/update with a masked snapshot attached."""
        out: list[Event] = []
        jpeg: bytes | None = None  # one snapshot per frame, however many alerts it raised
        for event in events:
            if event.kind in SNAPSHOT_KINDS and event.phase is not Phase.END:
                if jpeg is None:
                    shot = self.snapshot(EVENT_SNAPSHOT_BYTES)
                    jpeg = b"" if shot is None else base64.b64encode(shot[0])
                if jpeg:
                    event = Event.model_validate(event.model_dump() | {"snapshot_jpeg": jpeg})
            out.append(event)
        return out

    def _stages_for(self, image: Image, at: dt.datetime) -> tuple[list[Event], _Stages]:
        size = (int(image.shape[1]), int(image.shape[0]))
        with self._lock:
            pending, self._pending = self._pending, None
        events: list[Event] = []
        stages = self._stages
        if pending is not None:
            events += self.close(at)
            self._zones = pending
            stages = None
        if stages is None or (stages.stamp.width, stages.stamp.height) != size:
            stages = _Stages.build(self.ident, self._zones, size, self.embedder, self.tunables)
            self._stages = stages
        return events, stages


def camera_frame_at(frame: Frame, start: dt.datetime) -> Frame:
    """``frame`` re-timed onto a fixed start (deterministic replays of recorded clips)."""
    return replace(frame, captured_at=start.timestamp() + frame.ts)
