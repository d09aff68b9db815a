"""Motion gating: still frames reuse the last detections, motion and the periodic re-check
bring the detectors back, and a motionless person on real footage stays tracked (loitering
still fires, no presence ends)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from ringwatch.contract.topics import EventKind
from ringwatch.edge.agent import Agent
from ringwatch.edge.capture import Frame
from ringwatch.edge.config import MotionConfig, SiteConfig
from ringwatch.edge.motion import MotionGate, thumbnail
from tests.test_agent import ListSink, ListSource

Image = npt.NDArray[np.uint8]
T0 = dt.datetime(2026, 11, 29, 22, 0, tzinfo=dt.UTC)


def scene(seed: int = 0) -> Image:
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 256, (360, 640, 3), dtype=np.uint8), (31, 31), 0)
    return np.asarray(base, np.uint8)


def test_a_still_scene_is_gated_and_rechecked_every_n_frames() -> None:
    gate = MotionGate(MotionConfig(enabled=True, recheck_every=4))
    image = scene()
    got = []
    for _ in range(12):
        need = gate.needs_analysis(image)
        got.append(need)
        if need:
            gate.analysed()
    assert got == [True, False, False, False] * 3
    assert gate.skipped == 9


def test_camera_noise_is_not_motion_but_a_person_sized_change_is() -> None:
    gate = MotionGate(MotionConfig(enabled=True, recheck_every=100))
    image = scene()
    assert gate.needs_analysis(image)
    gate.analysed()
    rng = np.random.default_rng(1)
    noisy = np.clip(image.astype(np.int16) + rng.integers(-6, 7, image.shape), 0, 255)
    assert not gate.needs_analysis(noisy.astype(np.uint8))
    walker = image.copy()
    cv2.rectangle(walker, (300, 150), (330, 240), (20, 20, 20), -1)  # ~30x90 px figure
    assert gate.needs_analysis(walker)


def test_slow_drift_adds_up_against_the_last_analysed_frame() -> None:
    gate = MotionGate(MotionConfig(enabled=True, recheck_every=1000))
    image = scene()
    gate.needs_analysis(image)
    gate.analysed()
    seen = False
    for x in range(0, 200, 4):  # a figure creeping in 4 px per frame
        frame = image.copy()
        cv2.rectangle(frame, (x, 150), (x + 30, 240), (20, 20, 20), -1)
        if gate.needs_analysis(frame):
            seen = True
            break
    assert seen


def test_thumbnail_is_grey_and_keeps_the_aspect() -> None:
    thumb = thumbnail(scene(), 64)
    assert thumb.shape == (36, 64) and thumb.dtype == np.uint8


class CountingAnalyzer:
    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.calls = 0

    def analyze(self, bgr: Image, embeddings: bool = False) -> object:
        self.calls += 1
        return self.inner.analyze(bgr, embeddings)  # type: ignore[attr-defined]


@pytest.mark.data
def test_a_motionless_person_is_not_lost(models_dir: Path, data_dir: Path) -> None:
    """A real frame with people, held still for 12 s at 5 fps: the detectors run only on
    the re-checks, yet every person stays tracked: loitering fires and no presence ends."""
    from ringwatch.edge.config import Thresholds
    from ringwatch.models.perception import Perception
    from ringwatch.models.runtime import RuntimeOptions

    capture = cv2.VideoCapture(str(data_dir / "faces/watchlist_demo/short_hamilton_clip.mp4"))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 30)
    ok, image = capture.read()
    capture.release()
    assert ok
    still = np.asarray(image, np.uint8)
    perception = Perception.from_models_dir(
        models_dir, RuntimeOptions(threads=1), Thresholds(), {"persons"}
    )
    whole = [[0, 0], [1, 0], [1, 1], [0, 1]]
    cfg = SiteConfig.model_validate(
        {
            "site": "campus",
            "device": "box-1",
            "motion": {"enabled": True, "recheck_every": 10},
            "cameras": [
                {
                    "id": "gate",
                    "source": "recorded.mp4",
                    "fps": 5,
                    "tasks": ["persons"],
                    "zones": [{"id": "yard", "role": "perimeter", "polygon": whole, "loiter_s": 5}],
                }
            ],
        }
    )
    analyzer = CountingAnalyzer(perception)
    sink = ListSink()
    agent = Agent(cfg, {"gate": analyzer}, {"gate": ListSource([])}, sink)  # type: ignore[dict-item]
    frames = [Frame(still, i, i / 5, T0.timestamp() + i / 5) for i in range(60)]
    for frame in frames:
        agent.workers["gate"].step(frame)
    assert analyzer.calls == 6  # frames 0, 10, 20, ... ; the other 54 reused the detections
    assert agent.workers["gate"].stats.still == 54
    kinds = [(e.kind, e.phase.value) for e in sink.events]
    starts = [k for k in kinds if k == (EventKind.ZONE, "start")]
    assert starts, "nobody was seen"
    assert (EventKind.LOITERING, "start") in kinds
    assert not [k for k in kinds if k[1] == "end"]
