"""Tiled person detection: the tile grid, merging by NMS with cut boxes dropped (fake
detector), the camera setting, and precision / recall on the hand-labelled Town Centre
frames (tuning frames 0/20/40, held-out frames 5/10/15/25/30/35, fresh frames 13/28;
docs/perception.md)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from pydantic import ValidationError

from ringwatch.edge.config import CameraConfig, Thresholds
from ringwatch.edge.site import person_threshold, person_tiling
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
        # the tile unset follows the frame: the model input, or twice it for a large frame
        ((690, 388), Tiling("on"), 3),
        ((1920, 1080), Tiling("on"), 7),
        ((1920, 1080), Tiling("auto"), 7),
        ((690, 388), Tiling("auto"), 1),
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


def test_a_tiled_camera_gets_its_own_person_score_and_the_others_the_sites(
    models_dir: Path,
) -> None:
    from ringwatch.edge.config import SiteConfig
    from ringwatch.edge.site import load_analyzers
    from ringwatch.models.fit_yolox import FitYoloxDetector
    from ringwatch.models.yolox import YoloxPersonDetector

    cameras = [
        {"id": "far", "source": "a.mp4", "tasks": ["persons"], "person_tiling": FAR_VIEW_SETTING},
        {"id": "near", "source": "b.mp4", "tasks": ["persons"]},
        {"id": "near-2", "source": "c.mp4", "tasks": ["persons"]},
        {"id": "shed", "source": "d.mp4", "tasks": ["fire"], "role": "shed", "shed": "s1"},
        {"id": "shed-2", "source": "e.mp4", "tasks": ["fire"], "role": "shed", "shed": "s1",
         "person_tiling": {"mode": "on"}},
    ]  # fmt: skip
    config = SiteConfig.model_validate({"site": "s", "device": "d", "cameras": cameras})
    analyzers, _ = load_analyzers(config, models_dir)
    far, near = analyzers["far"].persons, analyzers["near"].persons
    assert analyzers["near-2"] is analyzers["near"]  # one model set per distinct setting
    assert analyzers["shed-2"] is analyzers["shed"]  # tiling means nothing without persons
    assert isinstance(far, TiledDetector) and far.tiling == Tiling("on", 352, 0.25)
    assert isinstance(far.detector, YoloxPersonDetector) and isinstance(near, YoloxPersonDetector)
    assert (far.detector.filter.score_threshold, near.filter.score_threshold) == (0.4, 0.3)
    # the fitted canvas is for whole frames; a tiling camera still tiles, at its own score
    fitted = SiteConfig.model_validate(
        {**config.model_dump(), "models": {"fit_person_canvas": True}}
    )
    analyzers, _ = load_analyzers(fitted, models_dir)
    far, near = analyzers["far"].persons, analyzers["near"].persons
    assert isinstance(far, TiledDetector) and isinstance(far.detector, YoloxPersonDetector)
    assert far.detector.filter.score_threshold == 0.4 and isinstance(near, FitYoloxDetector)


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


class _BySize:
    """Finds the boxes given for inputs of each size (the whole frame, a tile)."""

    def __init__(self, boxes: dict[tuple[int, int], list[list[float]]]) -> None:
        self.boxes = boxes

    def detect(self, bgr: U8) -> Detections:
        found = self.boxes.get((bgr.shape[1], bgr.shape[0]), [])
        return Detections(
            xyxy=np.array(found, np.float32).reshape(-1, 4),
            confidence=np.full(len(found), 0.8, np.float32),
            class_id=np.zeros(len(found), np.int32),
        )


def test_a_tile_box_inside_a_person_the_tile_cuts_is_a_part_of_them() -> None:
    image = np.zeros((388, 690, 3), np.uint8)
    near = [200.0, 20.0, 500.0, 380.0]  # a near person: neither tile holds him whole
    # Both tiles are 416x388 (x 0..416 and 274..690), so the fake gives each the same two
    # boxes, in tile pixels: 80x170 (an eighth of his area) and 30x70 (a far person's size).
    tile_boxes = [[250.0, 30.0, 330.0, 200.0], [20.0, 30.0, 50.0, 100.0]]
    fake = _BySize({(690, 388): [near], (416, 388): tile_boxes})
    found = TiledDetector(fake, Tiling("on", 416, 0.25)).detect(image)
    # Left tile: 250..330 lies inside him and is an eighth of him: a part, dropped; 20..50
    # lies outside him. Right tile (+274): 524..604 lies outside him; 294..324 lies inside
    # him but is a fiftieth of his size: a far person behind him, kept.
    assert sorted(found.xyxy[:, 0].tolist()) == [20.0, 200.0, 294.0, 524.0]
    # The whole frame holds a small person wholly inside the left tile: the tile's own box
    # of them is no part of anyone and is merged with it by NMS, not dropped.
    small = [60.0, 50.0, 100.0, 150.0]
    fake = _BySize({(690, 388): [small], (416, 388): [[61.0, 50.0, 100.0, 151.0]]})
    found = TiledDetector(fake, Tiling("on", 416, 0.25)).detect(image)
    assert sorted(found.xyxy[:, 0].tolist()) == [60.0, 335.0]  # the right tile's at 274+61


# --- measured on the hand labels ---------------------------------------------------------

# The docs' setting for the Town Centre camera (690x388, far people), read as a site file
# gives it: 352 px tiles (each enlarged 1.18x into the 416 model) and its own person score.
FAR_VIEW_SETTING = {"mode": "on", "tile": 352, "overlap": 0.25, "threshold": 0.4}
TOWN_CENTRE = CameraConfig.model_validate(
    {"id": "street", "source": "x.mp4", "person_tiling": FAR_VIEW_SETTING}
)
FAR_VIEW = person_tiling(TOWN_CENTRE)
FAR_VIEW_THRESHOLD = person_threshold(TOWN_CENTRE, Thresholds())
# (precision, recall) floors a little under what was measured (docs/perception.md):
# tuning frames YOLOX-nano 0.981 / 0.964, NanoDet 0.942 / 0.891; held-out frames 10, 30, 5,
# 35, 15 and 25 (105 people) YOLOX-nano 0.944 / 0.962, NanoDet 0.950 / 0.905; fresh frames
# 13 and 28 (37 people, labelled after the setting was chosen) 0.946 / 0.946, 0.895 / 0.919.
FLOORS = {
    ("yolox_nano", "frames"): (0.95, 0.94),
    ("yolox_nano", "held_out"): (0.92, 0.94),
    ("yolox_nano", "fresh"): (0.91, 0.91),
    ("nanodet", "frames"): (0.92, 0.87),
    ("nanodet", "held_out"): (0.93, 0.89),
    ("nanodet", "fresh"): (0.86, 0.89),
}
Labels = dict[str, list[dict[str, Any]]]


def test_the_camera_setting_reads_as_the_models_take_it() -> None:
    assert (Tiling("on", 352, 0.25), 0.4) == (FAR_VIEW, FAR_VIEW_THRESHOLD)
    unset = {"id": "c", "source": "x.mp4"}
    auto = CameraConfig.model_validate({**unset, "person_tiling": {"mode": "auto"}})
    on = CameraConfig.model_validate({**unset, "person_tiling": {"mode": "on"}})
    off = CameraConfig.model_validate(unset)
    assert person_tiling(auto) == Tiling("auto", None, 0.25)
    assert person_tiling(auto).runs(1920, 1080) == 7  # 832 px tiles, not 25 runs of 416
    assert (person_tiling(on).runs(690, 388), person_tiling(on).runs(1920, 1080)) == (3, 7)
    site = Thresholds(person=0.35)
    assert [person_threshold(c, site) for c in (auto, on, off)] == [0.35, 0.35, 0.35]
    assert person_threshold(TOWN_CENTRE, site) == 0.4
    # a tile, overlap or score with tiling off would do nothing: refused, naming them
    for ignored in ({"threshold": 0.6}, {"mode": "off", "tile": 300, "threshold": 0.4}):
        with pytest.raises(ValidationError, match="set with mode off"):
            CameraConfig.model_validate({**unset, "person_tiling": ignored})


def _total(
    found: dict[int, Detections], frames: list[dict[str, Any]], scale: float = 1.0
) -> Counts:
    total = Counts(0, 0, 0)
    for frame in frames:
        counts = match(
            found[frame["frame"]],
            np.array(frame["persons"], np.float32).reshape(-1, 4) * scale,
            np.array(frame["ignore"], np.float32).reshape(-1, 4) * scale,
        )
        total = Counts(total.tp + counts.tp, total.fp + counts.fp, total.fn + counts.fn)
    return total


def _labelled(data_dir: Path) -> tuple[Labels, dict[int, U8]]:
    labels: Labels = json.loads(LABELS.read_text())
    wanted = {f["frame"] for f in labels["frames"] + labels["held_out"] + labels["fresh"]}
    return labels, towncentre_frames(data_dir, wanted)


def _model(name: str, models_dir: Path, threads: int = 2) -> OnnxModel:
    path = model_path(load_manifest().get(name), models_dir)
    return OnnxModel(path, RuntimeOptions(threads=threads))


@pytest.mark.data
@pytest.mark.parametrize(("name", "part"), sorted(FLOORS))
def test_tiled_person_precision_recall(
    name: str, part: str, models_dir: Path, data_dir: Path
) -> None:
    labels, frames = _labelled(data_dir)
    detector = TiledDetector(
        person_detector(_model(name, models_dir, 1), name, FAR_VIEW_THRESHOLD), FAR_VIEW
    )
    total = _total({i: detector.detect(frames[i]) for i in frames}, labels[part])
    print(f"\n{name} tiled, {part}: P {total.precision:.3f} R {total.recall:.3f} {total}")
    precision_floor, recall_floor = FLOORS[(name, part)]
    assert total.precision >= precision_floor and total.recall >= recall_floor


def _f1(c: Counts) -> float:
    return 2 * c.precision * c.recall / max(c.precision + c.recall, 1e-9)


TILES = (416, 352, 300, 256, 208)


@pytest.mark.data
def test_the_far_view_tile_is_the_one_the_tuning_frames_chose(
    models_dir: Path, data_dir: Path
) -> None:
    """The tile side for the Town Centre camera, at the site's person score 0.3: the best F1
    on the tuning frames (frames 0/20/40), fewer runs on a tie. It must pick the shipped 352
    for YOLOX-nano; NanoDet's figures and the held-out frames are only printed."""
    labels, frames = _labelled(data_dir)
    chosen: dict[str, int] = {}
    for name in ("yolox_nano", "nanodet"):
        plain = person_detector(_model(name, models_dir), name, Thresholds().person)
        print(f"\n{name} at 0.3, P / R by tile side (690x388 frames)")
        scored = []
        for tile in TILES:
            tiling = Tiling("on", tile, 0.25)
            found = {i: TiledDetector(plain, tiling).detect(f) for i, f in frames.items()}
            tuning, held = _total(found, labels["frames"]), _total(found, labels["held_out"])
            runs = tiling.runs(690, 388)
            print(f"  {tile:4d} px, {runs:2d} runs  tuning {tuning.precision:.3f} / "
                  f"{tuning.recall:.3f}   held-out {held.precision:.3f} / "
                  f"{held.recall:.3f}")  # fmt: skip
            scored.append((-round(_f1(tuning), 6), runs, tile))
        chosen[name] = min(scored)[2]
    assert chosen["yolox_nano"] == FAR_VIEW.tile


