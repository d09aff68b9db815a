"""Versioned payload models for every MQTT message, and their JSON encoding.

All payloads are JSON objects with ``schema_version``. Bytes (JPEG snapshots and face crops)
are base64 strings, size-limited. Decoding checks the raw size first, then validates, and
raises :class:`~ringwatch.contract.errors.ContractError` naming the field that is wrong.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal, Self, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import (
    AfterValidator,
    Base64Bytes,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ringwatch.contract.colours import Colour, Ring
from ringwatch.contract.errors import ContractError
from ringwatch.contract.ids import is_uuid7
from ringwatch.contract.images import ImageRefused, check_image
from ringwatch.contract.topics import EventKind, RecipientKind
from ringwatch.contract.zones import CameraZones, Ident

SCHEMA_VERSION: Literal[1] = 1
MAX_MESSAGE_BYTES = 512 * 1024
MAX_IMAGE_BYTES = 200 * 1024
MAX_SNAPSHOT_REPLY_BYTES = 2 * 1024 * 1024
EMBEDDING_DIM = 128
EMBEDDING_NORM_TOLERANCE = 1e-3
MAX_RECEIPT_IDS = 1000


EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
TIME_OUT_OF_BOUNDS = "time_out_of_bounds"


@dataclass(frozen=True, slots=True)
class TimeBounds:
    """How far the times in a message may stray from the receiver's clock.

    ``ahead`` covers clock skew (a heartbeat dated 9999 would keep a device online for
    ever). ``behind`` is unset by default: an edge replays its outbox after an outage of
    any length, and an old time does no harm. Every time is also always within
    [:data:`EARLIEST`, :data:`LATEST`), clock or not (a year 1 or 9999 overflows date
    arithmetic downstream)."""

    ahead: dt.timedelta = dt.timedelta(days=1)
    behind: dt.timedelta | None = None

    def at(self, now: dt.datetime) -> ReceiverClock:
        return ReceiverClock(now, self)


@dataclass(frozen=True, slots=True)
class ReceiverClock:
    """The receiver's time when a message is decoded, with the bounds around it."""

    now: dt.datetime
    bounds: TimeBounds = TimeBounds()

    def refuse(self, value: dt.datetime) -> str | None:
        """Why ``value`` is out of bounds, or None."""
        clock = f"the receiver's clock ({_iso(self.now)})"
        if value > self.now + self.bounds.ahead:
            return f"is more than {self.bounds.ahead} ahead of {clock}"
        if self.bounds.behind is not None and value < self.now - self.bounds.behind:
            return f"is more than {self.bounds.behind} behind {clock}"
        return None


