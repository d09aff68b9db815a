"""YuNet (2023mar) face detection through onnxruntime: letterbox, per-stride decode, NMS.

Contract (MODELS.md): input ``input`` [1,3,640,640] BGR 0-255 with no normalisation; the
image is resized by its long side and padded bottom/right, so mapping back to the original
image is one division by the scale. Outputs ``cls_s``, ``obj_s`` [1,N,1], ``bbox_s`` [1,N,4]
and ``kps_s`` [1,N,10] for strides s = 8, 16, 32, N = (640/s)^2, in row-major grid order.
Landmarks: right eye, left eye, nose tip, right mouth corner, left mouth corner (the
person's right is the image left).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ringwatch.models.detections import Detections
from ringwatch.models.face_quality import face_quality
from ringwatch.models.nms import nms
from ringwatch.models.runtime import OnnxModel

INPUT_SIZE = 640
STRIDES = (8, 16, 32)

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Letterbox:
    """Resize by the long side onto a square canvas, padding bottom/right."""

    scale: float
    width: int  # resized width, before padding
    height: int

    @classmethod
    def fit(cls, image_hw: tuple[int, int], size: int = INPUT_SIZE) -> Letterbox:
        h, w = image_hw
        if h <= 0 or w <= 0:
            raise ValueError(f"image size must be positive, got {w}x{h}")
        scale = size / max(h, w)
        return cls(scale, max(1, min(size, round(w * scale))), max(1, min(size, round(h * scale))))

    def to_original(self, points: F32) -> F32:
        """Map pixel coordinates on the model canvas back to the original image."""
        out: F32 = (points / np.float32(self.scale)).astype(np.float32)
        return out


def preprocess(bgr: npt.NDArray[np.uint8], size: int = INPUT_SIZE) -> tuple[F32, Letterbox]:
    """The ``[1,3,size,size]`` float32 tensor and the letterbox used to make it."""
    import cv2

    if bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ValueError(f"expected an (H,W,3) BGR image, got shape {bgr.shape}")
    box = Letterbox.fit((bgr.shape[0], bgr.shape[1]), size)
    canvas = np.zeros((size, size, 3), np.uint8)
    interpolation = cv2.INTER_AREA if box.scale < 1 else cv2.INTER_LINEAR
    canvas[: box.height, : box.width] = cv2.resize(
        bgr, (box.width, box.height), interpolation=interpolation
    )
    tensor: F32 = canvas.transpose(2, 0, 1)[None].astype(np.float32)
    return tensor, box


def decode(
    outputs: Mapping[str, F32], score_threshold: float, size: int = INPUT_SIZE
) -> Detections:
    """Boxes, scores and landmarks on the model canvas for every cell above the threshold."""
    parts = [_decode_stride(outputs, s, size, score_threshold) for s in STRIDES]
    xyxy = np.concatenate([p[0] for p in parts]).astype(np.float32)
    scores = np.concatenate([p[1] for p in parts]).astype(np.float32)
    landmarks = np.concatenate([p[2] for p in parts]).astype(np.float32)
    return Detections(
        xyxy=xyxy,
        confidence=scores,
        class_id=np.zeros(len(scores), np.int32),
        landmarks=landmarks,
    )


def _decode_stride(
    outputs: Mapping[str, F32], stride: int, size: int, score_threshold: float
) -> tuple[F32, F32, F32]:
    cols = size // stride
    cls = np.clip(outputs[f"cls_{stride}"].reshape(-1), 0.0, 1.0)
    obj = np.clip(outputs[f"obj_{stride}"].reshape(-1), 0.0, 1.0)
    score = np.sqrt(cls * obj)
    keep = np.flatnonzero(score >= score_threshold)
    grid = np.stack([keep % cols, keep // cols], axis=1).astype(np.float32)
    bbox = outputs[f"bbox_{stride}"].reshape(-1, 4)[keep]
    kps = outputs[f"kps_{stride}"].reshape(-1, 5, 2)[keep]
    centre = (grid + bbox[:, :2]) * stride
    wh = np.exp(bbox[:, 2:]) * stride
    xyxy = np.concatenate([centre - wh / 2, centre + wh / 2], axis=1)
    landmarks = (grid[:, None, :] + kps) * stride
    return xyxy.astype(np.float32), score[keep].astype(np.float32), landmarks.astype(np.float32)


class FaceDetector:
    """``detect(bgr) -> Detections`` with landmarks ``(N,5,2)`` and quality ``(N,)``."""

    def __init__(
        self,
        model: OnnxModel,
        score_threshold: float = 0.6,
        nms_iou: float = 0.3,
        top_k: int = 50,
        min_size: int = 10,
    ) -> None:
        self.model = model
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.top_k = top_k
        self.min_size = min_size

    def detect(self, bgr: npt.NDArray[np.uint8]) -> Detections:
        """Faces in pixels of ``bgr``, highest score first."""
        tensor, box = preprocess(bgr)
        outputs = dict(zip(self.model.output_names, self.model.run(tensor), strict=True))
        raw = decode(outputs, self.score_threshold)
        faces = nms(raw, self.nms_iou, class_wise=False)[: self.top_k]
        return self._finish(bgr, faces, box)

    def _finish(self, bgr: npt.NDArray[np.uint8], faces: Detections, box: Letterbox) -> Detections:
        h, w = bgr.shape[:2]
        xyxy = box.to_original(faces.xyxy)
        xyxy = np.clip(xyxy, 0, [w, h, w, h]).astype(np.float32)
        assert faces.landmarks is not None
        landmarks = box.to_original(faces.landmarks)
        big = np.minimum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]) >= self.min_size
        xyxy, landmarks = xyxy[big], landmarks[big]
        quality = np.array(
            [face_quality(bgr, b, lm) for b, lm in zip(xyxy, landmarks, strict=True)], np.float32
        ).reshape(-1)
        return faces[big].with_columns(xyxy=xyxy, landmarks=landmarks, quality=quality)
