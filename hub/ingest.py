"""What the hub does with a batch of MQTT messages, independent of MQTT itself.

:meth:`Ingestor.ingest` parses every message against the contract, stores each event once
(by event id), matches face embeddings against the watch list, writes dead letters for what
it cannot take, lets the incidents hook see the new events, and commits, all in one
transaction; only then does the caller ack the
messages and send the receipts it returns. Face events are stored without embedding and
crop; a matching face's crop is kept on its sighting.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import re
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

import numpy as np
import pydantic_core
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ringwatch.contract.errors import ContractError
from ringwatch.contract.ids import is_uuid7
from ringwatch.contract.messages import (
    MAX_MESSAGE_BYTES,
    DeviceStatus,
    Event,
    Health,
    ReceiverClock,
    SensorReading,
    TimeBounds,
    TimeOutOfBounds,
    decode,
)
from ringwatch.contract.topics import EventKind, Topic, TopicKind, parse_topic
from ringwatch.hub import crud
from ringwatch.hub import tables as t
from ringwatch.hub.ann import Match
from ringwatch.hub.clock import Clock
from ringwatch.hub.db import SessionFactory, WriteTurns
from ringwatch.hub.matching import Matcher

KEPT_PAYLOAD_CHARS = 64 * 1024
PREVIEW_CHARS = 2048
DeviceKey = tuple[str, str]


class StoredHook(Protocol):
    """Called inside the ingest transaction with the batch's new events (incidents)."""

    def __call__(self, events: list[Event], now: dt.datetime, session: Session) -> None: ...


@dataclass(frozen=True, slots=True)
class Inbound:
    """One MQTT message as the hub sees it (paho's message converted at the boundary)."""

    topic: str
    payload: bytes
    mid: int = 0
    qos: int = 1


@dataclass(frozen=True, slots=True)
class Rejected:
    topic: str
    reason: str
    detail: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class CameraRow:
    """What ingest needs of a camera (no ORM object per batch)."""

    device_id: str
    default_ring: str | None


@dataclass(frozen=True, slots=True)
class Parsed:
    topic: Topic
    message: Event | Health | SensorReading | DeviceStatus
    raw: Inbound


