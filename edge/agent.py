"""The edge agent: per camera, frames -> perception -> privacy -> tracker -> rules -> outbox.

- :class:`CameraPipeline` is one camera's chain of stages after perception; ``process`` is a
  short list of stage calls. Frame-size dependent stages are built on the first frame, and a
  zone config pushed from the hub is swapped in whole between two frames (open presences are
  ended first; the tracker keeps its tracks).
- :class:`CameraWorker` is one thread per camera: read the newest frame, analyse it at the
  camera's fps, hand the events to the sink. Per-frame errors are counted, rate-limit logged
  and skipped; one slow camera never stalls another (each has its own thread and source).
- :class:`Agent` wires a site: the durable outbox and uplink, the MQTT client, one
  perception per task set (onnxruntime sessions are safe to share between threads), shed
  sensor subscriptions, hub commands (snapshot, zone config) and the health heartbeat.

World-touching parts sit behind small Protocols (:class:`Analyzer`, :class:`EventSink`,
:class:`Publisher`), so tests drive a pipeline with recorded frames and a list as the sink.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from ringwatch import __version__
from ringwatch.contract.errors import ContractError
from ringwatch.contract.messages import (
    MAX_SNAPSHOT_REPLY_BYTES,
    Event,
    Phase,
    SensorReading,
    SnapshotReply,
    SnapshotRequest,
    ZoneConfigAnswer,
    ZoneConfigPush,
    ZonesOrigin,
    decode,
    encode,
)
from ringwatch.contract.topics import (
    Command,
    EventKind,
    TopicKind,
    command_topic,
    reply_topic,
    topic_filter,
)
from ringwatch.contract.zones import CameraZones, ZoneRole
from ringwatch.edge.capture import LIVE_SCHEMES, Frame, FrameSource, SourceStatus
from ringwatch.edge.config import CameraConfig, CameraRole, MotionConfig, SiteConfig, Thresholds
from ringwatch.edge.faces_track import Embedder, FaceTrackConfig, FaceTracks, face_track_config
from ringwatch.edge.motion import MotionGate
from ringwatch.edge.mqtt import Message
from ringwatch.edge.outbox import OutboxError
from ringwatch.edge.privacy import JpegCropper, PrivacyMask, encode_jpeg
from ringwatch.edge.rules import EventStamp, RulesConfig, ZoneRules
from ringwatch.edge.shed import FirePersistenceConfig, ShedConfig, ShedMonitor
from ringwatch.edge.tamper import TamperWatch
from ringwatch.edge.tracking import Tracker, TrackerConfig
from ringwatch.edge.zones import PERSON_ANCHOR, ZoneSet
from ringwatch.errors import ConfigError
from ringwatch.models.detections import Detections

if TYPE_CHECKING:
    from ringwatch.edge.clips import CameraClips
    from ringwatch.edge.clips_site import SiteClips
    from ringwatch.models.perception import Perception
    from ringwatch.models.tiling import Tiling

log = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]
SNAPSHOT_KINDS = {EventKind.INTRUSION, EventKind.LOITERING, EventKind.SHED, EventKind.TAMPER}
EVENT_SNAPSHOT_BYTES = 150 * 1024


# -- protocols ----------------------------------------------------------------------------


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


# -- one camera's stages ------------------------------------------------------------------


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


# -- one camera's thread ------------------------------------------------------------------


class Pacer:
    """Lets through at most ``fps`` frames per second of the given time axis."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self._slack = self.period * 1e-3  # frame times are rounded floats
        self._next: float | None = None

    def due(self, t: float) -> bool:
        went_back = self._next is not None and t < self._next - 2 * self.period
        if self._next is None or went_back:  # first frame, or a file looped / stream restarted
            self._next = t + self.period
            return True
        if t + self._slack < self._next:
            return False
        following = self._next + self.period
        self._next = following if following > t + self._slack else t + self.period
        return True


