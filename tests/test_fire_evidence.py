"""The shed's evidence rule: strength x time with decay, consistency and sensor boosts,
hysteresis, rate independence; pure logic on score sequences (the real-footage floors are in
tests/test_shed.py, the loaded-box replay in tools/fire_persistence_sim.py)."""

from __future__ import annotations

import datetime as dt
import random

import numpy as np
import pytest

from ringwatch.contract.messages import SensorReading
from ringwatch.edge.rules import EventStamp
from ringwatch.edge.shed import (
    FIRE_CLASS,
    FireEvidence,
    FireEvidenceConfig,
    ShedConfig,
    ShedMonitor,
)
from ringwatch.models.detections import Detections

T0 = dt.datetime(2026, 11, 26, 2, 0, tzinfo=dt.UTC)
STAMP = EventStamp(site="estate-1", device="box-shed", camera="shed-cam", width=320, height=240)


def first_alarm(scores: list[float], fps: float, rule: FireEvidence | None = None) -> float | None:
    rule = rule or FireEvidence()
    for i, s in enumerate(scores):
        if rule.update(s, 0.0, i / fps):
            return i / fps
    return None


def test_stronger_fire_raises_sooner_and_below_the_floor_never() -> None:
    cfg = FireEvidenceConfig()
    strong = first_alarm([0.75] * 50, 5)
    medium = first_alarm([0.6] * 50, 5)
    assert strong is not None and medium is not None
    assert strong < medium <= 3.0
    assert first_alarm([cfg.fire_floor - 0.01] * 500, 5) is None


def test_consistency_boost_raises_an_unbroken_run_sooner() -> None:
    boosted = first_alarm([0.6] * 50, 5)
    flat = first_alarm([0.6] * 50, 5, FireEvidence(FireEvidenceConfig(consistency_gain=0)))
    assert boosted is not None and flat is not None and boosted < flat


@pytest.mark.parametrize("score", [0.6, 0.7])
def test_the_rule_is_in_seconds_so_the_analysed_rate_barely_matters(score: float) -> None:
    times = [first_alarm([score] * 200, fps) for fps in (2, 4, 5, 10, 20)]
    assert all(t is not None for t in times)
    assert max(times) - min(times) <= 0.6  # type: ignore[type-var, operator]


def test_neon_like_flicker_never_raises() -> None:
    """Short bursts of moderate scores (the neon clip: at most 3 frames >= 0.5 at 24 fps,
    never above 0.6) on a background of 0.1-0.45, for a minute at 24 fps and sampled at
    jittered 4 fps."""
    rng = random.Random(3)
    scores = [rng.uniform(0.1, 0.45) for _ in range(24 * 60)]
    for start in range(0, len(scores) - 3, 20):
        for k in range(rng.randint(1, 3)):
            scores[start + k] = rng.uniform(0.5, 0.59)
    assert first_alarm(scores, 24) is None
    rule, t = FireEvidence(), 0.0
    while t < 60:
        assert not rule.update(scores[int(t * 24)], 0.0, t)
        t += rng.uniform(0.25, 0.75)


def test_hysteresis_holds_on_weak_fire_and_clears_after_it_is_gone() -> None:
    rule = FireEvidence()
    t = 0.0
    while not rule.update(0.7, 0.0, t):
        t += 0.2
    for _ in range(25):  # 5 s of weak but real fire keeps the alarm
        t += 0.2
        assert rule.update(0.52, 0.0, t)
    cleared = None
    for i in range(100):  # the fire is gone
        t += 0.2
        if not rule.update(0.0, 0.0, t):
            cleared = i * 0.2
            break
    # capped evidence decays below hold_at within log2(cap / hold_at) half-lives
    cfg = rule.config
    assert cleared is not None and cleared <= cfg.half_life_s * np.log2(cfg.cap / cfg.hold_at)


def test_a_frame_after_a_stall_stands_for_at_most_max_step_s() -> None:
    rule = FireEvidence()
    rule.update(0.7, 0.0, 0.0)
    rule.update(0.7, 0.0, 30.0)  # 30 s without frames: counts as max_step_s, not 30 s
    assert rule.evidence <= rule.config.max_step_s * (1 + rule.config.consistency_gain)
    assert not rule.confirmed


def test_smoke_counts_at_its_weight() -> None:
    cfg = FireEvidenceConfig()
    rule = FireEvidence(cfg)
    assert rule.strength(0.0, cfg.smoke_full) == pytest.approx(cfg.smoke_weight)
    assert rule.strength(0.0, cfg.smoke_floor) == 0.0
    assert rule.strength(cfg.fire_full, 0.0) == 1.0


def test_invalid_evidence_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="floor"):
        FireEvidenceConfig(fire_floor=0.8, fire_full=0.7)
    with pytest.raises(ValueError, match="hold_at"):
        FireEvidenceConfig(hold_at=0.9, raise_at=0.8)
    with pytest.raises(ValueError, match="cap"):
        FireEvidenceConfig(raise_at=4.0, cap=3.0)


def hot(score: float) -> Detections:
    return Detections(
        xyxy=np.array([[10, 10, 60, 80]], np.float32),
        confidence=np.array([score], np.float32),
        class_id=np.array([FIRE_CLASS], np.int32),
    )


def alarm_time(monitor: ShedMonitor, score: float, fps: float = 5) -> tuple[float, float]:
    for i in range(200):
        at = T0 + dt.timedelta(seconds=i / fps)
        for e in monitor.observe_frame(hot(score), STAMP, at):
            if e.phase.value == "start" and e.level is not None and e.level.value == "alarm":
                return i / fps, e.scores["confidence"]
    raise AssertionError("no alarm")


def test_camera_and_sensor_agreement_alarms_sooner_and_more_confidently() -> None:
    alone = ShedMonitor(shed="shed-a", zone_id=None, config=ShedConfig())
    both = ShedMonitor(shed="shed-a", zone_id=None, config=ShedConfig())
    both.observe_frame(Detections.empty(), STAMP, T0)
    hot_bay = SensorReading(
        site="estate-1",
        shed="shed-a",
        bay="bay-1",
        current_a=2.0,
        voltage_v=42.0,
        temperature_c=85.0,
        measured_at=T0,
    )
    assert both.observe_reading(hot_bay)[0].level is not None  # the sensor warning
    t_alone, c_alone = alarm_time(alone, 0.58)
    t_both, c_both = alarm_time(both, 0.58)
    assert t_both < t_alone and c_both > c_alone
