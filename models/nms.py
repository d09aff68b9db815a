"""Non-maximum suppression in numpy (class-wise by offsetting boxes per class)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ringwatch.models.detections import Detections


def box_iou(
    box: npt.NDArray[np.float32], boxes: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """IoU of one ``(4,)`` xyxy box against ``(N,4)`` boxes."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (box[2] - box[0]) * (box[3] - box[1])
    area_b = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    iou: npt.NDArray[np.float32] = (inter / np.maximum(area_a + area_b - inter, 1e-9)).astype(
        np.float32
    )
    return iou


def nms_indices(
    xyxy: npt.NDArray[np.float32], scores: npt.NDArray[np.float32], iou_threshold: float
) -> npt.NDArray[np.int64]:
    """Indices kept by greedy NMS, highest score first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        order = rest[box_iou(xyxy[best], xyxy[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def nms(dets: Detections, iou_threshold: float, class_wise: bool = True) -> Detections:
    """Detections left after NMS; with ``class_wise`` boxes of different classes never
    suppress each other."""
    if len(dets) == 0:
        return dets
    xyxy = dets.xyxy
    if class_wise:
        offset = (dets.class_id.astype(np.float32) * (float(xyxy.max()) + 1.0))[:, None]
        xyxy = (xyxy + offset).astype(np.float32)
    return dets[nms_indices(xyxy, dets.confidence, iou_threshold)]