@dataclass(slots=True)
class WorkerStats:
    analysed: int = 0
    frame_errors: int = 0
    latency_ms: float = 0.0
    events: int = 0
    refused: int = 0
    still: int = 0  # analysed frames that reused the last detections (motion gating)
    times: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # recent per-frame ms (bench p95)

    def fps(self, now: float, window_s: float = 10.0) -> float:
        recent = [t for t in self.times if now - t <= window_s]
        self.times = recent
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)


class CameraWorker:
    """One camera's thread: newest frame -> analyse at the camera's fps -> events -> sink."""

    def __init__(
        self,
        config: CameraConfig,
        source: FrameSource,
        analyzer: Analyzer,
        pipeline: CameraPipeline,
        sink: EventSink,
        clock: Callable[[], float] = time.monotonic,
        motion: MotionConfig | None = None,
        paced: bool = True,
    ) -> None:
        self.config = config
        self.source = source
        self.analyzer = analyzer
        self.pipeline = pipeline
        self.sink = sink
        self.stats = WorkerStats()
        self._clock = clock
        self._pacer = Pacer(config.fps)
        self._paced = paced  # False: analyse every frame as fast as it can (bench --unpaced)
        motion = motion or MotionConfig()
        # Fire cameras are never gated: smoke can build up slowly and faintly.
        gated = motion.enabled and "fire" not in config.tasks
        self.gate = MotionGate(motion) if gated else None
        self._last_found: Found | None = None
        self._stream_time = is_file_source(config.source)
        # Embed every face only when the pipeline cannot embed the shots it publishes.
        self._embed = "faces" in config.tasks and pipeline.embedder is None
        self._last_error_log = 0.0
        self._stop = threading.Event()
        self._origin: float | None = None
        self._last_ts = 0.0
        self.thread = threading.Thread(target=self.run, name=f"camera-{config.id}", daemon=True)
        self.finished = threading.Event()

    def run(self, stop: threading.Event | None = None) -> None:
        stop = stop or self._stop
        try:
            while not stop.is_set():
                frame = self.source.read(timeout=0.5)
                if frame is None:
                    if not self.source.status().online and self._stream_time:
                        break  # a file that has ended
                    continue
                if self._stream_time:
                    frame = self._recording_time(frame)
                if not self._paced or self._pacer.due(
                    frame.ts if self._stream_time else frame.captured_at
                ):
                    self.step(frame)
        finally:
            now = dt.datetime.now(dt.UTC)
            self._emit(self.pipeline.close(now))
            self.finished.set()

    def step(self, frame: Frame) -> None:
        """Analyse one frame; a failure is counted and logged at most every 10 s."""
        started = self._clock()
        try:
            found = self._found(frame)
            self._emit(self.pipeline.process(frame, found))
        except Exception as exc:  # one bad frame must not stop the camera
            self.stats.frame_errors += 1
            if started - self._last_error_log > 10:
                self._last_error_log = started
                log.warning("camera %s: frame failed: %s", self.config.id, exc, exc_info=True)
            return
        done = self._clock()
        self.stats.analysed += 1
        self.stats.times.append(done)
        if len(self.stats.times) > 1000:
            del self.stats.times[:500]
        took = (done - started) * 1000
        self.stats.latencies.append(took)
        if len(self.stats.latencies) > 2000:
            del self.stats.latencies[:1000]
        self.stats.latency_ms = (
            took if self.stats.analysed == 1 else 0.8 * self.stats.latency_ms + 0.2 * took
        )

    def _found(self, frame: Frame) -> Found:
        """The detectors' findings, or the last ones again when the motion gate says the
        scene has not changed (the gate forces a full check every ``recheck_every``)."""
        gate = self.gate
        if gate is not None and self._last_found is not None:
            if not gate.needs_analysis(frame.image):
                self.stats.still += 1
                return self._last_found
        elif gate is not None:
            gate.needs_analysis(frame.image)
        found = self.analyzer.analyze(frame.image, self._embed)
        if gate is not None:
            gate.analysed()
            self._last_found = found
        return found

    def _recording_time(self, frame: Frame) -> Frame:
        """A recording's frames are timed by their stream position from when it started, so
        dwell times do not depend on how fast this box decodes (a loop continues the time)."""
        if self._origin is None or frame.ts < self._last_ts:
            last = self._origin + self._last_ts if self._origin is not None else None
            self._origin = frame.captured_at - frame.ts if last is None else last - frame.ts
        self._last_ts = frame.ts
        return replace(frame, captured_at=self._origin + frame.ts)

    def start(self, stop: threading.Event) -> None:
        self._stop = stop
        self.thread.start()

    def _emit(self, events: Sequence[Event]) -> None:
        for event in events:
            try:
                self.sink.put(event)
            except OutboxError as exc:  # full or unwritable: counted there and here; goes on
                self.stats.refused += 1
                log.error("camera %s: event %s refused: %s", self.config.id, event.event_id, exc)
                continue
            self.stats.events += 1


