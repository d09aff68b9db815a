"""E-bike shed fusion on the box: camera fire/smoke persistence + charger sensors -> alerts.

- :class:`FireEvidence` (the default camera rule): per-frame fire/smoke strength integrated
  over frame time with a decay; it rises faster on strong scores, on an unbroken run of hot
  frames and while a bay sensor of the shed is anomalous (camera + sensor agreement), and
  clears with hysteresis. In seconds, so it means the same at any analysed fps.
- :class:`FirePersistence` (``camera_rule: k_of_n``): a frame is *hot* when fire (or
  smoke) scores at least the raise threshold; the alarm is confirmed when ``k`` of the last
  ``n`` frames are hot, and then holds while ``k`` of the last ``n`` reach the lower hold
  threshold (hysteresis), so a flickering flame does not toggle the alert.
- :class:`SensorThresholds`: per-bay anomaly limits (overcurrent, voltage sag while charging,
  overheating); a reading older than ``stale_after_s`` no longer counts.
- :class:`FusionRule`: the fusion as data: sensor anomaly alone -> warning; camera fire
  confirmed -> alarm; both -> alarm with a higher confidence.
- :class:`ShedMonitor`: keeps both inputs for one shed camera and emits ``shed`` events with
  level warning/alarm: ``start`` when a level is reached, ``update`` when the confidence
  changes at the same level, ``end`` when it clears (a level change ends the old level and
  starts the new one). The agent attaches a masked snapshot to each start and update.

Time is injected (frame capture time, reading time); nothing sleeps. Pure logic.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ringwatch.contract.messages import AlertLevel, Box, Event, Phase, SensorReading
from ringwatch.contract.topics import EventKind
from ringwatch.edge.rules import EventStamp
from ringwatch.models.detections import Detections

SMOKE_CLASS = 0  # fire/smoke model classes (MODELS.md): 0 smoke, 1 fire
FIRE_CLASS = 1


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


class FirePersistence:
    """``update(fire_score, smoke_score) -> confirmed`` over the last ``n`` frames."""

    def __init__(self, config: FirePersistenceConfig | None = None) -> None:
        self.config = config or FirePersistenceConfig()
        self._raise: deque[bool] = deque(maxlen=self.config.n)
        self._hold: deque[bool] = deque(maxlen=self.config.n)
        self.confirmed = False

    def update(self, fire: float, smoke: float) -> bool:
        cfg = self.config
        self._raise.append(fire >= cfg.fire_raise or smoke >= cfg.smoke_raise)
        self._hold.append(fire >= cfg.fire_hold or smoke >= cfg.smoke_hold)
        if self.confirmed:
            self.confirmed = sum(self._hold) >= (cfg.k_hold or cfg.k)
        else:
            self.confirmed = sum(self._raise) >= cfg.k
        return self.confirmed


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
        default=2.0, ge=1, le=10, description="Gain while a bay sensor is anomalous."
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


def _ramp(score: float, floor: float, full: float) -> float:
    return min(max((score - floor) / (full - floor), 0.0), 1.0)


class FireEvidence:
    """``update(fire, smoke, t, sensor) -> confirmed``; ``t`` in seconds (frame time)."""

    def __init__(self, config: FireEvidenceConfig | None = None) -> None:
        self.config = config or FireEvidenceConfig()
        self.evidence = 0.0
        self.streak_s = 0.0
        self.confirmed = False
        self._last_t: float | None = None

    def strength(self, fire: float, smoke: float) -> float:
        cfg = self.config
        return max(
            _ramp(fire, cfg.fire_floor, cfg.fire_full),
            cfg.smoke_weight * _ramp(smoke, cfg.smoke_floor, cfg.smoke_full),
        )

    def update(self, fire: float, smoke: float, t: float, sensor: bool = False) -> bool:
        cfg = self.config
        step = 0.0 if self._last_t is None else min(max(t - self._last_t, 0.0), cfg.max_step_s)
        self._last_t = t
        strength = self.strength(fire, smoke)
        self.streak_s = self.streak_s + step if strength > 0 else 0.0
        boost = 1.0 + cfg.consistency_gain * min(self.streak_s / cfg.consistency_s, 1.0)
        gain = strength * boost * (cfg.sensor_gain if sensor else 1.0)
        decayed = self.evidence * 0.5 ** (step / cfg.half_life_s)
        self.evidence = min(decayed + gain * step, cfg.cap)
        limit = cfg.hold_at if self.confirmed else cfg.raise_at
        self.confirmed = self.evidence >= limit
        return self.confirmed


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

    def camera(self) -> FirePersistence | FireEvidence:
        """A fresh camera-side rule of the configured kind."""
        if self.camera_rule == "k_of_n":
            return FirePersistence(self.persistence)
        return FireEvidence(self.evidence)

    def report_thresholds(self) -> tuple[float, float]:
        """(fire, smoke): the lowest scores the camera rule uses; the detector must report
        detections down to them."""
        if self.camera_rule == "k_of_n":
            p = self.persistence
            return p.fire_hold, p.smoke_hold
        return self.evidence.report_fire, self.evidence.report_smoke


def frame_scores(fire: Detections) -> tuple[float, float]:
    """Highest fire and smoke score in one frame's fire/smoke detections."""
    fire_s = fire.confidence[fire.class_id == FIRE_CLASS]
    smoke_s = fire.confidence[fire.class_id == SMOKE_CLASS]
    return (
        float(fire_s.max()) if len(fire_s) else 0.0,
        float(smoke_s.max()) if len(smoke_s) else 0.0,
    )


