"""Person and fire pre/post-processing on tiny hand-built arrays (letterbox, decode, class
filter, minimum size, per-class thresholds), plus the output layout of the real models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from ringwatch.errors import ConfigError, ModelError
from ringwatch.models.fire import (
    FIRE_CLASS,
    SMOKE_CLASS,
    FireSmokeDetector,
    decode_yolov8,
    per_class_candidates,
)
from ringwatch.models.install import model_path
from ringwatch.models.letterbox import Letterbox, LetterboxGeometry
from ringwatch.models.manifest import load_manifest
from ringwatch.models.nanodet import (
    BINS,
    NanoDetPersonDetector,
    decode_nanodet,
    gfl_distances,
    split_outputs,
)
from ringwatch.models.runtime import OnnxModel
from ringwatch.models.yolox import DetectionFilter, YoloxPersonDetector, decode_yolox, grid_points

F32 = npt.NDArray[np.float32]
IDENTITY = LetterboxGeometry(1.0, 0, 0, 416, 416)


def boxes(*rows: list[float]) -> F32:
    return np.array(rows, np.float32).reshape(-1, 4)


# --- letterbox ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("centred", "pad", "pad_x", "pad_y"),
    [(False, 114, 0, 0), (True, 114, 0, 2), (True, 0, 0, 2)],
)
def test_letterbox_places_the_scaled_image_and_pads(
    centred: bool, pad: int, pad_x: int, pad_y: int
) -> None:
    image = np.full((2, 4, 3), 200, np.uint8)  # 4 wide, 2 high -> 8x4 inside 8x8
    canvas, geo = Letterbox(8, 8, centred=centred, pad_value=pad).fit(image)
    assert canvas.shape == (8, 8, 3) and canvas.dtype == np.uint8
    assert (geo.scale, geo.pad_x, geo.pad_y) == (2.0, pad_x, pad_y)
    inside = np.zeros((8, 8), bool)
    inside[pad_y : pad_y + 4, pad_x : pad_x + 8] = True
    assert (canvas[inside] == 200).all()
    assert (canvas[~inside] == pad).all()


@pytest.mark.parametrize("centred", [False, True])
@pytest.mark.parametrize("hw", [(388, 690), (1080, 1920), (600, 300), (100, 100)])
def test_letterbox_round_trip_maps_boxes_back(centred: bool, hw: tuple[int, int]) -> None:
    _, geo = Letterbox(416, 416, centred=centred, pad_value=114).fit(np.zeros((*hw, 3), np.uint8))
    h, w = hw
    assert geo.scale == pytest.approx(min(416 / w, 416 / h))
    source = boxes([0, 0, w, h], [w * 0.25, h * 0.5, w * 0.5, h * 0.75])
    np.testing.assert_allclose(geo.to_source(geo.to_input(source)), source, atol=1e-3)
    # the whole frame lands inside the canvas, centred or at the top-left
    x1, y1, x2, y2 = geo.to_input(source)[0]
    assert x1 >= 0 and y1 >= 0 and x2 <= 416 + 0.5 and y2 <= 416 + 0.5
    if centred:
        assert abs(x1 - (416 - x2)) <= 1 and abs(y1 - (416 - y2)) <= 1
    else:
        assert (x1, y1) == (0, 0)


def test_to_source_clips_to_the_frame() -> None:
    geo = LetterboxGeometry(scale=0.5, pad_x=10, pad_y=20, source_width=100, source_height=50)
    np.testing.assert_allclose(geo.to_source(boxes([0, 0, 200, 200])), [[0, 0, 100, 50]])
    np.testing.assert_allclose(geo.to_source(boxes([20, 30, 40, 40])), [[20, 20, 60, 40]])


# --- YOLOX -------------------------------------------------------------------------------


def test_grid_points_layout() -> None:
    cells, steps = grid_points(416)
    assert cells.shape == (3549, 2) and steps.shape == (3549,)
    assert steps[0] == 8 and steps[2704] == 16 and steps[-1] == 32
    np.testing.assert_array_equal(cells[1], [1, 0])  # row-major: column moves first
    np.testing.assert_array_equal(cells[52], [0, 1])
    np.testing.assert_array_equal(cells[2704 + 26 * 5 + 3], [3, 5])
    np.testing.assert_array_equal(cells[-1], [12, 12])


def yolox_raw(row: int, values: list[float], num_classes: int = 80) -> F32:
    raw = np.zeros((3549, 5 + num_classes), np.float32)
    raw[:, 2:4] = np.log(4.0)  # harmless 32-px boxes everywhere, all with score 0
    raw[row, : len(values)] = values
    return raw


def test_decode_yolox_one_known_box() -> None:
    row = 2704 + 26 * 5 + 3  # stride 16, column 3, row 5
    raw = yolox_raw(row, [0.5, 0.25, np.log(2.0), np.log(3.0), 0.9, 0.8, 0.1])
    xyxy, scores = decode_yolox(raw, 416)
    # centre ((3 + 0.5) * 16, (5 + 0.25) * 16) = (56, 84); size 32 x 48
    np.testing.assert_allclose(xyxy[row], [40, 60, 72, 108], atol=1e-4)
    np.testing.assert_allclose(scores[row, :2], [0.72, 0.09], atol=1e-6)
    assert np.count_nonzero(scores) == 2


def test_decode_yolox_rejects_a_wrong_layout() -> None:
    with pytest.raises(ModelError, match="3549"):
        decode_yolox(np.zeros((100, 85), np.float32), 416)


def test_filter_keeps_wanted_classes_maps_back_and_drops_small_boxes() -> None:
    xyxy = boxes(
        [10, 10, 50, 90],  # person 0.9
        [12, 12, 52, 88],  # same person 0.8: suppressed by NMS
        [100, 100, 140, 180],  # car (class 2) 0.95: not asked for
        [200, 200, 203, 260],  # person 0.9 but 3 px wide in the frame
        [300, 300, 340, 380],  # person 0.29: under the threshold
    )
    scores = np.zeros((5, 80), np.float32)
    scores[[0, 1, 3, 4], 0] = [0.9, 0.8, 0.9, 0.29]
    scores[2, 2] = 0.95
    geo = LetterboxGeometry(scale=0.5, pad_x=0, pad_y=0, source_width=1000, source_height=1000)
    dets = DetectionFilter(0.3, 0.45, (0,), 8).apply(xyxy, scores, geo)
    np.testing.assert_allclose(dets.xyxy, [[20, 20, 100, 180]])
    np.testing.assert_allclose(dets.confidence, [0.9])
    np.testing.assert_array_equal(dets.class_id, [0])
    both = DetectionFilter(0.3, 0.45, (0, 2), 8).apply(xyxy, scores, geo)
    assert sorted(both.class_id.tolist()) == [0, 2]


def test_filter_on_nothing_is_empty() -> None:
    empty = DetectionFilter(0.3, 0.45, (0,), 8).apply(
        np.zeros((0, 4), np.float32), np.zeros((0, 80), np.float32), IDENTITY
    )
    assert len(empty) == 0


# --- NanoDet -----------------------------------------------------------------------------


def test_gfl_distance_is_the_softmax_expectation() -> None:
    logits = np.full((1, 4 * BINS), -50.0, np.float32)
    logits[0, 2] = 50.0  # left: all mass on bin 2
    logits[0, BINS + 0] = logits[0, BINS + 4] = 10.0  # top: half on 0, half on 4
    logits[0, 2 * BINS : 3 * BINS] = 0.0  # right: uniform -> 3.5
    logits[0, 3 * BINS + 7] = 50.0  # bottom: bin 7
    np.testing.assert_allclose(gfl_distances(logits), [[2.0, 2.0, 3.5, 7.0]], atol=1e-4)


def test_decode_nanodet_one_known_box() -> None:
    box_maps = np.full((3549, 4 * BINS), -50.0, np.float32)
    box_maps[:, 0::BINS] = 50.0  # every distance 0 bins
    row = 2704 + 26 * 5 + 3  # stride 16, column 3, row 5 -> point (48 + 7.5, 80 + 7.5)
    box_maps[row] = -50.0
    for side, bins in enumerate((1, 2, 3, 4)):
        box_maps[row, side * BINS + bins] = 50.0
    xyxy = decode_nanodet(box_maps, 416)
    np.testing.assert_allclose(xyxy[row], [55.5 - 16, 87.5 - 32, 55.5 + 48, 87.5 + 64])


def test_split_outputs_orders_by_stride_whatever_the_output_order() -> None:
    sizes = (2704, 676, 169)
    cls = [np.full((1, n, 80), i, np.float32) for i, n in enumerate(sizes)]
    box = [np.full((1, n, 32), 10 + i, np.float32) for i, n in enumerate(sizes)]
    scores, maps = split_outputs([box[2], cls[1], box[0], cls[2], cls[0], box[1]])
    assert scores.shape == (3549, 80) and maps.shape == (3549, 32)
    assert (scores[0, 0], scores[2704, 0], scores[-1, 0]) == (0, 1, 2)
    assert (maps[0, 0], maps[2704, 0], maps[-1, 0]) == (10, 11, 12)
    with pytest.raises(ModelError):
        split_outputs(cls)


# --- fire / smoke ------------------------------------------------------------------------


def yolov8_raw(columns: list[list[float]], n: int = 10) -> F32:
    raw = np.zeros((6, n), np.float32)
    for i, col in enumerate(columns):
        raw[:, i] = col
    return raw


def test_decode_yolov8_centre_size_to_corners() -> None:
    xyxy, scores = decode_yolov8(yolov8_raw([[100, 50, 40, 20, 0.1, 0.7]]))
    np.testing.assert_allclose(xyxy[0], [80, 40, 120, 60])
    np.testing.assert_allclose(scores[0], [0.1, 0.7])
    assert scores.shape == (10, 2)
    with pytest.raises(ModelError):
        decode_yolov8(np.zeros((4, 10), np.float32))


def test_each_class_has_its_own_threshold() -> None:
    xyxy, scores = decode_yolov8(
        yolov8_raw(
            [
                [100, 100, 40, 40, 0.80, 0.60],  # smoke 0.80 and fire 0.60: both kept
                [300, 300, 40, 40, 0.70, 0.10],  # smoke 0.70: under the smoke threshold
                [200, 200, 40, 40, 0.10, 0.49],  # fire 0.49: just under
                [250, 250, 40, 40, 0.00, 0.50],  # fire exactly at the threshold: kept
            ]
        )
    )
    dets = per_class_candidates(xyxy, scores, {FIRE_CLASS: 0.5, SMOKE_CLASS: 0.75})
    got = sorted(
        (int(c), round(float(p), 4)) for c, p in zip(dets.class_id, dets.confidence, strict=True)
    )
    assert got == [(SMOKE_CLASS, 0.8), (FIRE_CLASS, 0.5), (FIRE_CLASS, 0.6)]
    with pytest.raises(ModelError, match="no class 5"):
        per_class_candidates(xyxy, scores, {5: 0.5})


# --- the real models' layout and the detectors' own post-processing ---------------------


def _model(models_dir: Path, name: str) -> OnnxModel:
    return OnnxModel(model_path(load_manifest().get(name), models_dir))


def test_detectors_postprocess_synthetic_outputs(models_dir: Path) -> None:
    geo = LetterboxGeometry(scale=0.5, pad_x=0, pad_y=8, source_width=832, source_height=800)
    row = 2704 + 26 * 5 + 3
    yolox = YoloxPersonDetector(_model(models_dir, "yolox_nano"))
    raw = yolox_raw(row, [0.5, 0.25, np.log(2.0), np.log(3.0), 0.9, 0.8])
    dets = yolox.postprocess([raw[None]], geo)
    np.testing.assert_allclose(dets.xyxy, [[80, 104, 144, 200]], atol=1e-3)

    fire = FireSmokeDetector(_model(models_dir, "fire_smoke"), 0.5, 0.75)
    dets = fire.postprocess([yolov8_raw([[100, 58, 40, 20, 0.1, 0.7]], 3549)[None]], geo)
    np.testing.assert_allclose(dets.xyxy, [[160, 80, 240, 120]])
    np.testing.assert_array_equal(dets.class_id, [FIRE_CLASS])


def test_real_models_have_the_documented_layout(models_dir: Path) -> None:
    frame = np.full((388, 690, 3), 90, np.uint8)
    yolox = YoloxPersonDetector(_model(models_dir, "yolox_nano"))
    tensor, geo = yolox.preprocess(frame)
    assert tensor.shape == (1, 3, 416, 416) and geo.pad_x == 0 and geo.pad_y == 0
    assert yolox.model.run(tensor)[0].shape == (1, 3549, 85)

    nanodet = NanoDetPersonDetector(_model(models_dir, "nanodet"))
    tensor, geo = nanodet.preprocess(frame)
    assert geo.pad_y > 0 and tensor[0, :, 0, 0] == pytest.approx(
        -np.array([103.53, 116.28, 123.675]) / np.array([57.375, 57.12, 58.395]), rel=1e-5
    )
    scores, maps = split_outputs(nanodet.model.run(tensor))
    assert scores.shape == (3549, 80) and maps.shape == (3549, 32)
    assert scores.min() >= 0 and scores.max() <= 1  # sigmoid is inside the graph

    fire = FireSmokeDetector(_model(models_dir, "fire_smoke"), 0.5, 0.75)
    tensor, geo = fire.preprocess(frame)
    assert tensor.max() <= 1.0 and tensor[0, :, 0, 0] == pytest.approx([114 / 255] * 3)
    assert fire.model.run(tensor)[0].shape == (1, 6, 3549)
    assert len(fire.detect(frame)) == 0  # a flat grey frame holds no fire


def test_perception_rejects_unknown_tasks_and_models(models_dir: Path) -> None:
    from ringwatch.edge.config import Thresholds
    from ringwatch.models.perception import Perception
    from ringwatch.models.runtime import RuntimeOptions

    with pytest.raises(ConfigError, match="unknown task"):
        Perception.from_models_dir(models_dir, RuntimeOptions(), Thresholds(), {"cars"})
    with pytest.raises(ConfigError, match="person model"):
        Perception.from_models_dir(
            models_dir, RuntimeOptions(), Thresholds(), {"persons"}, person_model="yunet"
        )
    only_fire = Perception.from_models_dir(models_dir, RuntimeOptions(), Thresholds(), {"fire"})
    found = only_fire.analyze(np.zeros((100, 120, 3), np.uint8))
    assert len(found.faces) == len(found.persons) == len(found.fire) == 0
    assert only_fire.faces is None and only_fire.persons is None and only_fire.fire is not None
