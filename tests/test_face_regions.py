"""Faces only in person boxes: tiles map back exactly (same faces as a whole-frame run on
real photos), nobody in view costs no run, and the packing keeps tiles apart."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from ringwatch.models.detections import Detections
from ringwatch.models.face_regions import (
    GAP,
    FitFaceDetector,
    RegionFaceDetector,
    flexible_model,
    merge_overlapping,
    pack,
    upper_regions,
)
from ringwatch.models.install import model_path
from ringwatch.models.manifest import load_manifest
from ringwatch.models.nms import iou_matrix
from ringwatch.models.runtime import OnnxModel, RuntimeOptions
from ringwatch.models.yunet import FaceDetector


def boxes(*xyxy: tuple[float, float, float, float]) -> Detections:
    n = len(xyxy)
    return Detections(
        xyxy=np.array(xyxy, np.float32).reshape(n, 4),
        confidence=np.full(n, 0.9, np.float32),
        class_id=np.zeros(n, np.int32),
    )


def test_upper_regions_take_the_top_of_each_box_and_merge_overlaps() -> None:
    got = upper_regions(boxes((100, 100, 200, 300), (150, 120, 260, 320)), (640, 360), 0.5, 0.0)
    assert got.tolist() == [[100, 100, 260, 220]]  # two overlapping tops merged
    assert len(upper_regions(Detections.empty(), (640, 360), 0.5, 0.1)) == 0


def test_merge_keeps_disjoint_boxes() -> None:
    got = merge_overlapping(np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float32))
    assert len(got) == 2


def test_pack_keeps_a_gap_and_refuses_what_does_not_fit() -> None:
    sizes = [(100, 50), (100, 60), (200, 40)]
    spots = pack(sizes, 320)
    assert spots is not None
    rects = [(x, y, x + w, y + h) for (x, y), (w, h) in zip(spots, sizes, strict=True)]
    for i, a in enumerate(rects):
        assert a[2] <= 320 and a[3] <= 320
        for b in rects[i + 1 :]:
            apart_x = a[2] + GAP <= b[0] or b[2] + GAP <= a[0]
            apart_y = a[3] + GAP <= b[1] or b[3] + GAP <= a[1]
            assert apart_x or apart_y
    assert pack([(400, 10)], 320) is None


@pytest.fixture(scope="module")
def detectors(models_dir: Path) -> tuple[FaceDetector, RegionFaceDetector]:
    path = model_path(load_manifest().get("yunet"), models_dir)
    options = RuntimeOptions(threads=1)
    whole = FaceDetector(OnnxModel(path, options))
    regions = RegionFaceDetector(FaceDetector(OnnxModel(flexible_model(path), options)))
    return whole, regions


@pytest.mark.data
def test_region_faces_match_whole_frame_faces_on_a_real_photo(
    detectors: tuple[FaceDetector, RegionFaceDetector], data_dir: Path
) -> None:
    whole, regions = detectors
    image = cv2.imread(str(data_dir / "faces/watchlist_demo/two_people.jpg"))
    assert image is not None
    bgr = np.asarray(image, np.uint8)
    full = whole.detect(bgr)
    assert len(full) == 2
    # a person box under each face: face at the top, body below (as YOLOX gives)
    people = [
        (x1 - (x2 - x1), y1 - 0.3 * (y2 - y1), x2 + (x2 - x1), y2 + 3 * (y2 - y1))
        for x1, y1, x2, y2 in full.xyxy.tolist()
    ]
    found = regions.detect(bgr, boxes(*people))
    assert len(found) == 2 and found.landmarks is not None and found.quality is not None
    iou = iou_matrix(full.xyxy, found.xyxy)
    assert iou.max(axis=1).min() >= 0.9
    pair = iou.argmax(axis=1)
    assert full.landmarks is not None
    assert np.abs(found.landmarks[pair] - full.landmarks).max() <= 4.0
    assert regions.runs >= 1


def test_nobody_in_view_costs_no_run(
    detectors: tuple[FaceDetector, RegionFaceDetector],
) -> None:
    _, regions = detectors
    before = regions.runs
    assert len(regions.detect(np.zeros((360, 640, 3), np.uint8), Detections.empty())) == 0
    assert regions.runs == before


@pytest.mark.data
def test_a_fitted_canvas_finds_the_same_faces_as_the_square_one(
    models_dir: Path, data_dir: Path
) -> None:
    path = model_path(load_manifest().get("yunet"), models_dir)
    options = RuntimeOptions(threads=1)
    square = FaceDetector(OnnxModel(path, options))
    fitted = FitFaceDetector(OnnxModel(flexible_model(path), options))
    images = [cv2.imread(str(data_dir / "faces/watchlist_demo/two_people.jpg"))]
    capture = cv2.VideoCapture(str(data_dir / "faces/watchlist_demo/short_hamilton_clip.mp4"))
    for index in (15, 120, 240):
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        images.append(capture.read()[1])
    capture.release()
    compared = 0
    for image in images:
        assert image is not None
        bgr = np.asarray(image, np.uint8)
        a, b = square.detect(bgr), fitted.detect(bgr)
        assert len(a) == len(b)
        if len(a):
            assert iou_matrix(a.xyxy, b.xyxy).max(axis=1).min() >= 0.95
            compared += len(a)
    assert compared >= 4


@pytest.mark.data
def test_a_fitted_person_canvas_keeps_the_square_ones_persons(
    models_dir: Path, data_dir: Path
) -> None:
    from ringwatch.models.fit_yolox import FitYoloxDetector
    from ringwatch.models.yolox import YoloxPersonDetector

    path = model_path(load_manifest().get("yolox_nano"), models_dir)
    options = RuntimeOptions(threads=1)
    square = YoloxPersonDetector(OnnxModel(path, options))
    fitted = FitYoloxDetector(OnnxModel(flexible_model(path), options))
    capture = cv2.VideoCapture(str(data_dir / "video/towncentre_clip_example01.mp4"))
    found = kept = 0
    for _ in range(6):
        ok, image = capture.read()
        assert ok
        a, b = (
            square.detect(np.asarray(image, np.uint8)),
            fitted.detect(np.asarray(image, np.uint8)),
        )
        found += len(a)
        kept += int((iou_matrix(a.xyxy, b.xyxy).max(axis=1) >= 0.7).sum()) if len(b) else 0
    capture.release()
    assert found >= 60 and kept >= 0.95 * found
