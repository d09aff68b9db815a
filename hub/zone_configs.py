"""The hub's side of zone editing: each camera's :class:`CameraZones`, pushed to its device.

Once a camera's zones are saved on the hub, the hub holds the source of truth (the edge's
local site file only bootstraps a camera that was never edited here). A save is validated
with the contract's own models (the same code the edge runs), stored with its audit entry
(who, when, before/after), and pushed on the device's ``zone_config`` command topic. The
camera stays *pending* until the device answers (:class:`ZoneConfigAnswer`): *accepted*
(swapped in without restart) or *rejected* with the reason, in which case the device keeps
its previous zones. A pending push is sent again, with the same request id, each time the
device's retained status says ``online``; the device answers each send, and a second answer
to a request id already answered is ignored.

Snapshots for the editor are asked over the ``snapshot`` command topic; the device answers
with a JPEG that has its privacy masks applied. The hub keeps the latest one per camera in
memory and can draw zones on it with the edge's own :class:`ZoneAnnotator`
(``ringwatch.edge.annotate`` depends only on the contract, numpy and OpenCV, not on the
edge runtime).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.orm import Session

from ringwatch.contract.errors import ContractError
from ringwatch.contract.ids import new_event_id
from ringwatch.contract.messages import (
    MAX_SNAPSHOT_REPLY_BYTES,
    DeviceState,
    DeviceStatus,
    SnapshotReply,
    SnapshotRequest,
    ZoneConfigAnswer,
    ZoneConfigPush,
    decode,
    describe_errors,
    encode,
)
from ringwatch.contract.topics import Command, TopicKind, command_topic, parse_topic, topic_filter
from ringwatch.contract.zones import CameraZones
from ringwatch.errors import RingwatchError
from ringwatch.hub import crud
from ringwatch.hub import tables as t
from ringwatch.hub.clock import Clock
from ringwatch.hub.db import SessionFactory
from ringwatch.hub.ingest import Inbound
from ringwatch.hub.workers import claim_mark
from ringwatch.hub.zone_tables import CameraZoneConfig, ZonePush

if TYPE_CHECKING:
    from ringwatch.hub.mqtt import BrokerLogin, MqttLink

log = logging.getLogger(__name__)
PENDING, ACCEPTED, REJECTED = "pending", "accepted", "rejected"
AUDIT_ENTITY = "camera_zones"


class ZoneEditorError(RingwatchError):
    """A zone edit cannot be done (unknown camera, invalid config, device not answering)."""


class InvalidZones(ZoneEditorError):
    """The config does not validate; ``errors`` are ``(path, message)`` pairs."""

    def __init__(self, message: str, errors: Sequence[tuple[str, str]]) -> None:
        super().__init__(message)
        self.errors = list(errors)


class SnapshotUnavailable(ZoneEditorError):
    """The device did not send a snapshot (offline, no frame yet, unknown camera)."""


class Publisher(Protocol):
    """Publishes a command (the hub's MQTT link; a list in tests)."""

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> bool: ...


class Acker(Protocol):
    def ack(self, mid: int, qos: int) -> None: ...


@dataclass(frozen=True, slots=True)
class Snapshot:
    jpeg: bytes
    width: int
    height: int
    taken_at: dt.datetime
    captured_at: dt.datetime | None = None  # the device's frame time; None: unknown
    running: CameraZones | None = None  # the zones the camera runs (None: not reported)
    running_origin: str | None = None  # ZonesOrigin: the site file, or a pushed config

    @property
    def stale(self) -> bool:
        """The frame is older than :data:`STALE_AFTER` when it reached the hub (the camera
        is offline or stuck: the device sent its last frame), or its age is unknown."""
        return self.captured_at is None or self.taken_at - self.captured_at > STALE_AFTER


STALE_AFTER = dt.timedelta(seconds=30)


def validate_zones(raw: object) -> CameraZones:
    """``raw`` (JSON-like) as a :class:`CameraZones`, or :class:`InvalidZones` saying why."""
    try:
        return CameraZones.model_validate(raw)
    except ValidationError as exc:
        from ringwatch.contract.messages import clean_message, format_loc

        errors = [(format_loc(e["loc"]), clean_message(e["msg"])) for e in exc.errors()]
        raise InvalidZones(describe_errors(exc), errors) from None


def zones_from_site_file(text: str, site: str, device: str, camera: str) -> CameraZones:
    """The zones of ``camera`` in an edge site file (YAML), checked to be that device's file:
    how a camera's local zones become the hub's (the editor loads them, a save pushes them).
    Uses the edge's config models (``ringwatch.edge.config``: pydantic only, no runtime)."""
    import yaml

    from ringwatch.configfile import validate_config
    from ringwatch.edge.config import SiteConfig
    from ringwatch.errors import ConfigError

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ZoneEditorError(f"site file: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ZoneEditorError("site file: expected a mapping of keys at the top")
    try:
        config = validate_config(SiteConfig, data, "site file")
    except ConfigError as exc:
        raise ZoneEditorError(str(exc)) from None
    if (config.site, config.device) != (site, device):
        raise ZoneEditorError(
            f"site file is for {config.site}/{config.device}, not this camera's {site}/{device}"
        )
    cams = {c.id: c for c in config.cameras}
    if camera not in cams:
        raise ZoneEditorError(f"site file has no camera {camera!r} (it has {sorted(cams)})")
    return cams[camera].camera_zones()


def zone_subscriptions() -> list[str]:
    """Plain (not shared) filters: every device's replies and retained status."""
    return [topic_filter(TopicKind.REPLIES), topic_filter(TopicKind.STATUS)]


class _Waiters:
    """Snapshot requests waiting for their reply, by request id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, threading.Event] = {}
        self._replies: dict[str, SnapshotReply] = {}

    def open(self, request_id: str) -> threading.Event:
        with self._lock:
            event = self._events[request_id] = threading.Event()
        return event

    def deliver(self, reply: SnapshotReply) -> bool:
        with self._lock:
            event = self._events.get(reply.request_id)
            if event is None:
                return False
            self._replies[reply.request_id] = reply
        event.set()
        return True

    def close(self, request_id: str) -> SnapshotReply | None:
        with self._lock:
            self._events.pop(request_id, None)
            return self._replies.pop(request_id, None)


class ZoneConfigs:
    """Save, push and track zone configs; ask devices for snapshots."""

    def __init__(
        self, sessions: SessionFactory, clock: Clock, snapshot_timeout_s: float = 8.0
    ) -> None:
        self.sessions = sessions
        self.bad_messages = 0  # replies and status that did not fit the contract
        self.clock = clock
        self.snapshot_timeout_s = snapshot_timeout_s
        self.publisher: Publisher | None = None
        self.acker: Acker | None = None
        self._online: dict[tuple[str, str], bool] = {}
        self._snapshots: dict[tuple[str, str], Snapshot] = {}
        self._waiters = _Waiters()
        self._lock = threading.Lock()

    def attach(self, publisher: Publisher, acker: Acker | None = None) -> None:
        """Use ``publisher`` for commands (and ``acker`` for manual MQTT acks)."""
        self.publisher = publisher
        self.acker = acker

    # -- reading --------------------------------------------------------------------------

    def online(self, site: str, device: str) -> bool | None:
        """The device's last retained status: True online, False offline, None unknown."""
        with self._lock:
            return self._online.get((site, device))

    def snapshot(self, site: str, camera: str) -> Snapshot | None:
        with self._lock:
            return self._snapshots.get((site, camera))

    @staticmethod
    def current(session: Session, site: str, camera: str) -> CameraZoneConfig | None:
        return session.get(CameraZoneConfig, (site, camera))

    # -- saving and pushing ---------------------------------------------------------------

    def save(
        self, site: str, camera: str, raw: object, actor: crud.Actor, reason: str | None = None
    ) -> CameraZoneConfig:
        """Validate ``raw``, store it as the camera's config (audited), push it: pending."""
        zones = validate_zones(raw)
        with self.sessions.begin() as session:
            row = self._store(session, site, camera, zones, actor, reason)
            push = _push_message(row)
        self._send(row.site_id, row.device_id, push)
        with self.sessions.begin() as session:
            self._mark_pushed(session, row.site_id, row.camera_id, push.request_id)
            fresh = self.current(session, site, camera)
        assert fresh is not None
        return fresh

    def _store(
        self,
        session: Session,
        site: str,
        camera: str,
        zones: CameraZones,
        actor: crud.Actor,
        reason: str | None,
    ) -> CameraZoneConfig:
        cam = session.get(t.Camera, (site, camera))
        if cam is None:
            raise ZoneEditorError(f"camera {site}/{camera} is not registered on the hub")
        now = self.clock()
        after = zones.model_dump(mode="json")
        request_id = new_event_id()
        row = self.current(session, site, camera)
        before = None if row is None else row.zones
        if row is None:
            row = CameraZoneConfig(site_id=site, camera_id=camera, version=1, pushes=0)
            session.add(row)
        else:
            row.version += 1
        row.device_id, row.zones, row.state = cam.device_id, after, PENDING
        row.request_id, row.reason, row.answered_at = request_id, None, None
        row.pushes, row.pushed_at = 0, None  # counts the sends of this version
        row.updated_by, row.updated_at = actor.name, now
        session.add(
            ZonePush(
                request_id=request_id,
                site_id=site,
                device_id=cam.device_id,
                camera_id=camera,
                version=row.version,
                zones=after,
                created_by=actor.name,
                created_at=now,
                state=PENDING,
            )
        )
        crud.audit(
            session,
            actor,
            "update",
            AUDIT_ENTITY,
            f"{site}/{camera}",
            now,
            reason,
            version=row.version,
            request_id=request_id,
            before=before,
            after=after,
        )
        session.flush()
        return row

    def _send(self, site: str, device: str, push: ZoneConfigPush) -> bool:
        if self.publisher is None:
            log.warning("zone config for %s/%s not sent: no broker link", site, push.camera)
            return False
        topic = command_topic(site, device, Command.ZONE_CONFIG)
        return self.publisher.publish(topic, encode(push), qos=1)

    def _mark_pushed(self, session: Session, site: str, camera: str, request_id: str) -> None:
        row = self.current(session, site, camera)
        if row is not None and row.request_id == request_id:
            row.pushed_at = self.clock()
            row.pushes += 1

    def repush_pending(self, site: str, device: str, status_at: dt.datetime | None = None) -> int:
        """Send every pending config of ``device`` again (it has just come online). Every
        hub worker receives the device's retained status: the one that first claims this
        status (by its ``at``, which the edge always sends) sends; the others send none. A
        status without ``at`` is re-pushed by each worker (the same request id: the device
        applies it once and the hub ignores a second answer)."""
        if status_at is not None:
            with self.sessions.begin() as session:
                if not claim_mark(session, f"zone-repush:{site}/{device}", status_at):
                    return 0
        with self.sessions() as session:
            rows = session.scalars(
                sa.select(CameraZoneConfig).where(
                    CameraZoneConfig.site_id == site,
                    CameraZoneConfig.device_id == device,
                    CameraZoneConfig.state == PENDING,
                )
            ).all()
            pushes = [_push_message(r) for r in rows]
        for push in pushes:
            if self._send(site, device, push):
                with self.sessions.begin() as session:
                    self._mark_pushed(session, site, push.camera, push.request_id)
        if pushes:
            log.info("re-pushed %d pending zone config(s) to %s/%s", len(pushes), site, device)
        return len(pushes)

    # -- answers from devices -------------------------------------------------------------

    def on_answer(self, site: str, device: str, answer: ZoneConfigAnswer) -> bool:
        """Record a device's answer; False when it answers nothing pending (ignored)."""
        now = self.clock()
        with self.sessions.begin() as session:
            push = session.get(ZonePush, answer.request_id)
            if push is None or (push.site_id, push.device_id) != (site, device):
                log.warning(
                    "zone answer %s from %s/%s: no such push", answer.request_id, site, device
                )
                return False
            if push.state != PENDING:
                return False  # answered already (the push was sent again)
            state = ACCEPTED if answer.accepted else REJECTED
            push.state, push.reason, push.answered_at = state, answer.reason, now
            row = self.current(session, push.site_id, push.camera_id)
            if row is not None and row.request_id == push.request_id:
                row.state, row.reason, row.answered_at = state, answer.reason, now
                if answer.accepted:
                    row.applied_zones, row.applied_version = push.zones, push.version
            crud.audit(
                session,
                crud.Actor(f"{site}/{device}", "device"),
                state,
                AUDIT_ENTITY,
                f"{site}/{push.camera_id}",
                now,
                answer.reason,
                version=push.version,
                request_id=push.request_id,
            )
        return True

    def on_status(self, site: str, device: str, status: DeviceStatus) -> None:
        online = status.state is DeviceState.ONLINE
        with self._lock:
            self._online[(site, device)] = online
        if online:
            self.repush_pending(site, device, status.at)

    # -- snapshots ------------------------------------------------------------------------

    def request_snapshot(
        self, site: str, device: str, camera: str, timeout_s: float | None = None
    ) -> Snapshot:
        """Ask the device for a fresh (masked) snapshot and wait for it."""
        timeout_s = self.snapshot_timeout_s if timeout_s is None else timeout_s
        request = SnapshotRequest(request_id=new_event_id(), camera=camera)
        waiting = self._waiters.open(request.request_id)
        try:
            topic = command_topic(site, device, Command.SNAPSHOT)
            if self.publisher is None or not self.publisher.publish(topic, encode(request)):
                raise SnapshotUnavailable(f"{site}/{device}: not connected to the broker")
            waiting.wait(timeout_s)
        finally:
            reply = self._waiters.close(request.request_id)
        if reply is None:
            state = {True: "online", False: "offline", None: "of unknown status"}[
                self.online(site, device)
            ]
            raise SnapshotUnavailable(
                f"device {site}/{device} ({state}) sent no snapshot within {timeout_s:g} s"
            )
        if reply.jpeg is None or reply.width is None or reply.height is None:
            raise SnapshotUnavailable(f"device {site}/{device}: {reply.error or 'no image'}")
        shot = Snapshot(
            bytes(reply.jpeg),
            reply.width,
            reply.height,
            self.clock(),
            reply.captured_at,
            reply.zones,
            None if reply.zones_origin is None else reply.zones_origin.value,
        )
        with self._lock:
            self._snapshots[(site, camera)] = shot
        return shot

    def annotated(
        self,
        site: str,
        camera: str,
        zones: CameraZones,
        prepare: Callable[[bytes], bytes] | None = None,
    ) -> bytes | None:
        """The latest snapshot with ``zones`` drawn by the edge's annotator, as a JPEG;
        ``prepare`` changes the snapshot first (the image policy pixelates it)."""
        shot = self.snapshot(site, camera)
        if shot is None:
            return None
        import cv2
        import numpy as np

        from ringwatch.edge.annotate import ZoneAnnotator

        jpeg = shot.jpeg if prepare is None else prepare(shot.jpeg)
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            return None
        drawn = ZoneAnnotator().annotate(np.asarray(image, np.uint8), zones)
        ok, buf = cv2.imencode(".jpg", drawn, [cv2.IMWRITE_JPEG_QUALITY, 85])
        return bytes(buf) if ok else None

    # -- MQTT -----------------------------------------------------------------------------

    def handle(self, message: Inbound) -> None:
        """Dispatch one message from the zone link (replies and status), then ack it."""
        try:
            self._dispatch(message)
        except ContractError as exc:
            self.bad_messages += 1
            log.warning("bad message on %s: %s", message.topic, exc)
        except Exception:  # the zone link's thread must not die of one message
            self.bad_messages += 1
            log.exception("message on %s failed", message.topic)
        finally:
            if self.acker is not None:
                self.acker.ack(message.mid, message.qos)

    def _dispatch(self, message: Inbound) -> None:
        topic = parse_topic(message.topic)
        site, device = topic["site"], topic["device"]
        if topic.kind is TopicKind.STATUS:
            self.on_status(site, device, decode(DeviceStatus, message.payload))
        elif topic.kind is TopicKind.REPLIES and topic["command"] == Command.ZONE_CONFIG:
            self.on_answer(site, device, decode(ZoneConfigAnswer, message.payload))
        elif topic.kind is TopicKind.REPLIES and topic["command"] == Command.SNAPSHOT:
            reply = decode(SnapshotReply, message.payload, limit=MAX_SNAPSHOT_REPLY_BYTES)
            if not self._waiters.deliver(reply):
                log.info("late snapshot %s from %s/%s dropped", reply.request_id, site, device)


def _push_message(row: CameraZoneConfig) -> ZoneConfigPush:
    return ZoneConfigPush(
        request_id=row.request_id,
        camera=row.camera_id,
        zones=CameraZones.model_validate(row.zones),
    )


def start_zone_link(
    zones: ZoneConfigs,
    broker_url: str,
    client_id: str,
    session_expiry_s: int,
    login: BrokerLogin | None = None,
    protocol: str = "5",
) -> MqttLink:
    """A started MQTT link for ``zones``: device replies and status in, commands out."""
    from ringwatch.hub.mqtt import BrokerAddress, MqttLink

    link = MqttLink(
        BrokerAddress.from_url(broker_url),
        client_id,
        zone_subscriptions(),
        zones.handle,
        session_expiry_s,
        login,
        protocol,
    )
    zones.attach(link, link)
    link.start()
    return link
