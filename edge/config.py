"""The edge site config: one file per camera box, validated once at start-up.

Each component receives only its own section (``BrokerConfig``, ``CameraConfig``...), never
the root. Load with :func:`load_site_config`; errors name the file, key path and expectation.
"""

from __future__ import annotations

import difflib
from enum import StrEnum
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ringwatch.configfile import load_config, redact_url
from ringwatch.contract.zones import CameraZones, Ident
from ringwatch.edge.tunables import FaceTrackConfig, RulesConfig, ShedConfig, TrackerConfig
from ringwatch.models.face_quality import PUBLISH_MIN_QUALITY


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
    retry_refused_s: int = Field(
        default=60,
        ge=1,
        le=3600,
        description="A broker that refuses the login (a hub's flood quarantine, a changed"
        " password) is retried with backoff up to this many seconds; the outbox keeps"
        " every event meanwhile.",
    )


SOURCE_SCHEMES = ("rtsp", "rtsps", "http", "https", "file")


class TamperConfig(_Section):
    """Camera tamper detection (edge/tamper.py): covered, defocused or turned away."""

    learn_s: float = Field(default=5.0, gt=0, le=3600, description="Seconds to learn the view.")
    hold_s: float = Field(default=3.0, ge=0, le=600, description="A condition lasts this long.")
    clear_s: float = Field(default=5.0, ge=0, le=600, description="Normal this long to end it.")
    dark_ratio: float = Field(
        default=0.35, gt=0, lt=1, description="Covered below this brightness."
    )
    flat_ratio: float = Field(default=0.12, gt=0, lt=1, description="Covered below these edges.")
    blur_ratio: float = Field(default=0.45, gt=0, lt=1, description="Defocused below these edges.")
    scene_match: float = Field(default=0.5, gt=-1, lt=1, description="Turned away below this.")
    follow: float = Field(default=0.01, ge=0, le=0.5, description="Reference update per frame.")


class CameraRole(StrEnum):
    CAMPUS = "campus"
    SHED = "shed"


class PersonTiling(BaseModel):
    """Tiled person detection for small, far people (``ringwatch.models.tiling``): the
    whole frame plus overlapping tiles, merged by NMS; costs 1 + tiles detector runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: str = Field(
        default="off",
        pattern="^(off|auto|on)$",
        description="off; auto (frames over twice the model input); on (always).",
    )
    tile: int | None = Field(
        default=None,
        ge=64,
        le=4096,
        description="Tile side in frame pixels; unset: 832 (twice the model input) for frames"
        " over twice the model input, else 416.",
    )
    overlap: float = Field(default=0.25, ge=0, le=0.8, description="Share shared by tiles.")
    threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Person score for this camera when mode is on or auto, whatever the"
        " frame size (unset: thresholds.person); tiles enlarge far people, who then score"
        " higher (docs/perception.md).",
    )

    @model_validator(mode="after")
    def _only_when_tiling(self) -> Self:
        if self.mode == "off":
            unused = [name for name in ("tile", "threshold") if getattr(self, name) is not None]
            if unused:
                raise ValueError(
                    f"{', '.join(unused)} set with mode off: they apply only when mode is on or"
                    " auto (set the mode, or remove them)"
                )
        return self


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
    tamper: TamperConfig | None = Field(
        default=None, description="Raise tamper events (off unless set; `tamper: {}` = defaults)."
    )

    @field_validator("source")
    @classmethod
    def _known_scheme(cls, source: str) -> str:
        scheme, sep, _ = source.partition("://")
        if sep and scheme.lower() not in SOURCE_SCHEMES:
            hint = difflib.get_close_matches(scheme.lower(), SOURCE_SCHEMES, n=2)
            also = f" (did you mean {' or '.join(h + '://' for h in hint)}?)" if hint else ""
            raise ValueError(
                f"unknown scheme {scheme}:// in {redact_url(source)}{also}; expected "
                "rtsp://, rtsps://, http://, https://, file://, usb:N or a video file path"
            )
        if source.startswith("usb:") and not source[4:].isdigit():
            raise ValueError(f"expected usb:N with N a device number, got {source}")
        return source

    person_tiling: PersonTiling = Field(
        default_factory=PersonTiling, description="Tile large frames for far people."
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
    face_quality: float = Field(
        default=PUBLISH_MIN_QUALITY,
        ge=0,
        le=1,
        description="Face quality (the same 0..1 score enrolment uses) at which a face track's"
        " first shot is published; better shots follow as updates.",
    )


class ModelsConfig(_Section):
    """Which models run, where they are installed, and on what hardware."""

    dir: Path | None = Field(default=None, description="Defaults to $RINGWATCH_MODELS or cache.")
    provider: Provider = Field(default=Provider.CPU, description="onnxruntime execution provider.")
    threads: int = Field(default=2, ge=1, le=64, description="Intra-op threads per model.")
    concurrent_runs: int = Field(
        default=0,
        ge=0,
        le=64,
        description="At most this many model runs at once across the box's cameras (0: no"
        " limit); 1 queues the cameras' runs instead of sharing the cores among them all.",
    )
    person_model: str = Field(default="yolox_nano", description="yolox_nano or nanodet.")
    thresholds: Thresholds = Field(default_factory=Thresholds)
    faces_in_persons: bool = Field(
        default=False,
        description="Search faces only in the upper part of person boxes (one batched run).",
    )
    fit_face_canvas: bool = Field(
        default=False,
        description="Whole-frame face detection on a canvas fitted to the frame, not 640x640.",
    )
    fit_person_canvas: bool = Field(
        default=False,
        description="YOLOX-nano on a canvas fitted to the frame (416x256 for 16:9), not 416x416.",
    )


class OutboxConfig(_Section):
    """The durable on-disk queue of events awaiting the hub's receipt."""

    path: Path = Field(default=Path("var/outbox.sqlite3"), description="SQLite file (WAL).")
    max_events: int = Field(default=100_000, ge=10, description="Bound; drops low-value first.")
    receipt_timeout_s: float = Field(default=30.0, gt=0, le=3600, description="Re-publish after.")


