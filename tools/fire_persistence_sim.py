"""How the shed's camera fire rule behaves on the real clips, at any analysed rate, on a
loaded box: time to alarm on fire, false alarms on the neon sign.

Runs the fire model once over every frame of both clips (and the fire photos), caches the
per-frame (fire, smoke) scores, then replays them through the real rule
(:class:`ringwatch.edge.shed.FireEvidence`, or the old k-of-n rule for comparison) at 1-10
analysed fps, with regular timing (20 phases) and jittered timing (200 runs; intervals 1-3x
the nominal, as on a loaded box).

The clips are cut into parts so some can be held out while tuning (``TUNING`` below):

- grass-a / grass-b / grass-c: thirds of firesense_test1 (grass fire, visible from each
  part's first frame); tuned on grass-a, grass-b and grass-c held out;
- neon-a / neon-b: halves of firesense_test7 (neon sign, no fire); tuned on neon-a, neon-b
  held out;
- photo stills: each fire and no-fire photo as a still camera (constant score, 10 s); none
  was tuned on. A still scene has no flicker, so persistence cannot reject a static
  fire-like object there (that is what privacy/zone masks are for); the rows show it.

    .venv/bin/python tools/fire_persistence_sim.py [--data ../shared/data] [--rule evidence]
    .venv/bin/python tools/fire_persistence_sim.py --grid   # search on the tuning parts only
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ringwatch.edge.shed import (
    FireEvidence,
    FireEvidenceConfig,
    FirePersistence,
    FirePersistenceConfig,
)
from ringwatch.models.fire import FIRE_CLASS, SMOKE_CLASS, FireSmokeDetector
from ringwatch.models.install import model_path
from ringwatch.models.manifest import default_models_dir, load_manifest
from ringwatch.models.runtime import OnnxModel, RuntimeOptions

Scores = list[tuple[float, float]]
RATES = [1, 2, 4, 5, 10]
LIMIT_S = 3.0  # the floor: alarm within 3 s of fire being visible ...
FLOOR_RATES = {4, 5, 10}  # ... at these analysed rates (the shed camera runs at 4 fps);
# no alarm on the no-fire parts at every rate. At 1-2 fps with 1-3x jitter a frame may come
# only every 1.5-3 s, so 3 s cannot be promised there; the table still shows those rows.
STILL_S = 10.0
TUNING = {"grass-a", "neon-a"}


@dataclass(frozen=True)
class Part:
    name: str
    clip: str
    start_s: float
    end_s: float
    fire: bool


PARTS = [
    Part("grass-a", "firesense_test1.mp4", 0.0, 8.6, True),
    Part("grass-b", "firesense_test1.mp4", 8.6, 17.2, True),
    Part("grass-c", "firesense_test1.mp4", 17.2, 25.8, True),
    Part("neon-a", "firesense_test7.mp4", 0.0, 11.0, False),
    Part("neon-b", "firesense_test7.mp4", 11.0, 22.1, False),
]


def best_scores(detector: FireSmokeDetector, image: np.ndarray) -> tuple[float, float]:
    dets = detector.detect(np.asarray(image, np.uint8))
    fire = dets.confidence[dets.class_id == FIRE_CLASS]
    smoke = dets.confidence[dets.class_id == SMOKE_CLASS]
    return float(fire.max(initial=0.0)), float(smoke.max(initial=0.0))


def compute_scores(data: Path, wanted: set[str]) -> dict[str, object]:
    model = OnnxModel(
        model_path(load_manifest().get("fire_smoke"), default_models_dir()),
        RuntimeOptions(threads=1),
    )
    detector = FireSmokeDetector(model, fire_threshold=0.05, smoke_threshold=0.05)
    out: dict[str, object] = {}
    for clip in sorted({p.clip for p in PARTS} & wanted):
        capture = cv2.VideoCapture(str(data / "fire" / "video" / clip))
        fps = capture.get(cv2.CAP_PROP_FPS)
        rows: Scores = []
        while True:
            ok, image = capture.read()
            if not ok:
                break
            rows.append(best_scores(detector, image))
        capture.release()
        out[clip] = {"fps": fps, "scores": rows}
    for label in [x for x in ("fire", "no_fire") if f"photos/{x}" in wanted]:
        photos = {}
        for path in sorted((data / "fire" / "images" / label).iterdir()):
            photo = cv2.imread(str(path))
            if photo is not None:
                photos[path.name] = best_scores(detector, np.asarray(photo, np.uint8))
        out[f"photos/{label}"] = photos
    return out


def load_scores(data: Path, cache: Path, rescore: bool) -> dict[str, object]:
    keys = {p.clip for p in PARTS} | {"photos/fire", "photos/no_fire"}
    found: dict[str, object] = {}
    if cache.exists() and not rescore:
        found = json.loads(cache.read_text())
    missing = keys - set(found)
    if not missing:
        return found
    scores = found | compute_scores(data, missing)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(scores))
    return scores


def sample(
    start: float, end: float, rate: float, phase: float, jitter: random.Random | None
) -> list[float]:
    out, t = [], start + phase
    while t < end:
        out.append(t)
        t += jitter.uniform(1 / rate, 3 / rate) if jitter else 1 / rate
    return out


class Rule:
    """One rule's replay: the first alarm time (from the part's start) and peak evidence."""

    def __init__(
        self,
        kind: str,
        evidence: FireEvidenceConfig,
        kofn: FirePersistenceConfig,
        sensor: bool = False,
    ):
        self.kind, self.evidence, self.kofn, self.sensor = kind, evidence, kofn, sensor

    def replay(
        self, scores: Scores, fps: float, times: Iterable[float], start: float
    ) -> tuple[float | None, float]:
        if self.kind == "k_of_n":
            kofn = FirePersistence(self.kofn)
            for t in times:
                if kofn.update(*scores[min(int(t * fps), len(scores) - 1)]):
                    return t - start, float("nan")
            return None, float("nan")
        rule = FireEvidence(self.evidence)
        peak = 0.0
        for t in times:
            fire, smoke = scores[min(int(t * fps), len(scores) - 1)]
            if rule.update(fire, smoke, t, sensor=self.sensor):
                return t - start, rule.evidence
            peak = max(peak, rule.evidence)
        return None, peak


@dataclass
class Outcome:
    part: str
    rate: int
    alarms: int  # runs that alarmed (fire: within LIMIT_S)
    runs: int
    worst_s: float | None  # fire: slowest alarm over the runs; None if one never alarmed
    peak: float  # no fire: highest evidence reached


def evaluate(
    rule: Rule,
    scores: dict[str, object],
    rates: list[int],
    only: set[str] | None = None,
    seed: int = 1,
) -> list[Outcome]:
    rng = random.Random(seed)
    outcomes: list[Outcome] = []
    for part in [p for p in PARTS if only is None or p.name in only]:
        clip = scores[part.clip]
        assert isinstance(clip, dict)
        fps = float(clip["fps"])
        rows = [(float(r[0]), float(r[1])) for r in clip["scores"]]
        end = min(part.end_s, len(rows) / fps)
        for rate in rates:
            runs = [sample(part.start_s, end, rate, p / 20 / rate, None) for p in range(20)]
            runs += [sample(part.start_s, end, rate, rng.random() / rate, rng) for _ in range(200)]
            results = [rule.replay(rows, fps, ts, part.start_s) for ts in runs]
            outcomes.append(summarise(part, rate, results))
    return outcomes


def summarise(part: Part, rate: int, results: list[tuple[float | None, float]]) -> Outcome:
    firsts = [r[0] for r in results]
    if part.fire:
        ok = [f for f in firsts if f is not None and f <= LIMIT_S]
        worst = None if len(ok) < len(firsts) else max(ok)
        return Outcome(part.name, rate, len(ok), len(results), worst, 0.0)
    alarms = sum(f is not None for f in firsts)
    return Outcome(part.name, rate, alarms, len(results), None, max(r[1] for r in results))


def stills(rule: Rule, scores: dict[str, object], rate: int = 5) -> dict[str, list[float | None]]:
    out: dict[str, list[float | None]] = {}
    for label in ("fire", "no_fire"):
        photos = scores[f"photos/{label}"]
        assert isinstance(photos, dict)
        times = sample(0.0, STILL_S, rate, 0.0, None)
        out[label] = [
            rule.replay([(float(s[0]), float(s[1]))] * 2, 1e-9, times, 0.0)[0]
            for s in photos.values()
        ]
    return out


def score(outcomes: list[Outcome], parts: set[str]) -> tuple[bool, float, float]:
    """(floors met, worst fire alarm s, highest no-fire evidence) over ``parts``."""
    chosen = [o for o in outcomes if o.part in parts]
    fire = [o for o in chosen if o.part.startswith("grass") and o.rate in FLOOR_RATES]
    fire_ok = all(o.alarms == o.runs for o in fire)
    neon_ok = all(o.alarms == 0 for o in chosen if o.part.startswith("neon"))
    worst = max((o.worst_s or 99.0) for o in fire)
    peak = max(o.peak for o in chosen if o.part.startswith("neon"))
    return fire_ok and neon_ok, worst, peak


def print_table(rule: Rule, scores: dict[str, object]) -> None:
    outcomes = evaluate(rule, scores, RATES)
    print("part      set       fps  alarms/runs  worst alarm s  peak evidence (no fire)")
    for o in outcomes:
        held = "tuning" if o.part in TUNING else "held-out"
        slowest = "-" if o.worst_s is None else f"{o.worst_s:.2f}"
        top = "-" if o.part.startswith("grass") else f"{o.peak:.2f}"
        print(
            f"{o.part:9} {held:9} {o.rate:>3}  {o.alarms:>5}/{o.runs:<5}  {slowest:>13}  {top:>8}"
        )
    parts = {p.name for p in PARTS}
    for label, chosen in (("tuning", TUNING), ("held-out", parts - TUNING)):
        ok, worst, peak = score(outcomes, chosen)
        print(
            f"{label}: floors {'met' if ok else 'NOT met'}; slowest fire alarm {worst:.2f} s "
            f"(floor {LIMIT_S:g} s); highest neon evidence {peak:.2f}"
            + (f" (raise at {rule.evidence.raise_at:g})" if rule.kind == "evidence" else "")
        )
    got = stills(rule, scores)
    for label in ("fire", "no_fire"):
        hits = [t for t in got[label] if t is not None and t <= LIMIT_S]
        print(
            f"photo stills {label:8} (held out, 5 fps, {STILL_S:g} s): alarm within "
            f"{LIMIT_S:g} s on {len(hits)}/{len(got[label])}; any alarm on "
            f"{sum(t is not None for t in got[label])}/{len(got[label])}"
        )


def grid(scores: dict[str, object], base: FireEvidenceConfig) -> None:
    """Search a small grid on the tuning parts only; print the best by neon margin."""
    found = []
    for floor, full, half, raise_at, step in itertools.product(
        (0.45, 0.5, 0.55), (0.7, 0.8), (1.0, 2.0, 3.0), (0.6, 1.0, 1.5), (0.5, 1.0)
    ):
        cfg = base.model_copy(
            update={
                "fire_floor": floor,
                "fire_full": full,
                "half_life_s": half,
                "raise_at": raise_at,
                "hold_at": min(base.hold_at, raise_at),
                "max_step_s": step,
            }
        )
        outcomes = evaluate(Rule("evidence", cfg, FirePersistenceConfig()), scores, RATES, TUNING)
        ok, worst, peak = score(outcomes, TUNING)
        if ok:
            found.append((raise_at / max(peak, 1e-3), worst, cfg))
    found.sort(key=lambda f: (-min(f[0], 3.0), f[1]))
    for margin, worst, cfg in found[:10]:
        print(
            f"neon margin x{margin:.2f} worst {worst:.2f} s: floor {cfg.fire_floor} "
            f"full {cfg.fire_full} half-life {cfg.half_life_s} raise {cfg.raise_at} "
            f"step {cfg.max_step_s}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--cache", type=Path, default=Path("var/fire_scores.json"))
    parser.add_argument("--rescore", action="store_true", help="re-run the model")
    parser.add_argument("--rule", choices=("evidence", "k_of_n"), default="evidence")
    parser.add_argument("--grid", action="store_true", help="tune on the tuning parts")
    parser.add_argument(
        "--sensor", action="store_true", help="a bay sensor anomalous throughout (agreement)"
    )
    args = parser.parse_args()
    scores = load_scores(args.data, args.cache, args.rescore)
    base = FireEvidenceConfig()
    if args.grid:
        grid(scores, base)
        return
    print_table(Rule(args.rule, base, FirePersistenceConfig(), args.sensor), scores)


if __name__ == "__main__":
    main()