SWEEP = (0.3, 0.35, 0.4, 0.45, 0.5)


@pytest.mark.data
def test_the_far_view_threshold_is_the_one_the_tuning_frames_chose(
    models_dir: Path, data_dir: Path
) -> None:
    """``person_tiling.threshold`` for the Town Centre camera, swept as docs/perception.md
    reports it. One tiled run a frame at the lowest threshold; a higher threshold keeps the
    boxes scoring at least that (the same boxes a run at that threshold gives: greedy NMS and
    the cut-box rule only ever remove a box in favour of a higher-scored one). The rule: of
    the thresholds with precision and recall >= 0.90 on the tuning frames, the best F1, the
    higher threshold on a tie. It must pick the shipped 0.4 for YOLOX-nano at 352 px tiles;
    NanoDet's sweep and the held-out frames are only printed."""
    labels, frames = _labelled(data_dir)
    for name in ("yolox_nano", "nanodet"):
        detector = TiledDetector(
            person_detector(_model(name, models_dir), name, SWEEP[0]), FAR_VIEW
        )
        found = {index: detector.detect(frame) for index, frame in frames.items()}
        print(f"\n{name} tiled {FAR_VIEW.tile}/{FAR_VIEW.overlap}, P / R by person threshold")
        meets = []
        for threshold in SWEEP:
            kept = {i: d[d.confidence >= threshold] for i, d in found.items()}
            tuning, held = _total(kept, labels["frames"]), _total(kept, labels["held_out"])
            print(f"  {threshold:.2f}  tuning {tuning.precision:.3f} / {tuning.recall:.3f}   "
                  f"held-out {held.precision:.3f} / {held.recall:.3f}")  # fmt: skip
            if tuning.precision >= 0.9 and tuning.recall >= 0.9:
                meets.append((round(_f1(tuning), 6), threshold))
        if name == "yolox_nano":
            assert meets and max(meets)[1] == FAR_VIEW_THRESHOLD