def is_file_source(source: str) -> bool:
    return not (source.startswith("usb:") or source.startswith(LIVE_SCHEMES))


# -- zone configs pushed from the hub -----------------------------------------------------


class ZoneStore:
    """Pushed zone configs persisted per camera (JSON, written atomically)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, camera: str) -> Path:
        return self.folder / f"{camera}.zones.json"

    def save(self, camera: str, zones: CameraZones) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.path(camera).with_suffix(".tmp")
        tmp.write_text(zones.model_dump_json(indent=2))
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        tmp.replace(self.path(camera))

    def load(self, camera: str) -> CameraZones | None:
        path = self.path(camera)
        if not path.exists():
            return None
        try:
            return CameraZones.model_validate_json(path.read_bytes())
        except (ValueError, OSError) as exc:
            raise ConfigError(f"{path}: stored zone config is invalid: {exc}") from None


# -- the site ------------------------------------------------------------------------------


def shed_config(thresholds: Thresholds, shed: ShedConfig | None = None) -> ShedConfig:
    """Shed fusion: the site file's ``shed`` section (defaults when absent). For the k_of_n
    camera rule the site's fire/smoke thresholds are the raise thresholds, as before."""
    shed = shed or ShedConfig()
    base = shed.persistence
    persistence = base.model_copy(
        update={
            "fire_raise": thresholds.fire,
            "fire_hold": min(base.fire_hold, thresholds.fire),
            "smoke_raise": thresholds.smoke,
            "smoke_hold": min(base.smoke_hold, thresholds.smoke),
        }
    )
    checked = FirePersistenceConfig.model_validate(persistence.model_dump())
    return shed.model_copy(update={"persistence": checked})


def detector_thresholds(thresholds: Thresholds, shed: ShedConfig) -> Thresholds:
    """The fire model must report scores down to the lowest the camera rule uses."""
    fire, smoke = shed.report_thresholds()
    return thresholds.model_copy(update={"fire": fire, "smoke": smoke})


