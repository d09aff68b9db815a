from __future__ import annotations

import numpy as np
import pytest

from ringwatch.models.detections import Detections


def two() -> Detections:
    return Detections(
        xyxy=np.array([[0, 0, 10, 20], [5, 5, 7, 9]], np.float32),
        confidence=np.array([0.9, 0.4], np.float32),
        class_id=np.array([0, 0], np.int32),
        landmarks=np.zeros((2, 5, 2), np.float32),
    )


def test_len_index_and_empty() -> None:
    dets = two()
    assert len(dets) == 2 and len(Detections.empty()) == 0
    strong = dets[dets.confidence > 0.5]
    assert len(strong) == 1 and strong.landmarks is not None and strong.landmarks.shape == (1, 5, 2)
    assert float(dets[1].confidence[0]) == pytest.approx(0.4)
    np.testing.assert_allclose(dets.area, [200, 8])
    np.testing.assert_allclose(dets.anchors(), [[5, 20], [6, 9]])
    np.testing.assert_allclose(dets.anchors("center"), [[5, 10], [6, 7]])


def test_values_are_frozen() -> None:
    dets = two()
    with pytest.raises(ValueError, match="read-only"):
        dets.xyxy[0, 0] = 3
    changed = dets.with_columns(tracker_id=np.array([1, 2], np.int64))
    assert dets.tracker_id is None and changed.tracker_id is not None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"xyxy": np.zeros((2, 3), np.float32)}, r"xyxy: expected shape \(\*, 4\), got \(2, 3\)"),
        ({"confidence": np.zeros((3,), np.float32)}, r"confidence: expected shape \(2\), got"),
        ({"class_id": np.zeros((2,), np.int64)}, "class_id: expected dtype int32, got int64"),
        ({"landmarks": np.zeros((2, 4, 2), np.float32)}, r"landmarks: expected shape \(2, 5, 2\)"),
        ({"embeddings": np.zeros((1, 128), np.float32)}, r"embeddings: expected shape \(2, \*\)"),
        ({"quality": [0.1, 0.2]}, "quality: expected a numpy array, got list"),
    ],
)
def test_shape_and_dtype_checks_say_expected_vs_actual(
    kwargs: dict[str, object], message: str
) -> None:
    base: dict[str, object] = {
        "xyxy": np.zeros((2, 4), np.float32),
        "confidence": np.zeros((2,), np.float32),
        "class_id": np.zeros((2,), np.int32),
    }
    with pytest.raises((ValueError, TypeError), match=message):
        Detections(**{**base, **kwargs})  # type: ignore[arg-type]