@dataclass
class IngestStats:
    """Counters since start (thread-safe); dead letters are also rows in the database."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    sightings: int = 0
    receipts_sent: int = 0
    errors: int = 0
    dead_by_reason: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def dead(self, reason: str) -> None:
        with self._lock:
            self.dead_letters += 1
            self.dead_by_reason[reason] = self.dead_by_reason.get(reason, 0) + 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {
                f.name: getattr(self, f.name)
                for f in fields(self)
                if not f.name.startswith("_") and f.name != "dead_by_reason"
            }


@dataclass
class BatchResult:
    """Receipts to send per (site, device) after the commit, and what happened."""

    receipts: dict[DeviceKey, list[str]] = field(default_factory=lambda: defaultdict(list))
    stored: int = 0
    duplicates: int = 0
    dead: list[str] = field(default_factory=list)
    sightings: int = 0

    def merge(self, other: BatchResult) -> None:
        for key, ids in other.receipts.items():
            self.receipts[key].extend(ids)
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.dead.extend(other.dead)
        self.sightings += other.sightings


def parse(message: Inbound, clock: ReceiverClock | None = None) -> Parsed | Rejected:
    """Check a message against the contract (its times against ``clock`` when given: see
    :class:`~ringwatch.contract.messages.TimeBounds`); never raises."""
    try:
        topic = _parse_topic(message.topic)
    except ContractError as exc:
        return Rejected(message.topic, "bad_topic", str(exc), message.payload)
    if len(message.payload) > MAX_MESSAGE_BYTES:
        detail = f"payload is {len(message.payload)} bytes, limit {MAX_MESSAGE_BYTES}"
        return Rejected(message.topic, "oversized", detail, message.payload)
    model = _MODELS.get(topic.kind)
    if model is None:
        detail = f"the hub does not take {topic.kind.value} messages"
        return Rejected(message.topic, "unexpected_topic", detail, message.payload)
    try:
        decoded = decode(model, message.payload, clock=clock)
    except TimeOutOfBounds as exc:
        return Rejected(message.topic, "time_out_of_bounds", str(exc), message.payload)
    except ContractError as exc:
        return Rejected(message.topic, "invalid", str(exc), message.payload)
    mismatch = _topic_mismatch(topic, decoded)
    if mismatch:
        return Rejected(message.topic, "topic_mismatch", mismatch, message.payload)
    return Parsed(topic, decoded, message)


# A device publishes on a handful of topics: parse each once (errors are not cached).
_parse_topic = functools.lru_cache(maxsize=4096)(parse_topic)

_MODELS: dict[TopicKind, type[Event | Health | SensorReading | DeviceStatus]] = {
    TopicKind.EVENTS: Event,
    TopicKind.HEALTH: Health,
    TopicKind.SENSORS: SensorReading,
    TopicKind.STATUS: DeviceStatus,
}


def _topic_mismatch(topic: Topic, message: Event | Health | SensorReading | DeviceStatus) -> str:
    want = dict(topic.segments)
    have: dict[str, str] = {"site": message.site}
    if isinstance(message, SensorReading):
        have |= {"shed": message.shed, "bay": message.bay}
    else:
        have["device"] = message.device
    if isinstance(message, Event):
        have["event_kind"] = message.kind.value
    wrong = [f"{k}: topic {want[k]!r}, payload {v!r}" for k, v in have.items() if want[k] != v]
    return "; ".join(wrong)


def strip_biometrics(payload: bytes) -> str:
    """The payload as text for a dead letter, without any embedding or face crop.

    A JSON object of allowed size and at most :data:`MAX_JSON_DEPTH` levels deep is kept
    with ``embedding`` and every ``*_jpeg`` value replaced (at any depth). Anything else
    (oversized, too deep, not JSON, not an object) is kept only as a short scrubbed preview:
    see :func:`scrubbed_preview`. Never raises."""
    data = _json_object(payload)
    if data is not None:
        try:
            return _truncate(json.dumps(_strip(data, 0)))
        except _TooDeep:
            pass
    return scrubbed_preview(payload)


MAX_JSON_DEPTH = 32


class _TooDeep(ValueError):
    pass


def _json_object(payload: bytes) -> dict[str, Any] | None:
    """``payload`` as a JSON object, or None (oversized, not JSON, too deep to parse)."""
    if len(payload) > MAX_MESSAGE_BYTES:
        return None
    try:
        # pydantic's Rust parser: stops at 200 levels with a ValueError at once, where
        # json.loads recurses to Python's limit first (about 0.5 ms per nesting bomb).
        data = pydantic_core.from_json(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _strip(value: Any, depth: int) -> Any:
    if depth > MAX_JSON_DEPTH:
        raise _TooDeep
    if isinstance(value, dict):
        return {
            k: "(stripped)" if _biometric_key(k) else _strip(v, depth + 1) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_strip(v, depth + 1) for v in value]
    return value


def _biometric_key(key: str) -> bool:
    return key == "embedding" or key.endswith("_jpeg")


# The value of "embedding" (a list, possibly cut off) or of any "*_jpeg" key (a string,
# possibly unterminated); then, whatever key they were under, any run of 8+ numbers and
# any long base64-looking run.
_BIOMETRIC_VALUE = re.compile(
    r'("(?:embedding|[^"\\]*_jpeg)"\s*:\s*)(?:\[[^\]]*\]?|"[^"]*"?|[^,}\]]*)'
)
_NUMBER = r"-?\d++(?:\.\d*+)?+(?:[eE][-+]?\d++)?+"  # possessive: no backtracking
_NUMBER_RUN = re.compile(rf"(?<![\w.])(?:{_NUMBER}\s*+,\s*+){{7,}}(?:{_NUMBER})?")
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{64,}={0,2}")


def scrubbed_preview(payload: bytes) -> str:
    """A preview of at most :data:`PREVIEW_CHARS` of a payload that is not a JSON object,
    with biometric values removed, led by the payload's size and sha256."""
    head_bytes = payload[: PREVIEW_CHARS * 4]  # scrub only what can be shown
    text = head_bytes.decode("utf-8", errors="replace").replace("\x00", "\\x00")
    text = _BIOMETRIC_VALUE.sub(r'\1"(stripped)"', text)
    text = _NUMBER_RUN.sub("(numbers stripped)", text)
    text = _BASE64_RUN.sub("(base64 stripped)", text)
    digest = hashlib.sha256(payload).hexdigest()
    head = f"(not a JSON object: {len(payload)} bytes, sha256 {digest}; scrubbed preview)\n"
    if len(text) > PREVIEW_CHARS:
        text = text[:PREVIEW_CHARS] + f"... ({len(text) - PREVIEW_CHARS} more chars)"
    return head + text


