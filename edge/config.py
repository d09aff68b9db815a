"""The edge site config: one file per camera box, validated once at start-up.

Each component receives only its own section (``BrokerConfig``, ``CameraConfig``...), never
the root. Load with :func:`load_site_config`; errors name the file, key path and expectation.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ringwatch.configfile import load_config
from ringwatch.contract.zones import CameraZones, Ident


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BrokerConfig(_Section):
    """How the agent reaches the MQTT broker."""

    url: str = Field(
        default="mqtt://127.0.0.1:1883",
        pattern=r"^mqtts?://[^/\s]+(:\d+)?/?$",
        description="mqtt://host:port or mqtts://host:port (TLS).",
    )
    username: str | None = Field(
        default=None, description="MQTT user name, if the broker needs one."
    )
    password_file: Path | None = Field(default=None, description="File holding the MQTT password.")
    ca_file: Path | None = Field(default=None, description="CA bundle for mqtts://.")
    keepalive_s: int = Field(default=30, ge=5, le=600, description="MQTT keepalive.")
    client_id: str | None = Field(
        default=None, description="Defaults to ringwatch-<site>-<device>."
    )
    protocol: Literal["5", "3.1.1"] = Field(
        default="5",
        description="MQTT version: 5 (Mosquitto) or 3.1.1 (a NATS cluster's MQTT listener).",
    )


class CameraRole(StrEnum):
    CAMPUS = "campus"
    SHED = "shed"


class CameraConfig(CameraZones):
    """One camera: where frames come from, how often to analyse them, and its zones.

    The zone fields (``default_ring``, ``zones``, ``lines``, ``masks``, ``schedules``) are
    inherited from :class:`CameraZones`, the part the hub can push live.
    """

    id: Ident
    source: str = Field(
        min_length=1,
        description="Video file path, rtsp://, http(s):// (MJPEG/MPEG-TS) or usb:N.",
    )
    role: CameraRole = Field(default=CameraRole.CAMPUS, description="campus or shed camera.")
    shed: Ident | None = Field(default=None, description="Shed id, for shed cameras.")
    fps: float = Field(default=5.0, gt=0, le=60, description="Frames analysed per second.")
    loop: bool = Field(default=False, description="Loop a video file.")
    realtime: bool = Field(default=True, description="Play a video file at its native rate.")
    tasks: list[str] = Field(
        default_factory=lambda: ["persons", "faces"],
        description="Detectors to run: persons, faces, fire.",
    )

    @model_validator(mode="after")
    def _shed_consistent(self) -> Self:
        unknown = sorted(set(self.tasks) - {"persons", "faces", "fire"})
        if unknown:
            raise ValueError(f"tasks: unknown {unknown} (choose from faces, persons, fire)")
        if self.role is CameraRole.SHED and self.shed is None:
            raise ValueError("a shed camera needs 'shed: <shed id>'")
        return self

    def camera_zones(self) -> CameraZones:
        """Just the zone part, as the hub pushes and the rules consume it."""
        return CameraZones.model_validate(self.model_dump(include=set(CameraZones.model_fields)))


class Provider(StrEnum):
    CPU = "cpu"
    CUDA = "cuda"
    OPENVINO = "openvino"
    TENSORRT = "tensorrt"


class Thresholds(_Section):
    """Shipped detection thresholds (measured on ../shared/data; see README)."""

    face: float = Field(default=0.6, ge=0, le=1, description="YuNet face score.")
    person: float = Field(default=0.3, ge=0, le=1, description="Person score.")
    fire: float = Field(default=0.5, ge=0, le=1, description="Fire class score.")
    smoke: float = Field(default=0.75, ge=0, le=1, description="Smoke class score.")
    face_match: float = Field(default=0.363, ge=-1, le=1, description="SFace cosine same-person.")


class ModelsConfig(_Section):
    """Which models run, where they are installed, and on what hardware."""

    dir: Path | None = Field(default=None, description="Defaults to $RINGWATCH_MODELS or cache.")
    provider: Provider = Field(default=Provider.CPU, description="onnxruntime execution provider.")
    threads: int = Field(default=2, ge=1, le=64, description="Intra-op threads per model.")
    person_model: str = Field(default="yolox_nano", description="yolox_nano or nanodet.")
    thresholds: Thresholds = Field(default_factory=Thresholds)


class OutboxConfig(_Section):
    """The durable on-disk queue of events awaiting the hub's receipt."""

    path: Path = Field(default=Path("var/outbox.sqlite3"), description="SQLite file (WAL).")
    max_events: int = Field(default=100_000, ge=10, description="Bound; drops low-value first.")
    receipt_timeout_s: float = Field(default=30.0, gt=0, le=3600, description="Re-publish after.")


class MetricsConfig(_Section):
    """An optional Prometheus endpoint serving the latest heartbeat at ``/metrics``."""

    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=9464, ge=0, le=65535, description="TCP port (0: any free one).")


class SiteConfig(_Section):
    """Root of an edge site file."""

    site: Ident = Field(description="Site id, e.g. campus-north.")
    device: Ident = Field(description="This box's device id.")
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    health_interval_s: float = Field(default=30.0, gt=0, le=3600, description="Heartbeat period.")
    metrics: MetricsConfig | None = Field(
        default=None, description="Serve Prometheus metrics (off unless set)."
    )
    cameras: list[CameraConfig] = Field(min_length=1, description="At least one camera.")

    @model_validator(mode="after")
    def _unique_cameras(self) -> Self:
        ids = [c.id for c in self.cameras]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"camera ids must be unique, repeated: {dupes}")
        return self


def load_site_config(path: Path) -> SiteConfig:
    """Load and validate an edge site file; raise ConfigError with file and key path."""
    return load_config(SiteConfig, path)
