"""How often the shed's k-of-n fire rule raises on the neon-sign clip and the grass fire.

Runs the fire model once over every frame of both clips, then replays the per-frame scores
at several analysed frame rates, with regular timing (20 phases) and jittered timing (200
runs; intervals 1-3x the nominal, as on a loaded box), for several (k, n) rules.

    .venv/bin/python tools/fire_persistence_sim.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import random
from collections import deque
from pathlib import Path

import cv2
import numpy as np

from ringwatch.models.fire import FIRE_CLASS, SMOKE_CLASS, FireSmokeDetector
from ringwatch.models.install import model_path
from ringwatch.models.manifest import default_models_dir, load_manifest
from ringwatch.models.runtime import OnnxModel, RuntimeOptions

Scores = list[tuple[float, float]]
RULES = [(3, 5, 3), (4, 5, 4), (5, 6, 3)]
RATES = [1, 2, 4, 5, 10]


def clip_scores(detector: FireSmokeDetector, path: Path) -> tuple[float, Scores]:
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    rows: Scores = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        dets = detector.detect(np.asarray(image, np.uint8))
        fire = dets.confidence[dets.class_id == FIRE_CLASS]
        smoke = dets.confidence[dets.class_id == SMOKE_CLASS]
        rows.append((float(fire.max(initial=0.0)), float(smoke.max(initial=0.0))))
    capture.release()
    return fps, rows


def first_alarm(
    scores: Scores, times: list[tuple[float, int]], k: int, n: int, k_hold: int
) -> float | None:
    raised: deque[bool] = deque(maxlen=n)
    held: deque[bool] = deque(maxlen=n)
    confirmed = False
    for t, i in times:
        fire, smoke = scores[i]
        raised.append(fire >= 0.5 or smoke >= 0.75)
        held.append(fire >= 0.35 or smoke >= 0.6)
        confirmed = sum(held) >= k_hold if confirmed else sum(raised) >= k
        if confirmed:
            return t
    return None


def sample(
    frames: int, video_fps: float, rate: float, start: float, jitter: random.Random | None
) -> list[tuple[float, int]]:
    out, t = [], start
    while int(t * video_fps) < frames:
        out.append((t, int(t * video_fps)))
        t += jitter.uniform(1 / rate, 3 / rate) if jitter else 1 / rate
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()
    model = OnnxModel(
        model_path(load_manifest().get("fire_smoke"), default_models_dir()),
        RuntimeOptions(threads=1),
    )
    detector = FireSmokeDetector(model, fire_threshold=0.3, smoke_threshold=0.5)
    rng = random.Random(1)
    print(
        "clip                 rule(k/n, hold)  fps  regular alarms  jittered alarms  first alarm s"
    )
    for name in ("firesense_test7.mp4", "firesense_test1.mp4"):
        video_fps, scores = clip_scores(detector, args.data / "fire" / "video" / name)
        for k, n, k_hold in RULES:
            for rate in RATES:
                regular = [
                    first_alarm(
                        scores,
                        sample(len(scores), video_fps, rate, p / 20 / rate, None),
                        k,
                        n,
                        k_hold,
                    )
                    for p in range(20)
                ]
                jittered = [
                    first_alarm(
                        scores,
                        sample(len(scores), video_fps, rate, rng.random() / rate, rng),
                        k,
                        n,
                        k_hold,
                    )
                    for _ in range(200)
                ]
                hits = [r for r in regular if r is not None]
                first = f"{min(hits):.2f}" if hits else "-"
                jit = sum(r is not None for r in jittered)
                row = f"{name:20} {k}/{n}, {k_hold}          {rate:>3}  {len(hits):>7}/20"
                print(f"{row}      {jit:>8}/200     {first}")


if __name__ == "__main__":
    main()
