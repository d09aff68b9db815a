"""The agent: one pipeline and worker per camera, and the hub's commands to the box (zone
configs, snapshots) and the shed sensors' readings.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

import pydantic_core

from ringwatch.contract.errors import ContractError
from ringwatch.contract.messages import (
    MAX_SNAPSHOT_REPLY_BYTES,
    SensorReading,
    SnapshotReply,
    SnapshotRequest,
    ZoneConfigAnswer,
    ZoneConfigPush,
    ZonesOrigin,
    decode,
    encode,
)
from ringwatch.contract.topics import Command, TopicKind, command_topic, reply_topic, topic_filter
from ringwatch.contract.zones import CameraZones, ZoneRole
from ringwatch.edge.capture import FrameSource, SourceStatus
from ringwatch.edge.config import CameraConfig, CameraRole, SiteConfig, Thresholds
from ringwatch.edge.faces_track import Embedder, face_track_config
from ringwatch.edge.outbox import OutboxError
from ringwatch.edge.pipeline import Analyzer, CameraPipeline, EventSink, Ident, Publisher, Tunables
from ringwatch.edge.shed import FirePersistenceConfig, ShedConfig, ShedMonitor
from ringwatch.edge.tamper import TamperWatch
from ringwatch.edge.worker import CameraWorker, WorkerStats
from ringwatch.errors import ConfigError

log = logging.getLogger("ringwatch.edge.agent")  # one logger for the agent's parts


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
        try:
            # pydantic_core's parser is depth-limited (ValueError on a JSON bomb) where the
            # standard library's raises RecursionError
            raw = pydantic_core.from_json(payload)
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
