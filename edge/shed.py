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

import numpy as np

from ringwatch.contract.messages import AlertLevel, Box, Event, Phase, SensorReading
from ringwatch.contract.topics import EventKind
from ringwatch.edge.rules import EventStamp
from ringwatch.edge.tunables import (  # re-exported: the stage's own settings
    FireEvidenceConfig as FireEvidenceConfig,
)
from ringwatch.edge.tunables import (
    FirePersistenceConfig as FirePersistenceConfig,
)
from ringwatch.edge.tunables import (
    FusionOutcome as FusionOutcome,
)
from ringwatch.edge.tunables import (
    FusionRule as FusionRule,
)
from ringwatch.edge.tunables import (
    SensorThresholds as SensorThresholds,
)
from ringwatch.edge.tunables import (
    ShedConfig as ShedConfig,
)
from ringwatch.models.detections import Detections

SMOKE_CLASS = 0  # fire/smoke model classes (MODELS.md): 0 smoke, 1 fire
FIRE_CLASS = 1


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


def camera_rule(config: ShedConfig) -> FirePersistence | FireEvidence:
    """A fresh camera-side rule of the kind ``config`` names."""
    if config.camera_rule == "k_of_n":
        return FirePersistence(config.persistence)
    return FireEvidence(config.evidence)


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
        self.camera = camera_rule(self.config)

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
