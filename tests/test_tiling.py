"""Tiled person detection: the tile grid, merging by NMS with cut boxes dropped (fake
detector), the camera setting, and precision / recall on the hand-labelled Town Centre
frames (tuning frames 0/20/40, held-out frames 5/10/15/25/30/35; docs/perception.md)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from pydantic import ValidationError

from ringwatch.edge.agent import person_tiling
from ringwatch.edge.config import CameraConfig, Thresholds
from ringwatch.models.detections import Detections
from ringwatch.models.install import model_path
from ringwatch.models.manifest import load_manifest
from ringwatch.models.perception import person_detector
from ringwatch.models.runtime import OnnxModel, RuntimeOptions
from ringwatch.models.tiling import TiledDetector, Tiling
from tests.test_persons_fire_accuracy import LABELS, Counts, match, towncentre_frames

U8 = npt.NDArray[np.uint8]


@pytest.mark.parametrize(
    ("size", "tiling", "runs"),
    [
        ((690, 388), Tiling("on", 416, 0.25), 3),
        ((1920, 1080), Tiling("on", 832, 0.25), 7),
        ((1920, 1080), Tiling("auto", 832, 0.25), 7),
        ((690, 388), Tiling("auto", 416, 0.25), 1),  # not over twice the 416 input
        ((690, 388), Tiling("off"), 1),
    ],
)
def test_runs_per_frame(size: tuple[int, int], tiling: Tiling, runs: int) -> None:
    assert tiling.runs(*size) == runs


@pytest.mark.parametrize(("w", "h"), [(690, 388), (1920, 1080), (1000, 2000), (300, 200)])
def test_tiles_cover_the_frame_with_the_overlap(w: int, h: int) -> None:
    tiling = Tiling("on", 416, 0.25)
    covered = np.zeros((h, w), np.int32)
    for x1, y1, x2, y2 in tiling.windows(w, h):
        assert x2 - x1 <= 416 and y2 - y1 <= 416
        covered[y1:y2, x1:x2] += 1
    assert covered.min() >= 1
    xs = sorted({x1 for x1, *_ in tiling.windows(w, h)})
    if len(xs) > 1:
        assert max(b - a for a, b in itertools.pairwise(xs)) <= 416 * 0.75 + 1


def test_bad_tiling_is_refused() -> None:
    with pytest.raises(ValueError, match="tiling mode"):
        Tiling("sometimes")
    with pytest.raises(ValidationError):
        CameraConfig.model_validate({"id": "c", "source": "x.mp4", "person_tiling": {"mode": "x"}})
    cam = CameraConfig.model_validate(
        {"id": "c", "source": "x.mp4", "person_tiling": {"mode": "on", "tile": 416}}
    )
    assert person_tiling(cam) == Tiling("on", 416, 0.25)


class _Fake:
    """Finds one person at a fixed place of whatever image it is given, and records sizes."""

    def __init__(self, box: list[float]) -> None:
        self.box = box
        self.seen: list[tuple[int, int]] = []

    def detect(self, bgr: U8) -> Detections:
        self.seen.append((bgr.shape[1], bgr.shape[0]))
        return Detections(
            xyxy=np.array([self.box], np.float32),
            confidence=np.array([0.9], np.float32),
            class_id=np.zeros(1, np.int32),
        )


def test_tile_boxes_shift_back_and_cut_ones_are_dropped() -> None:
    image = np.zeros((388, 690, 3), np.uint8)
    # A box at (100..120, 50..100) of every input: in the right tile (x from 274) it lands
    # at 374..394 in the frame; the left tile's and the whole frame's stay at 100..120.
    fake = _Fake([100, 50, 120, 100])
    found = TiledDetector(fake, Tiling("on", 416, 0.25)).detect(image)
    assert fake.seen == [(690, 388), (416, 388), (416, 388)]
    assert sorted(found.xyxy[:, 0].tolist()) == [100.0, 374.0]  # left duplicate merged
    # Touching the left tile's inner (right) edge at 416: dropped from that tile; the same
    # box in the right tile ends at the frame's own edge (690) and is kept.
    cut = _Fake([390, 50, 416, 100])
    found = TiledDetector(cut, Tiling("on", 416, 0.25)).detect(image)
    assert sorted(found.xyxy[:, 0].tolist()) == [390.0, 664.0]


# --- measured on the hand labels ---------------------------------------------------------

SHIPPED_TILING = Tiling("on", 416, 0.25)  # the docs' setting for the Town Centre camera
# (precision, recall) floors a little under what was measured (docs/perception.md):
# tuning frames YOLOX-nano 0.944 / 0.927, NanoDet 0.839 / 0.945; held-out frames 10, 30, 5,
# 35, 15 and 25 (105 people) YOLOX-nano 0.907 / 0.933, NanoDet 0.839 / 0.943.
FLOORS = {
    ("yolox_nano", "frames"): (0.90, 0.90),
    ("yolox_nano", "held_out"): (0.88, 0.91),
    ("nanodet", "frames"): (0.80, 0.90),
    ("nanodet", "held_out"): (0.80, 0.91),
}


@pytest.mark.data
@pytest.mark.parametrize(("name", "part"), sorted(FLOORS))
def test_tiled_person_precision_recall(
    name: str, part: str, models_dir: Path, data_dir: Path
) -> None:
    labels = json.loads(LABELS.read_text())[part]
    frames = towncentre_frames(data_dir, {f["frame"] for f in labels})
    model = OnnxModel(model_path(load_manifest().get(name), models_dir), RuntimeOptions(threads=1))
    detector = TiledDetector(person_detector(model, name, 0.3), SHIPPED_TILING)
    total = Counts(0, 0, 0)
    for frame in labels:
        counts = match(
            detector.detect(frames[frame["frame"]]),
            np.array(frame["persons"], np.float32).reshape(-1, 4),
            np.array(frame["ignore"], np.float32).reshape(-1, 4),
        )
        total = Counts(total.tp + counts.tp, total.fp + counts.fp, total.fn + counts.fn)
    print(f"\n{name} tiled, {part}: P {total.precision:.3f} R {total.recall:.3f} {total}")
    precision_floor, recall_floor = FLOORS[(name, part)]
    assert total.precision >= precision_floor and total.recall >= recall_floor


SWEEP = (0.3, 0.35, 0.4, 0.45, 0.5)


@pytest.mark.data
def test_the_shipped_person_threshold_is_the_one_the_tuning_frames_chose(
    models_dir: Path, data_dir: Path
) -> None:
    """``thresholds.person`` for tiled cameras, swept as docs/perception.md reports it. One
    tiled run a frame at the lowest threshold; a higher threshold keeps the boxes scoring at
    least that (the same boxes a run at that threshold gives: greedy NMS and the cut-box rule
    only ever remove a box in favour of a higher-scored one). The rule: the highest threshold
    with precision and recall >= 0.90 on the tuning frames. It must pick the shipped 0.3 for
    YOLOX-nano (the shipped model); NanoDet's sweep and the held-out frames are only printed."""
    labels = json.loads(LABELS.read_text())
    frames = towncentre_frames(
        data_dir, {f["frame"] for f in labels["frames"] + labels["held_out"]}
    )
    tables = {name: _sweep(name, labels, frames, models_dir) for name in ("yolox_nano", "nanodet")}
    for name, table in tables.items():
        print(f"\n{name} tiled 416/0.25, P / R by person threshold")
        for threshold in SWEEP:
            tuning, held = table["frames"][threshold], table["held_out"][threshold]
            print(f"  {threshold:.2f}  tuning {tuning.precision:.3f} / {tuning.recall:.3f}   "
                  f"held-out {held.precision:.3f} / {held.recall:.3f}")  # fmt: skip
    table = tables["yolox_nano"]
    meets = [t for t, c in table["frames"].items() if c.precision >= 0.9 and c.recall >= 0.9]
    assert meets and max(meets) == Thresholds().person


