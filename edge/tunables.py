"""The tunable sections of an edge site file that belong to runtime stages: the person
tracker, the zone rules, the face best-shot tracks and the shed (camera fire rule, sensor
limits, fusion).

They live here, apart from the stages, so that reading a site file (the hub does, for the
zone editor) loads no runtime module; each stage's module re-exports its own.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ringwatch.contract.messages import AlertLevel, SensorReading


class TrackerConfig(BaseModel):
    """Thresholds of the two-stage association, in detector scores and frames."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    high_score: float = Field(default=0.5, ge=0, le=1, description="First-stage score.")
    low_score: float = Field(default=0.1, ge=0, le=1, description="Second-stage floor.")
    new_track_score: float = Field(default=0.5, ge=0, le=1, description="Score to start one.")
    match_iou: float = Field(default=0.2, gt=0, le=1, description="IoU to match, stage 1.")
    low_match_iou: float = Field(default=0.4, gt=0, le=1, description="IoU to match, stage 2.")
    min_hits: int = Field(default=3, ge=1, le=100, description="Matches before a track is born.")
    lost_frames: int = Field(default=30, ge=0, le=10_000, description="Frames a lost track waits.")


class RulesConfig(BaseModel):
    """How zone presence is debounced and refreshed (the zones carry their own limits)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exit_frames: int = Field(
        default=5, ge=1, le=1000, description="Frames outside (or lost) before 'end'."
    )
    update_every_s: float | None = Field(
        default=30.0, gt=0, description="Seconds between 'update' events; null: never."
    )


class FaceTrackConfig(BaseModel):
    """When a face shot is good enough to publish, and when a new one is worth sending."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_quality: float = Field(default=0.45, ge=0, le=1, description="Quality to publish.")
    improve_by: float = Field(default=0.15, ge=0, le=1, description="Quality gain for update.")
    forget_frames: int = Field(default=150, ge=1, description="Frames before a face is dropped.")
    recheck_below: float = Field(
        default=0.8,
        ge=-1,
        le=1,
        description="A published face whose look (a 16x16 grey thumbnail) correlates less than"
        " this with the track's last frame is embedded again to check it is the same person.",
    )
    new_person_below: float = Field(
        default=0.363,  # SAME_PERSON_THRESHOLD: not verified as the same person
        ge=-1,
        le=1,
        description="Cosine to the track's published shot under which that face is taken for"
        " another person: the track starts over (a new track id, published again).",
    )
    tracker: TrackerConfig = Field(
        default_factory=lambda: TrackerConfig(min_hits=2, high_score=0.6, new_track_score=0.6),
        description="Face tracker settings.",
    )


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FirePersistenceConfig(_Frozen):
    """k-of-n persistence with a raise and a (lower) hold threshold per class."""

    # Defaults from the fire model's per-frame scores on the neon-sign clip (no fire) and the
    # grass-fire clip, resampled at 1-10 analysed fps with regular and jittered (loaded-box)
    # timing: 3 of 5 raised a false alarm on the neon sign in 7% of jittered runs at 4-5 fps;
    # 5 of 6 raised none in 1,000 runs and still confirms the grass fire within 0.9 s at 5 fps.
    k: int = Field(default=5, ge=1, le=100, description="Hot frames needed to raise.")
    n: int = Field(default=6, ge=1, le=100, description="Window length in analysed frames.")
    k_hold: int | None = Field(
        default=3,
        ge=1,
        le=100,
        description="Frames at the hold thresholds that keep a raised alarm (None: k).",
    )
    fire_raise: float = Field(default=0.5, ge=0, le=1, description="Fire score to raise.")
    fire_hold: float = Field(default=0.35, ge=0, le=1, description="Fire score to hold.")
    smoke_raise: float = Field(default=0.8, ge=0, le=1, description="Smoke score to raise.")
    smoke_hold: float = Field(default=0.6, ge=0, le=1, description="Smoke score to hold.")

    @model_validator(mode="after")
    def _consistent(self) -> FirePersistenceConfig:
        if self.k > self.n or (self.k_hold or self.k) > self.n:
            raise ValueError(f"k ({self.k}) and k_hold ({self.k_hold}) must be <= n ({self.n})")
        if self.fire_hold > self.fire_raise or self.smoke_hold > self.smoke_raise:
            raise ValueError("hold thresholds must not exceed raise thresholds")
        return self