@pytest.mark.data
def test_tiling_at_1080p_on_upscaled_frames(models_dir: Path, data_dir: Path) -> None:
    """The 1080p geometry (2 rows x 3 columns of 832 px tiles shrunk 2x, seams across and
    down) on the labelled frames enlarged 2.78x to 1920x1080 with their labels: upscaled
    690x388 footage, not real 1080p (which has detail these frames lack). ``auto`` with the
    tile unset must run 7 times a frame and keep precision and recall; 624 and 416 px tiles
    are printed for their cost (9 and 25 runs)."""
    import cv2

    labels, frames = _labelled(data_dir)
    big = {i: np.asarray(cv2.resize(f, (1920, 1080)), np.uint8) for i, f in frames.items()}
    scale = 1920 / 690  # 2.783 across, 2.784 down: one factor is within a pixel
    auto = CameraConfig.model_validate(
        {"id": "c", "source": "x.mp4", "person_tiling": {"mode": "auto"}}
    )
    plain = person_detector(_model("yolox_nano", models_dir), "yolox_nano", Thresholds().person)
    results = {}
    print("\nYOLOX-nano at 0.3 on 1920x1080 (upscaled) frames")
    for tiling in (Tiling("off"), person_tiling(auto), Tiling("on", 624), Tiling("on", 416)):
        found = {i: TiledDetector(plain, tiling).detect(f) for i, f in big.items()}
        results[tiling] = [_total(found, labels[part], scale) for part in ("frames", "held_out")]
        tuning, held = results[tiling]
        side = f"{tiling.side(1920, 1080)} px" if tiling.mode != "off" else "-"
        print(f"  {tiling.mode:4s} {side}, {tiling.runs(1920, 1080):2d} runs  tuning "
              f"{tuning.precision:.3f} / {tuning.recall:.3f}   held-out {held.precision:.3f} / "
              f"{held.recall:.3f}")  # fmt: skip
    assert person_tiling(auto).runs(1920, 1080) == 7
    tuning, held = results[person_tiling(auto)]
    assert min(tuning.precision, tuning.recall, held.precision, held.recall) >= 0.92


@pytest.mark.data
def test_tiling_does_not_split_a_near_person_into_several_boxes(
    models_dir: Path, data_dir: Path
) -> None:
    """Held-out footage of another scene: intel_one_by_one_person.mp4 (768x432, indoor, people
    cross one at a time, close to the camera), so any frame with two person boxes holds a
    false one. Tiled at the Town Centre setting, YOLOX-nano must draw no second box (a near
    person cut by the tile edges is the risk) and find a person where untiled does."""
    import cv2

    model = _model("yolox_nano", models_dir)
    plain = person_detector(model, "yolox_nano", 0.3)
    tiled = TiledDetector(person_detector(model, "yolox_nano", FAR_VIEW_THRESHOLD), FAR_VIEW)
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