def _sweep(
    name: str, labels: dict[str, Any], frames: dict[int, U8], models_dir: Path
) -> dict[str, dict[float, Counts]]:
    model = OnnxModel(model_path(load_manifest().get(name), models_dir), RuntimeOptions(threads=2))
    detector = TiledDetector(person_detector(model, name, SWEEP[0]), SHIPPED_TILING)
    found = {index: detector.detect(frame) for index, frame in frames.items()}
    table: dict[str, dict[float, Counts]] = {}
    for part in ("frames", "held_out"):
        for threshold in SWEEP:
            total = Counts(0, 0, 0)
            for frame in labels[part]:
                dets = found[frame["frame"]]
                counts = match(
                    dets[dets.confidence >= threshold],
                    np.array(frame["persons"], np.float32).reshape(-1, 4),
                    np.array(frame["ignore"], np.float32).reshape(-1, 4),
                )
                total = Counts(total.tp + counts.tp, total.fp + counts.fp, total.fn + counts.fn)
            table.setdefault(part, {})[threshold] = total
    return table


@pytest.mark.data
def test_tiling_does_not_split_a_near_person_into_several_boxes(
    models_dir: Path, data_dir: Path
) -> None:
    """Held-out footage of another scene: intel_one_by_one_person.mp4 (768x432, indoor, people
    cross one at a time, close to the camera), so any frame with two person boxes holds a
    false one. Tiled at the Town Centre setting, YOLOX-nano must draw no second box (a near
    person cut by the tile edges is the risk) and find a person where untiled does."""
    import cv2

    model = OnnxModel(
        model_path(load_manifest().get("yolox_nano"), models_dir), RuntimeOptions(threads=2)
    )
    plain = person_detector(model, "yolox_nano", 0.3)
    tiled = TiledDetector(plain, SHIPPED_TILING)
    capture = cv2.VideoCapture(str(data_dir / "video/intel_one_by_one_person.mp4"))
    boxes: dict[str, list[int]] = {"off": [], "on": []}
    index = 0
    while True:
        ok, raw = capture.read()
        if not ok:
            break
        if index % 10 == 0:
            frame = np.asarray(raw, np.uint8)
            boxes["off"].append(len(plain.detect(frame)))
            boxes["on"].append(len(tiled.detect(frame)))
        index += 1
    capture.release()
    with_person = {k: sum(n > 0 for n in v) for k, v in boxes.items()}
    print(f"\n{len(boxes['on'])} frames; with a person box {with_person}; "
          f"most boxes in a frame: off {max(boxes['off'])}, on {max(boxes['on'])}")  # fmt: skip
    assert len(boxes["on"]) >= 130
    assert max(boxes["on"]) == 1
    assert with_person["on"] >= with_person["off"] >= 0.6 * len(boxes["on"])