class MetricsConfig(_Section):
    """An optional Prometheus endpoint serving the latest heartbeat at ``/metrics``."""

    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=9464, ge=0, le=65535, description="TCP port (0: any free one).")


class HomeAssistantConfig(_Section):
    """Home Assistant MQTT discovery for this site's sheds (edge/homeassistant.py)."""

    discovery_prefix: str = Field(
        default="homeassistant", min_length=1, description="Home Assistant's discovery prefix."
    )
    bays: dict[Ident, list[Ident]] = Field(
        description="Per shed id, its charging bays, e.g. {shed-a: [b1, b2, b3, b4]}."
    )
    max_temperature_c: float = Field(
        default=60.0, gt=0, le=400, description="A bay is overheating above this."
    )


class MotionConfig(_Section):
    """Motion gating: a cheap low-resolution frame difference decides whether a frame needs
    the person/face detectors; a still frame reuses the last detections (so a motionless
    person stays tracked), and still scenes are re-checked every ``recheck_every`` frames.
    Cameras with the fire task are never gated (smoke can be slow and faint). Off unless
    the site file turns it on (the shipped example does)."""

    enabled: bool = Field(default=False, description="Skip detectors on still frames.")
    width: int = Field(default=64, ge=8, le=640, description="Thumbnail width compared.")
    pixel_delta: int = Field(
        default=18, ge=1, le=255, description="Grey-level change that counts as moved."
    )
    min_changed: float = Field(
        default=0.003, gt=0, le=1, description="Fraction of moved thumbnail pixels = motion."
    )
    recheck_every: int = Field(
        default=10, ge=1, le=1000, description="Analysed frames between forced full checks."
    )


class ClipsConfig(_Section):
    """Evidence clips around alerts and their upload to the hub (issue 14; docs/evidence.md).

    Each camera keeps ``pre_roll_s`` of masked JPEG frames in memory; an alert of one of
    ``kinds`` records from there to ``post_roll_s`` after it ends (at most ``max_s`` in all)
    as H.264 MP4, which waits in an on-disk queue (at most ``queue_max_mb``) until the hub
    has confirmed it by digest."""

    pre_roll_s: float = Field(default=5.0, ge=0, le=30, description="Seconds kept before.")
    post_roll_s: float = Field(default=10.0, ge=0, le=60, description="Seconds after the end.")
    max_s: float = Field(default=60.0, gt=0, le=300, description="Longest clip.")
    kinds: list[str] = Field(
        default_factory=lambda: ["intrusion", "loitering", "line_crossing", "face", "shed"],
        description="Event kinds that record a clip.",
    )
    fps: float = Field(default=5.0, gt=0, le=30, description="Clip frame rate (at most).")
    max_side: int = Field(default=1280, ge=160, le=4096, description="Frames downscaled to.")
    jpeg_quality: int = Field(default=80, ge=30, le=95, description="Pre-roll JPEG quality.")
    crf: int = Field(default=28, ge=15, le=40, description="x264 quality (lower: bigger).")
    ffmpeg: str = Field(default="ffmpeg", description="ffmpeg binary (needs libx264).")
    queue_dir: Path = Field(default=Path("var/media"), description="Upload queue folder.")
    queue_max_mb: int = Field(default=2048, ge=1, description="Queue bound (oldest dropped).")
    hub_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s]+$",
        description="Hub base URL (https:// in production); unset: clips stay queued.",
    )
    key_file: Path | None = Field(default=None, description="This device's upload key (hex).")
    ca_file: Path | None = Field(default=None, description="CA bundle for an https hub.")
    retry_max_s: float = Field(default=60.0, gt=0, le=3600, description="Longest retry wait.")


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
    home_assistant: HomeAssistantConfig | None = Field(
        default=None, description="Publish Home Assistant discovery for the sheds (opt-in)."
    )
    tracker: TrackerConfig = Field(
        default_factory=TrackerConfig, description="Person tracker tunables."
    )
    rules: RulesConfig = Field(default_factory=RulesConfig, description="Zone-rule debounce.")
    face_tracks: FaceTrackConfig = Field(
        default_factory=FaceTrackConfig, description="Face best-shot tunables."
    )
    shed: ShedConfig = Field(
        default_factory=ShedConfig, description="Shed camera rule, sensor limits and fusion."
    )
    motion: MotionConfig = Field(default_factory=MotionConfig, description="Motion gating.")
    clips: ClipsConfig | None = Field(default=None, description="Evidence clips (off unless set).")

    @model_validator(mode="after")
    def _unique_cameras(self) -> Self:
        ids = [c.id for c in self.cameras]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"camera ids must be unique, repeated: {dupes}")
        if self.home_assistant is not None:
            sheds = {c.shed for c in self.cameras if c.shed is not None}
            unknown = sorted(set(self.home_assistant.bays) - sheds)
            if unknown:
                raise ValueError(
                    f"home_assistant.bays: no shed camera for {unknown} (sheds: {sorted(sheds)})"
                )
        return self


def load_site_config(path: Path) -> SiteConfig:
    """Load and validate an edge site file; raise ConfigError with file and key path."""
    return load_config(SiteConfig, path)