@dataclass(slots=True)
class ShedMonitor:
    """Fuses one shed camera with its shed's sensors; thread-safe (readings come from MQTT).

    Events need a frame size, so until the first frame is seen (:meth:`observe_frame`)
    readings are kept and fused then.
    """

    shed: str
    zone_id: str | None
    config: ShedConfig = field(default_factory=ShedConfig)
    stamp: EventStamp | None = None
    camera: FirePersistence | FireEvidence = field(init=False)
    _readings: dict[str, SensorReading] = field(default_factory=dict)
    _current: FusionOutcome | None = None
    _boxes: list[Box] = field(default_factory=list)
    _scores: tuple[float, float] = (0.0, 0.0)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.camera = self.config.camera()

    @property
    def level(self) -> AlertLevel | None:
        return None if self._current is None else self._current.level

    def observe_frame(self, fire: Detections, stamp: EventStamp, at: dt.datetime) -> list[Event]:
        """One analysed frame's fire/smoke detections."""
        with self._lock:
            self.stamp = stamp
            self._scores = frame_scores(fire)
            if isinstance(self.camera, FireEvidence):
                sensor = bool(self.sensor_anomalies(at))
                self.camera.update(*self._scores, t=at.timestamp(), sensor=sensor)
            else:
                self.camera.update(*self._scores)
            self._boxes = [
                stamp.box(xyxy, label="fire" if c == FIRE_CLASS else "smoke", score=float(s))
                for xyxy, c, s in zip(fire.xyxy, fire.class_id, fire.confidence, strict=True)
            ][:16]
            return self._fuse(at)

    def observe_reading(self, reading: SensorReading) -> list[Event]:
        """One sensor reading; readings of other sheds are ignored."""
        if reading.shed != self.shed:
            return []
        with self._lock:
            self._readings[reading.bay] = reading
            return self._fuse(reading.measured_at) if self.stamp is not None else []

    def sensor_anomalies(self, at: dt.datetime) -> list[str]:
        limit = dt.timedelta(seconds=self.config.sensors.stale_after_s)
        fresh = [r for r in self._readings.values() if at - r.measured_at <= limit]
        return [
            a for r in sorted(fresh, key=lambda r: r.bay) for a in self.config.sensors.anomalies(r)
        ]

    def _fuse(self, at: dt.datetime) -> list[Event]:
        anomalies = self.sensor_anomalies(at)
        new = self.config.fusion.outcome(self.camera.confirmed, bool(anomalies))
        old = self._current
        if new == old:
            return []
        self._current = new
        detail = "; ".join(anomalies)[:500] or None
        if old is not None and new is not None and old.level == new.level:
            return [self._event(Phase.UPDATE, new, at, detail)]
        events = [] if old is None else [self._event(Phase.END, old, at, detail)]
        if new is not None:
            events.append(self._event(Phase.START, new, at, detail))
        return events

    def _event(
        self, phase: Phase, outcome: FusionOutcome, at: dt.datetime, detail: str | None
    ) -> Event:
        assert self.stamp is not None
        fire, smoke = self._scores
        return self.stamp.event(
            EventKind.SHED,
            phase,
            at,
            zone_id=self.zone_id,
            level=outcome.level,
            scores={
                "confidence": outcome.confidence,
                "fire": float(np.clip(fire, 0, 1)),
                "smoke": float(np.clip(smoke, 0, 1)),
            },
            boxes=list(self._boxes),
            detail=detail,
        )