class FireEvidenceConfig(_Frozen):
    """The evidence rule: per-frame fire/smoke strength integrated over time, with a decay.

    A frame's *strength* is its fire score mapped linearly from ``fire_floor`` (0) to
    ``fire_full`` (1), or ``smoke_weight`` times the same ramp for smoke, whichever is higher.
    Evidence grows by ``strength x seconds`` since the previous analysed frame (at most
    ``max_step_s``, so a frame after a stall does not stand for the whole gap), times
    ``1 + consistency_gain`` once frames have been hot without a break for ``consistency_s``
    (linearly before), times ``sensor_gain`` while a bay sensor of the shed is anomalous.
    It decays with a half-life of ``half_life_s`` and is capped at ``cap``. The alarm raises
    at ``raise_at`` and clears below ``hold_at`` (hysteresis).

    Being in seconds, not frames, the rule means the same at 2 or 10 analysed fps and on a
    loaded box whose frame intervals jitter; the defaults are tuned with
    tools/fire_persistence_sim.py (docs/edge.md has the figures and the held-out clips).
    """

    fire_floor: float = Field(default=0.5, ge=0, lt=1, description="Fire score counting 0.")
    fire_full: float = Field(default=0.7, gt=0, le=1, description="Fire score counting 1.")
    smoke_floor: float = Field(default=0.75, ge=0, lt=1, description="Smoke score counting 0.")
    smoke_full: float = Field(default=0.95, gt=0, le=1, description="Smoke score counting 1.")
    smoke_weight: float = Field(default=0.5, ge=0, le=1, description="Smoke's weight vs fire.")
    consistency_s: float = Field(
        default=1.0, gt=0, le=60, description="Unbroken hot seconds for the full boost."
    )
    consistency_gain: float = Field(
        default=1.0, ge=0, le=10, description="Extra gain at a full hot streak."
    )
    sensor_gain: float = Field(
        default=1.5, ge=1, le=10, description="Gain while a bay sensor is anomalous."
    )
    half_life_s: float = Field(default=3.0, gt=0, le=600, description="Evidence half-life.")
    max_step_s: float = Field(
        default=0.5, gt=0, le=10, description="Most seconds one analysed frame stands for."
    )
    raise_at: float = Field(default=0.8, gt=0, description="Evidence that raises the alarm.")
    hold_at: float = Field(default=0.4, ge=0, description="Evidence below which it clears.")
    cap: float = Field(default=3.0, gt=0, description="Evidence stops growing here.")

    @model_validator(mode="after")
    def _consistent(self) -> FireEvidenceConfig:
        if self.fire_floor >= self.fire_full or self.smoke_floor >= self.smoke_full:
            raise ValueError("each floor must be below its full-strength score")
        if not self.hold_at <= self.raise_at <= self.cap:
            raise ValueError(
                f"need hold_at ({self.hold_at}) <= raise_at ({self.raise_at}) <= cap ({self.cap})"
            )
        return self

    @property
    def report_fire(self) -> float:
        """The lowest fire score the rule can use (the detector must report down to it)."""
        return self.fire_floor

    @property
    def report_smoke(self) -> float:
        return self.smoke_floor


class SensorThresholds(_Frozen):
    """When a bay's reading is an anomaly."""

    max_current_a: float = Field(default=8.0, gt=0, description="Overcurrent above this.")
    min_voltage_v: float = Field(default=30.0, ge=0, description="Sag below this while charging.")
    charging_current_a: float = Field(
        default=0.2, ge=0, description="A bay counts as charging above this current."
    )
    max_temperature_c: float = Field(default=60.0, description="Overheating above this.")
    stale_after_s: float = Field(default=120.0, gt=0, description="Readings older do not count.")

    def anomalies(self, r: SensorReading) -> list[str]:
        """Why ``r`` is anomalous (empty: it is not)."""
        found: list[str] = []
        if r.current_a > self.max_current_a:
            found.append(f"{r.bay}: current {r.current_a:.1f} A > {self.max_current_a:g}")
        if r.current_a > self.charging_current_a and r.voltage_v < self.min_voltage_v:
            found.append(f"{r.bay}: voltage {r.voltage_v:.1f} V < {self.min_voltage_v:g}")
        if r.temperature_c > self.max_temperature_c:
            found.append(
                f"{r.bay}: temperature {r.temperature_c:.1f} C > {self.max_temperature_c:g}"
            )
        return found


class FusionOutcome(_Frozen):
    level: AlertLevel
    confidence: float = Field(ge=0, le=1)


class FusionRule(_Frozen):
    """Which alert each combination of evidence raises; ``null`` raises nothing."""

    sensor_only: FusionOutcome | None = Field(
        default=FusionOutcome(level=AlertLevel.WARNING, confidence=0.6),
        description="A sensor anomaly with no fire on camera.",
    )
    camera_only: FusionOutcome | None = Field(
        default=FusionOutcome(level=AlertLevel.ALARM, confidence=0.8),
        description="Fire/smoke confirmed on camera, sensors normal.",
    )
    both: FusionOutcome | None = Field(
        default=FusionOutcome(level=AlertLevel.ALARM, confidence=0.95),
        description="Fire confirmed on camera and a sensor anomaly.",
    )

    def outcome(self, camera: bool, sensor: bool) -> FusionOutcome | None:
        if camera and sensor:
            return self.both
        if camera:
            return self.camera_only
        return self.sensor_only if sensor else None


class ShedConfig(_Frozen):
    """The shed section: the camera rule, sensor thresholds and the fusion rule."""

    camera_rule: Literal["evidence", "k_of_n"] = Field(
        default="evidence",
        description="evidence (time-integrated, the default) or k_of_n (fixed persistence).",
    )
    evidence: FireEvidenceConfig = Field(default_factory=FireEvidenceConfig)
    persistence: FirePersistenceConfig = Field(default_factory=FirePersistenceConfig)
    sensors: SensorThresholds = Field(default_factory=SensorThresholds)
    fusion: FusionRule = Field(default_factory=FusionRule)

    def report_thresholds(self) -> tuple[float, float]:
        """(fire, smoke): the lowest scores the camera rule uses; the detector must report
        detections down to them."""
        if self.camera_rule == "k_of_n":
            p = self.persistence
            return p.fire_hold, p.smoke_hold
        return self.evidence.report_fire, self.evidence.report_smoke
