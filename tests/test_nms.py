from __future__ import annotations

import numpy as np

from ringwatch.models.detections import Detections
from ringwatch.models.nms import box_iou, nms


def dets(boxes: list[list[float]], scores: list[float], classes: list[int]) -> Detections:
    return Detections(
        xyxy=np.array(boxes, np.float32),
        confidence=np.array(scores, np.float32),
        class_id=np.array(classes, np.int32),
    )


def test_iou() -> None:
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    np.testing.assert_allclose(box_iou(boxes[0], boxes), [1.0, 50 / 150, 0.0], rtol=1e-6)


def test_overlapping_same_class_suppressed_other_class_kept() -> None:
    d = dets(
        [[0, 0, 10, 10], [1, 0, 11, 10], [1, 0, 11, 10], [50, 50, 60, 60]],
        [0.8, 0.9, 0.7, 0.5],
        [0, 0, 1, 0],
    )
    kept = nms(d, 0.45)
    np.testing.assert_allclose(kept.confidence, [0.9, 0.7, 0.5])
    np.testing.assert_array_equal(kept.class_id, [0, 1, 0])
    assert len(nms(d, 0.45, class_wise=False)) == 2
    assert len(nms(Detections.empty(), 0.5)) == 0