def _iso(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _utc(value: dt.datetime, info: ValidationInfo) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("time must carry a UTC offset, e.g. 2026-01-01T08:00:00Z")
    try:
        value = value.astimezone(dt.UTC)
    except OverflowError:
        raise _out_of_bounds(value, f"lies outside {_iso(EARLIEST)} .. {_iso(LATEST)}") from None
    if not EARLIEST <= value < LATEST:
        raise _out_of_bounds(value, f"lies outside {_iso(EARLIEST)} .. {_iso(LATEST)}")
    clock = info.context.get("clock") if isinstance(info.context, dict) else None
    why = clock.refuse(value) if isinstance(clock, ReceiverClock) else None
    if why is not None:
        raise _out_of_bounds(value, why)
    return value


def _out_of_bounds(value: dt.datetime, why: str) -> PydanticCustomError:
    context = {"time": _iso(value), "why": why}
    return PydanticCustomError(TIME_OUT_OF_BOUNDS, "time {time} {why}", context)


def _event_id(value: str) -> str:
    if not is_uuid7(value):
        raise ValueError(f"{value!r} is not a canonical lowercase UUIDv7")
    return value


def _jpeg(value: bytes) -> bytes:
    """Event images are only size-checked here (whoever decodes one checks its header with
    :func:`~ringwatch.contract.images.check_image` first)."""
    if len(value) > MAX_IMAGE_BYTES:
        raise ValueError(f"image is {len(value)} bytes, limit {MAX_IMAGE_BYTES}")
    if not value.startswith(b"\xff\xd8"):
        raise ValueError("image is not a JPEG (no FF D8 start marker)")
    return value


def _any_jpeg(value: bytes) -> bytes:
    """A JPEG whose header declares a size within :data:`~ringwatch.contract.images.MAX_PIXELS`
    (a snapshot reply is decoded by the hub to draw zones on it)."""
    if not value.startswith(b"\xff\xd8"):
        raise ValueError("image is not a JPEG (no FF D8 start marker)")
    try:
        check_image(value)
    except ImageRefused as exc:
        raise ValueError(f"image: {exc}") from None
    return value


UtcTime = Annotated[dt.datetime, AfterValidator(_utc)]
EventId = Annotated[str, AfterValidator(_event_id)]
Jpeg = Annotated[Base64Bytes, AfterValidator(_jpeg)]
Score = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class Phase(StrEnum):
    START = "start"
    UPDATE = "update"
    END = "end"


class AlertLevel(StrEnum):
    """Shed alert level: sensor anomaly alone is a warning; camera fire confirmed an alarm."""

    WARNING = "warning"
    ALARM = "alarm"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION


class Box(BaseModel):
    """An axis-aligned box in pixels of the frame it was found in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    x1: float = Field(allow_inf_nan=False)
    y1: float = Field(allow_inf_nan=False)
    x2: float = Field(allow_inf_nan=False)
    y2: float = Field(allow_inf_nan=False)
    label: Annotated[str, Field(max_length=32)] = "person"
    score: Score | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.x2 <= self.x1 or self.y2 <= self.y1:
            raise ValueError(f"box needs x1 < x2 and y1 < y2, got {self.xyxy()}")
        return self

    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)


class Event(_Message):
    """One edge event: a track entering/leaving a zone, a rule firing, a face, a shed alert."""

    event_id: EventId = Field(description="UUIDv7: unique, time-ordered idempotency key.")
    captured_at: UtcTime = Field(description="Capture time of the frame, UTC.")
    site: Ident
    device: Ident
    camera: Ident
    kind: EventKind
    phase: Phase
    zone_id: Ident | None = None
    ring: Ring | None = None
    track_id: int | None = Field(default=None, ge=0, le=2**31 - 1)
    level: AlertLevel | None = Field(default=None, description="Shed events only.")
    scores: dict[Annotated[str, Field(max_length=32)], Score] = Field(
        default_factory=dict, max_length=16
    )
    frame_width: int = Field(gt=0, le=16384)
    frame_height: int = Field(gt=0, le=16384)
    boxes: list[Box] = Field(default_factory=list, max_length=256)
    snapshot_jpeg: Jpeg | None = None
    face_crop_jpeg: Jpeg | None = None
    embedding: list[float] | None = Field(
        default=None, description=f"L2-normalised float32 face embedding, {EMBEDDING_DIM}-d."
    )
    face_quality: Score | None = None
    detail: Annotated[str, Field(max_length=500)] | None = None

    @field_validator("embedding")
    @classmethod
    def _unit_embedding(cls, value: list[float] | None) -> list[float] | None:
        if value is None:
            return None
        if len(value) != EMBEDDING_DIM:
            raise ValueError(f"need {EMBEDDING_DIM} values, got {len(value)}")
        vector = np.asarray(value, dtype=np.float32)
        if not np.isfinite(vector).all():
            raise ValueError("contains NaN or infinity")
        norm = float(np.linalg.norm(vector.astype(np.float64)))
        if abs(norm - 1.0) > EMBEDDING_NORM_TOLERANCE:
            raise ValueError(f"L2 norm must be 1 (+/- {EMBEDDING_NORM_TOLERANCE}), got {norm:.4f}")
        rounded: list[float] = vector.tolist()  # float32 precision, as the edge computed it
        return rounded

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for i, box in enumerate(self.boxes):
            if (
                box.x1 < -1
                or box.y1 < -1
                or box.x2 > self.frame_width + 1
                or (box.y2 > self.frame_height + 1)
            ):
                raise ValueError(
                    f"boxes[{i}] {box.xyxy()} lies outside the "
                    f"{self.frame_width}x{self.frame_height} frame"
                )
        if self.kind is EventKind.SHED and self.level is None:
            raise ValueError("shed events need a level (warning or alarm)")
        if self.embedding is not None and self.kind is not EventKind.FACE:
            raise ValueError("only face events carry an embedding")
        return self

    def embedding_array(self) -> npt.NDArray[np.float32] | None:
        """The embedding as a float32 vector, or None."""
        return None if self.embedding is None else np.asarray(self.embedding, dtype=np.float32)

    def without_biometrics(self) -> Event:
        """A copy with the embedding and face crop removed (for storing non-matches)."""
        return self.model_copy(update={"embedding": None, "face_crop_jpeg": None})


class Receipt(_Message):
    """Hub -> device: these event ids are committed (sent again for duplicates)."""

    site: Ident
    device: Ident
    event_ids: list[EventId] = Field(min_length=1, max_length=MAX_RECEIPT_IDS)
    sent_at: UtcTime


class SensorReading(_Message):
    """One reading of a charging bay in an e-bike shed."""

    site: Ident
    shed: Ident
    bay: Ident
    current_a: float = Field(ge=0, le=500, allow_inf_nan=False, description="Charger current, A.")
    voltage_v: float = Field(ge=0, le=1000, allow_inf_nan=False, description="Voltage, V.")
    temperature_c: float = Field(ge=-60, le=400, allow_inf_nan=False, description="Temp, °C.")
    measured_at: UtcTime


class DeviceState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class DeviceStatus(_Message):
    """Retained device status; the last will carries ``offline``."""

    site: Ident
    device: Ident
    state: DeviceState
    agent_version: Annotated[str, Field(max_length=64)] | None = None
    at: UtcTime | None = None


class CameraHealth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    camera: Ident
    online: bool
    fps: float = Field(ge=0, allow_inf_nan=False)
    latency_ms: float = Field(ge=0, allow_inf_nan=False)
    dropped_frames: int = Field(ge=0)
    reconnects: int = Field(ge=0)
    frame_errors: int = Field(default=0, ge=0)


class Health(_Message):
    """Periodic device heartbeat."""

    site: Ident
    device: Ident
    at: UtcTime
    agent_version: Annotated[str, Field(max_length=64)]
    uptime_s: float = Field(ge=0)
    models: dict[Annotated[str, Field(max_length=128)], Annotated[str, Field(max_length=64)]] = (
        Field(default_factory=dict, description="Model file -> sha256.")
    )
    cameras: list[CameraHealth] = Field(default_factory=list, max_length=256)
    outbox_depth: int = Field(ge=0)
    outbox_dropped: int = Field(ge=0)
    bad_messages: int = Field(default=0, ge=0)
    clock_synced: bool | None = None
    outbox_quarantined: int = Field(
        default=0, ge=0, description="Damaged outbox files set aside since start."
    )
    outbox_damage: Annotated[str, Field(max_length=500)] | None = Field(
        default=None, description="The latest outbox damage or write error (a health flag)."
    )


class SnapshotRequest(_Message):
    request_id: Ident
    camera: Ident


class ZonesOrigin(StrEnum):
    """Where a camera's running zones came from."""

    SITE_FILE = "site_file"  # the box's own site file (no push accepted yet)
    PUSHED = "pushed"  # a zone config the hub pushed and the box accepted (kept on disk)


class SnapshotReply(_Message):
    request_id: Ident
    camera: Ident
    jpeg: Annotated[Base64Bytes, AfterValidator(_any_jpeg)] | None = None
    width: int | None = Field(default=None, gt=0, le=16384)
    height: int | None = Field(default=None, gt=0, le=16384)
    error: Annotated[str, Field(max_length=500)] | None = None
    captured_at: UtcTime | None = Field(
        default=None, description="When the camera read this frame (absent: unknown)."
    )
    zones: CameraZones | None = Field(
        default=None,
        description="The zones the camera runs now (absent: an older edge, or no camera).",
    )
    zones_origin: ZonesOrigin | None = Field(
        default=None, description="Where the running zones came from."
    )

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.jpeg is None) == (self.error is None):
            raise ValueError("a snapshot reply carries either jpeg or error")
        return self