_EVENT_ID = re.compile(rb'"event_id"\s*:\s*"([0-9a-f-]{36})"')


def lenient_event_id(payload: bytes) -> str | None:
    """The event id of a payload the hub rejected, when it names a valid UUIDv7."""
    data = _json_object(payload)
    value = None if data is None else data.get("event_id")
    found = value if isinstance(value, str) else None
    if found is None:
        match = _EVENT_ID.search(payload[:4096])
        found = match.group(1).decode() if match else None
    return found if found is not None and is_uuid7(found) else None


def _truncate(text: str) -> str:
    if len(text) <= KEPT_PAYLOAD_CHARS:
        return text
    return text[:KEPT_PAYLOAD_CHARS] + f"... ({len(text) - KEPT_PAYLOAD_CHARS} more chars)"


def dead_receipt(result: BatchResult, item: Rejected) -> None:
    """A dead-lettered event is kept here for technicians, so its device gets a receipt
    too (else it would re-send it forever and fill its in-flight window)."""
    try:
        topic = parse_topic(item.topic)
    except ContractError:
        return
    if topic.kind is not TopicKind.EVENTS:
        return
    event_id = lenient_event_id(item.payload)
    if event_id is not None:
        segments = dict(topic.segments)
        result.receipts[(segments["site"], segments["device"])].append(event_id)


class Ingestor:
    """Stores one batch per transaction; see the module docstring."""

    def __init__(
        self,
        sessions: SessionFactory,
        matcher: Matcher,
        clock: Clock,
        stats: IngestStats,
        on_stored: StoredHook | None = None,
        time_bounds: TimeBounds | None = None,
        turns: WriteTurns | None = None,
    ) -> None:
        self.time_bounds = time_bounds or TimeBounds()  # message times vs this clock
        self.turns = turns or WriteTurns(enabled=False)  # shared with the dead-letter thread
        self.sessions = sessions
        self.matcher = matcher
        self.clock = clock
        self.stats = stats
        self.on_stored = on_stored  # before each commit: the new events (incidents hook)

    def ingest(self, batch: Sequence[Inbound]) -> BatchResult:
        """Parse, store and commit ``batch``. Database outages raise (the caller retries
        without acking); an event stored concurrently by another worker is skipped by the
        insert itself (``ON CONFLICT DO NOTHING``) and counted a duplicate; any other
        integrity error retries the batch one message at a time."""
        now = self.clock()
        items = [parse(m, self.time_bounds.at(now)) for m in batch]
        try:
            result = self._commit(items)
        except IntegrityError:
            result = BatchResult()
            for item in items:
                result.merge(self._commit([item]))
        # Counted once the batch is taken, so a batch retried (outage) or taken again one
        # message at a time by the worker counts each message once.
        self.stats.add(
            received=len(batch),
            stored=result.stored,
            duplicates=result.duplicates,
            sightings=result.sightings,
        )
        for reason in result.dead:
            self.stats.dead(reason)
        return result

    def dead_letter(self, message: Inbound, reason: str, detail: str) -> BatchResult:
        """Store ``message`` as a dead letter on its own (when processing it failed)."""
        result = self._commit([Rejected(message.topic, reason, detail, message.payload)])
        self.stats.add(received=1)
        self.stats.dead(reason)
        return result

    def _commit(self, items: Sequence[Parsed | Rejected]) -> BatchResult:
        with self.turns.turn(), self.sessions.begin() as session:
            writer = _BatchWriter(session, self.matcher, self.clock())
            result = writer.write(items)
            if self.on_stored is not None and writer.fresh:
                # In the same transaction: if the incident step fails, the batch rolls back
                # and is retried or taken one by one like any other failure.
                self.on_stored(writer.fresh, writer.now, session)
        return result