class Agent:
    """All cameras of one box, its uplink, commands, sensors and heartbeat."""

    def __init__(
        self,
        config: SiteConfig,
        analyzers: Mapping[str, Analyzer],
        sources: Mapping[str, FrameSource],
        sink: EventSink,
        publisher: Publisher | None = None,
        store: ZoneStore | None = None,
        embedders: Mapping[str, Embedder | None] | None = None,
        paced: bool = True,
    ) -> None:
        self.config = config
        self.paced = paced
        self.embedders = embedders or {}
        self.sink = sink
        self.publisher = publisher
        self.store = store
        self.bad_messages = 0
        self.pipelines: dict[str, CameraPipeline] = {}
        self.workers: dict[str, CameraWorker] = {}
        self.sheds: dict[str, ShedMonitor] = {}
        self.zones_origin: dict[str, ZonesOrigin] = {}  # issue 13: reported in snapshots
        for cam in config.cameras:
            self._add_camera(cam, analyzers[cam.id], sources[cam.id])

    def _add_camera(self, cam: CameraConfig, analyzer: Analyzer, source: FrameSource) -> None:
        ident = Ident(self.config.site, self.config.device, cam.id)
        stored = self._stored_zones(cam)
        zones = stored or cam.camera_zones()
        self.zones_origin[cam.id] = ZonesOrigin.SITE_FILE if stored is None else ZonesOrigin.PUSHED
        shed = None
        if cam.role is CameraRole.SHED and cam.shed is not None:
            zone = next((z.id for z in zones.zones if z.role is ZoneRole.SHED), None)
            shed_cfg = shed_config(self.config.models.thresholds, self.config.shed)
            shed = ShedMonitor(cam.shed, zone, shed_cfg)
            self.sheds[cam.id] = shed
        cfg = self.config
        tamper = None if cam.tamper is None else TamperWatch(cam.tamper)  # issue 18
        faces = face_track_config(cfg.models.thresholds, cfg.face_tracks)
        tunables = Tunables(cfg.tracker, cfg.rules, faces)
        pipeline = CameraPipeline(
            ident, zones, shed, self.embedders.get(cam.id), tunables, tamper=tamper
        )
        self.pipelines[cam.id] = pipeline
        self.workers[cam.id] = CameraWorker(
            cam, source, analyzer, pipeline, self.sink, motion=cfg.motion, paced=self.paced
        )

    def _stored_zones(self, cam: CameraConfig) -> CameraZones | None:
        """The zones the hub pushed earlier; None (site-file zones) when there are none, or
        when the stored file no longer validates (e.g. after an upgrade): that is logged and
        counted in ``bad_messages``, and the camera runs on."""
        if self.store is None:
            return None
        try:
            return self.store.load(cam.id)
        except ConfigError as exc:
            self.bad_messages += 1
            log.error("camera %s: %s; using the site file's zones until the next push", cam.id, exc)
            return None

    def start(self, stop: threading.Event) -> None:
        for worker in self.workers.values():
            worker.start(stop)

    def join(self, timeout: float | None = None) -> None:
        for worker in self.workers.values():
            worker.thread.join(timeout)

    def camera_status(self) -> dict[str, tuple[SourceStatus, WorkerStats]]:
        return {cid: (w.source.status(), w.stats) for cid, w in self.workers.items()}

    # -- subscriptions --------------------------------------------------------------------

    def subscriptions(self) -> list[tuple[str, Callable[[str, bytes], None]]]:
        """(topic filter, handler) pairs for the MQTT client."""
        site, device = self.config.site, self.config.device
        subs: list[tuple[str, Callable[[str, bytes], None]]] = [
            (command_topic(site, device, Command.SNAPSHOT), self.on_snapshot),
            (command_topic(site, device, Command.ZONE_CONFIG), self.on_zone_config),
        ]
        for shed_id in sorted({m.shed for m in self.sheds.values()}):
            subs.append((topic_filter(TopicKind.SENSORS, site, shed_id), self.on_sensor))
        return subs

    def on_sensor(self, topic: str, payload: bytes) -> None:
        try:
            reading = decode(SensorReading, payload)
        except ContractError as exc:
            self._bad(topic, exc)
            return
        for cam_id, monitor in self.sheds.items():
            events = self.pipelines[cam_id].with_snapshots(monitor.observe_reading(reading))
            clips = self.pipelines[cam_id].clips  # issue 14: a sensor alarm records a clip too
            if clips is not None:
                clips.alert(events)
            for event in events:
                try:
                    self.sink.put(event)
                except OutboxError as exc:
                    log.error("shed %s: event %s refused: %s", cam_id, event.event_id, exc)

    def on_zone_config(self, topic: str, payload: bytes) -> None:
        try:
            push = decode(ZoneConfigPush, payload)
        except ContractError as exc:
            self._bad(topic, exc)
            self._answer_unparsable(payload, str(exc))
            return
        pipeline = self.pipelines.get(push.camera)
        if pipeline is None:
            self._answer(push.request_id, push.camera, False, f"unknown camera {push.camera!r}")
            return
        try:
            if self.store is not None:
                self.store.save(push.camera, push.zones)
        except OSError as exc:
            self._answer(push.request_id, push.camera, False, f"cannot persist: {exc}")
            return
        pipeline.swap_zones(push.zones)
        self.zones_origin[push.camera] = ZonesOrigin.PUSHED
        self._answer(push.request_id, push.camera, True, None)

    def on_snapshot(self, topic: str, payload: bytes) -> None:
        try:
            request = decode(SnapshotRequest, payload)
        except ContractError as exc:
            self._bad(topic, exc)
            return
        pipeline = self.pipelines.get(request.camera)
        shot = None if pipeline is None else pipeline.snapshot(MAX_SNAPSHOT_REPLY_BYTES // 2)
        if shot is None:
            why = "unknown camera" if pipeline is None else "no frame yet"
            reply = SnapshotReply(request_id=request.request_id, camera=request.camera, error=why)
        else:
            jpeg, width, height = shot
            reply = SnapshotReply(
                request_id=request.request_id,
                camera=request.camera,
                jpeg=base64.b64encode(jpeg),
                width=width,
                height=height,
                captured_at=pipeline.last_frame_at if pipeline is not None else None,
                zones=None if pipeline is None else pipeline.zones,  # what the camera runs
                zones_origin=self.zones_origin.get(request.camera),
            )
        self._reply(Command.SNAPSHOT, encode(reply))

    def _answer(self, request_id: str, camera: str, accepted: bool, reason: str | None) -> None:
        answer = ZoneConfigAnswer(
            request_id=request_id,
            camera=camera,
            accepted=accepted,
            reason=None if reason is None else reason[:2000],
        )
        self._reply(Command.ZONE_CONFIG, encode(answer))

    def _answer_unparsable(self, payload: bytes, reason: str) -> None:
        """Reject a push that does not validate, if its request id and camera can be read."""
        import json

        try:
            raw = json.loads(payload)
            self._answer(str(raw["request_id"]), str(raw["camera"]), False, reason)
        except (ValueError, KeyError, TypeError, ContractError):
            log.warning("zone config push without a readable request id: %s", reason)

    def _reply(self, command: Command, payload: bytes) -> None:
        if self.publisher is None:
            return
        topic = reply_topic(self.config.site, self.config.device, command)
        if not self.publisher.publish(topic, payload, qos=1):
            log.warning("reply on %s not sent (not connected)", topic)

    def _bad(self, topic: str, exc: Exception) -> None:
        self.bad_messages += 1
        log.warning("bad message on %s: %s", topic, exc)


def camera_frame_at(frame: Frame, start: dt.datetime) -> Frame:
    """``frame`` re-timed onto a fixed start (deterministic replays of recorded clips)."""
    return replace(frame, captured_at=start.timestamp() + frame.ts)


# -- running a site -----------------------------------------------------------------------


def load_analyzers(
    config: SiteConfig, models_dir: Path
) -> tuple[dict[str, Perception], list[Path]]:
    """One perception per distinct task set (shared by cameras), and the model files used."""
    from ringwatch.models.perception import Perception
    from ringwatch.models.runtime import RuntimeOptions

    m = config.models
    options = RuntimeOptions(provider=m.provider.value, threads=m.threads)
    thresholds = detector_thresholds(m.thresholds, shed_config(m.thresholds, config.shed))
    by_tasks: dict[tuple[frozenset[str], Tiling], Perception] = {}
    for cam in config.cameras:
        key = (frozenset(cam.tasks), person_tiling(cam))
        if key not in by_tasks:
            by_tasks[key] = Perception.from_models_dir(
                models_dir,
                options,
                thresholds,
                set(key[0]),
                m.person_model,
                key[1],
                m.faces_in_persons,
                m.fit_face_canvas,
                m.fit_person_canvas,
            )
    analyzers = {
        cam.id: by_tasks[(frozenset(cam.tasks), person_tiling(cam))] for cam in config.cameras
    }
    return analyzers, model_files(config, models_dir)


def person_tiling(cam: CameraConfig) -> Tiling:
    """The camera's tiling setting as the models library takes it."""
    from ringwatch.models.tiling import Tiling

    t = cam.person_tiling
    return Tiling(mode=t.mode, tile=t.tile, overlap=t.overlap)


def model_files(config: SiteConfig, models_dir: Path) -> list[Path]:
    from ringwatch.models.install import model_path
    from ringwatch.models.manifest import load_manifest

    manifest = load_manifest()
    tasks = {t for cam in config.cameras for t in cam.tasks}
    names = {
        "faces": ["yunet", "sface"],
        "persons": [config.models.person_model],
        "fire": ["fire_smoke"],
    }
    return [model_path(manifest.get(n), models_dir) for t in sorted(tasks) for n in names[t]]


def _on_message(handler: Callable[[str, bytes], None]) -> Callable[[Message], None]:
    def on_message(message: Message) -> None:
        handler(message.topic, message.payload)

    return on_message


def run_site(
    config: SiteConfig, models_dir: Path, stop: threading.Event, *, once: bool = False
) -> None:
    """Run every camera of ``config`` until ``stop`` is set; deliver through the outbox.
    ``once``: stop by itself when every video file has ended (``edge run --once``)."""
    from ringwatch.edge.capture import open_source
    from ringwatch.edge.health import CameraStats, build_health, clock_synced, prometheus_text
    from ringwatch.edge.metrics import MetricsServer
    from ringwatch.edge.outbox import Outbox
    from ringwatch.edge.uplink import Uplink, device_client
    from ringwatch.models.install import sha256_of

    site, device = config.site, config.device
    analyzers, files = load_analyzers(config, models_dir)
    shas = {f.name: sha256_of(f) for f in files}
    outbox = Outbox(config.outbox.path, config.outbox.max_events)
    client = device_client(config.broker, site, device, __version__)
    uplink = Uplink(outbox, client, site, device, config.outbox.receipt_timeout_s)
    sources = {
        c.id: open_source(c.source, loop=c.loop, realtime=c.realtime) for c in config.cameras
    }
    store = ZoneStore(config.outbox.path.parent / "zones")
    embedders = {cid: p.embedder for cid, p in analyzers.items()}
    agent = Agent(config, analyzers, sources, uplink, client, store, embedders)
    clips = None if config.clips is None else _site_clips(config, agent)  # issue 14
    for topic, handler in agent.subscriptions():
        client.subscribe(topic, _on_message(handler))
    uplink.start()
    client.start()
    if config.home_assistant is not None:  # issue 18: Home Assistant discovery (opt-in)
        from ringwatch.edge.homeassistant import start_discovery

        start_discovery(client, config)
    pump = threading.Thread(target=uplink.run, args=(stop,), name="uplink", daemon=True)
    pump.start()
    agent.start(stop)
    if once:  # issue 18: edge run --once
        from ringwatch.edge.replay import stop_when_replayed

        stop_when_replayed(sources, outbox, stop)
    started = dt.datetime.now(dt.UTC)
    metrics = (
        None if config.metrics is None else MetricsServer(config.metrics.host, config.metrics.port)
    )
    try:
        while not stop.wait(config.health_interval_s):
            cams = [
                CameraStats(cid, st, w.fps(time.monotonic()), w.latency_ms, w.frame_errors)
                for cid, (st, w) in agent.camera_status().items()
            ]
            health = build_health(
                site=site,
                device=device,
                version=__version__,
                at=dt.datetime.now(dt.UTC),
                started_at=started,
                models=shas,
                cameras=cams,
                outbox=outbox.stats(),
                bad_messages=agent.bad_messages + uplink.counters().bad_messages,
                clock_synced=clock_synced(),
            )
            uplink.put_health(health)
            if metrics is not None:
                metrics.publish(prometheus_text(health))
    finally:
        if metrics is not None:
            metrics.close()
        stop.set()
        agent.join(timeout=10)
        for source in sources.values():
            source.close()
        pump.join(timeout=5)
        if clips is not None:  # issue 14: finish open clips; queued ones stay on disk
            clips.close()
        uplink.pump()  # hand over what the cameras queued while stopping
        client.close()
        outbox.close()


def _site_clips(config: SiteConfig, agent: Agent) -> SiteClips:
    """Issue 14: evidence clips for every camera, and their uploader (edge/clips_site.py)."""
    from ringwatch.edge.clips_site import SiteClips

    assert config.clips is not None
    fps = {c.id: c.fps for c in config.cameras}
    return SiteClips(config.clips, config.site, config.device, fps, agent.pipelines).start()
