"""Non-maximum suppression in numpy (class-wise by offsetting boxes per class)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ringwatch.models.detections import Detections


def box_areas(boxes: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The area of each xyxy box (0 for an empty one)."""
    return np.asarray(np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1), np.float32)


def _intersections(
    a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    return np.asarray(np.prod(np.clip(bottom_right - top_left, 0, None), axis=2), np.float32)


def iou_matrix(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """IoU matrix ``(len(a), len(b))`` of two sets of xyxy boxes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    inter = _intersections(a, b)
    union = box_areas(a)[:, None] + box_areas(b)[None, :] - inter
    iou: npt.NDArray[np.float32] = np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(
        np.float32
    )
    return iou


def ios_matrix(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``(len(a), len(b))``: the share of each box of ``a`` that lies inside each of ``b``."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    share = _intersections(a, b) / np.maximum(box_areas(a), 1e-9)[:, None]
    return np.asarray(share, np.float32)


def box_iou(
    box: npt.NDArray[np.float32], boxes: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """IoU of one ``(4,)`` xyxy box against ``(N,4)`` boxes."""
    row: npt.NDArray[np.float32] = iou_matrix(box[None, :], boxes)[0]
    return row


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