class _BatchWriter:
    """Writes one batch inside an open transaction."""

    def __init__(self, session: Session, matcher: Matcher, now: dt.datetime) -> None:
        self.session = session
        self.matcher = matcher
        self.now = now
        self.result = BatchResult()
        self.fresh: list[Event] = []

    def write(self, items: Sequence[Parsed | Rejected]) -> BatchResult:
        parsed = [i for i in items if isinstance(i, Parsed)]
        self.sites = {i.message.site for i in parsed}
        self.cameras = self._cameras(self.sites)
        events: list[Event] = []
        for item in items:
            if isinstance(item, Rejected):
                self._dead(item)
            elif isinstance(item.message, Event):
                self._check_event(item, events)
            else:
                self._other(item)
        self._store_events(events)
        return self.result

    # Looked up once per batch, and only when the batch needs them: a batch of events
    # from known cameras costs one query here (a camera's row names its device).

    @functools.cached_property
    def devices(self) -> dict[DeviceKey, t.Device]:
        rows = self.session.scalars(sa.select(t.Device).where(t.Device.site_id.in_(self.sites)))
        return {(d.site_id, d.id): d for d in rows}

    @functools.cached_property
    def site_ids(self) -> set[str]:
        return set(self.session.scalars(sa.select(t.Site.id).where(t.Site.id.in_(self.sites))))

    def _cameras(self, sites: set[str]) -> dict[DeviceKey, CameraRow]:
        columns = (t.Camera.site_id, t.Camera.id, t.Camera.device_id, t.Camera.default_ring)
        rows = self.session.execute(sa.select(*columns).where(t.Camera.site_id.in_(sites)))
        return {(r[0], r[1]): CameraRow(r[2], r[3]) for r in rows}

    def _dead(self, item: Rejected) -> None:
        crud.add_dead_letter(
            self.session,
            item.topic,
            item.reason[:40],
            item.detail.replace("\x00", "\\x00"),
            len(item.payload),
            strip_biometrics(item.payload),
            self.now,
        )
        self.result.dead.append(item.reason)
        self._receipt_dead(item)

    def _receipt_dead(self, item: Rejected) -> None:
        dead_receipt(self.result, item)

    def _reject(self, item: Parsed, reason: str, detail: str) -> None:
        self._dead(Rejected(item.raw.topic, reason, detail, item.raw.payload))

    def _check_event(self, item: Parsed, events: list[Event]) -> None:
        event = item.message
        assert isinstance(event, Event)
        camera = self.cameras.get((event.site, event.camera))
        if camera is not None and camera.device_id == event.device:
            events.append(event)  # the camera's device exists (foreign key)
        elif (event.site, event.device) not in self.devices:
            self._reject(item, "unknown_device", f"device {event.site}/{event.device} unknown")
        else:
            detail = f"camera {event.camera} is not a camera of {event.site}/{event.device}"
            self._reject(item, "unknown_camera", detail)

    def _other(self, item: Parsed) -> None:
        msg = item.message
        if isinstance(msg, SensorReading):
            if msg.site not in self.site_ids:
                self._reject(item, "unknown_site", f"site {msg.site} unknown")
                return
            self.session.add(
                t.SensorReading(
                    site_id=msg.site,
                    **msg.model_dump(include={"shed", "bay", "current_a", "voltage_v"}),
                    temperature_c=msg.temperature_c,
                    measured_at=msg.measured_at,
                )
            )
            return
        assert isinstance(msg, Health | DeviceStatus)
        device = self.devices.get((msg.site, msg.device))
        if device is None:
            self._reject(item, "unknown_device", f"device {msg.site}/{msg.device} unknown")
        elif isinstance(msg, Health):
            crud.record_health(self.session, device, msg.model_dump(mode="json"), msg.at, self.now)
        else:
            device.last_seen_at = self.now  # the hub's clock: edges' clocks drift
            device.agent_version = msg.agent_version or device.agent_version

    def _store_events(self, events: list[Event]) -> None:
        """One multi-row insert that skips ids already stored (by an earlier batch or,
        concurrently, by another worker): what it inserted is what is new."""
        unique: dict[str, Event] = {}
        for event in events:
            self.result.receipts[(event.site, event.device)].append(event.event_id)
            unique.setdefault(event.event_id, event)
        rows = [_event_values(e, self.now) for e in unique.values()]
        inserted = crud.insert_new_events(self.session, rows)
        self.fresh = [e for event_id, e in unique.items() if event_id in inserted]
        self.result.stored += len(self.fresh)
        self.result.duplicates += len(events) - len(self.fresh)
        self._match([e for e in self.fresh if e.embedding is not None])

    def _match(self, faces: list[Event]) -> None:
        if not faces:
            return
        matrix = np.stack([np.asarray(f.embedding, np.float32) for f in faces])
        for event, matches in zip(faces, self.matcher.match(self.session, matrix), strict=True):
            for match in matches:
                self._sighting(event, match)

    def _sighting(self, event: Event, match: Match) -> None:
        camera = self.cameras[(event.site, event.camera)]
        ring = event.ring.value if event.ring is not None else camera.default_ring
        self.session.add(
            t.Sighting(
                event_id=event.event_id,
                person_id=match.person_id,
                template_id=match.template_id,
                site_id=event.site,
                device_id=event.device,
                camera_id=event.camera,
                ring=ring,
                zone_id=event.zone_id,
                track_id=event.track_id,
                captured_at=event.captured_at,
                similarity=match.similarity,
                threshold=self.matcher.threshold,
                rank=match.rank,
                crop_jpeg=event.face_crop_jpeg,
                created_at=self.now,
            )
        )
        crud.audit(
            self.session,
            crud.INGEST,
            "match",
            "person",
            match.person_id,
            self.now,
            None,
            event_id=event.event_id,
            site=event.site,
            camera=event.camera,
            similarity=round(match.similarity, 4),
            template_id=match.template_id,
        )
        self.result.sightings += 1


_NOT_STORED = {"embedding", "face_crop_jpeg", "snapshot_jpeg"}  # snapshot: its own column


def _event_values(event: Event, now: dt.datetime) -> dict[str, Any]:
    """The ``events`` row of an event: no embedding and no face crop (biometrics)."""
    return {
        "id": event.event_id,
        "site_id": event.site,
        "device_id": event.device,
        "camera_id": event.camera,
        "kind": event.kind.value,
        "phase": event.phase.value,
        "ring": None if event.ring is None else event.ring.value,
        "zone_id": event.zone_id,
        "track_id": event.track_id,
        "level": None if event.level is None else event.level.value,
        "captured_at": event.captured_at,
        "received_at": now,
        "snapshot_jpeg": event.snapshot_jpeg,
        "payload": event.model_dump(mode="json", exclude_none=True, exclude=_NOT_STORED),
    }


__all__ = [
    "BatchResult",
    "EventKind",
    "Inbound",
    "IngestStats",
    "Ingestor",
    "Rejected",
    "StoredHook",
    "dead_receipt",
    "parse",
    "strip_biometrics",
]