class ZoneConfigPush(_Message):
    request_id: Ident
    camera: Ident
    zones: CameraZones


class ZoneConfigAnswer(_Message):
    request_id: Ident
    camera: Ident
    accepted: bool
    reason: Annotated[str, Field(max_length=2000)] | None = None


class RoutedAlert(_Message):
    """Hub -> recipient: an incident that needs someone's attention."""

    alert_id: Ident
    incident_id: Ident
    recipient_kind: RecipientKind
    recipient: Ident
    kind: Annotated[str, Field(max_length=32)]
    colour: Colour | None = None
    level: AlertLevel | None = None
    site: Ident
    ring: Ring | None = None
    confirmed: bool = False
    title: Annotated[str, Field(max_length=200)]
    created_at: UtcTime
    detail: dict[str, Any] = Field(default_factory=dict)


M = TypeVar("M", bound=BaseModel)


def encode(message: BaseModel) -> bytes:
    """JSON bytes of a message (bytes fields as base64)."""
    return message.model_dump_json(exclude_none=True).encode()


class TimeOutOfBounds(ContractError):
    """A message whose only fault is a time outside the receiver's bounds."""


def decode(
    model: type[M],
    payload: bytes,
    limit: int = MAX_MESSAGE_BYTES,
    clock: ReceiverClock | None = None,
) -> M:
    """Parse ``payload`` as ``model``; raise :class:`ContractError` naming what is wrong
    (:class:`TimeOutOfBounds` when only its times are: see :class:`TimeBounds`)."""
    if len(payload) > limit:
        raise ContractError(f"{model.__name__}: payload is {len(payload)} bytes, limit {limit}")
    try:
        return model.model_validate_json(payload, context={"clock": clock})
    except ValidationError as exc:
        error = f"{model.__name__}: {describe_errors(exc)}"
        if all(e["type"] == TIME_OUT_OF_BOUNDS for e in exc.errors()):
            raise TimeOutOfBounds(error) from None
        raise ContractError(error) from None


def describe_errors(exc: ValidationError, limit: int = 5) -> str:
    """Pydantic errors as ``path: message; ...`` (first ``limit`` of them)."""
    parts = [f"{format_loc(e['loc'])}: {clean_message(e['msg'])}" for e in exc.errors()[:limit]]
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)


def format_loc(loc: tuple[int | str, ...]) -> str:
    """``('cameras', 2, 'zones', 0, 'polygon')`` -> ``cameras[2].zones[0].polygon``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += f".{part}"
        else:
            out = str(part)
    return out or "(root)"


def clean_message(msg: str) -> str:
    """A pydantic error message without its "Value error, " style prefix."""
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg
