"""A 0..1 face quality score used to pick the best shot of a track.

Three factors, each in 0..1, combined by geometric mean so any one bad factor pulls the
score down:

- size: the short side of the box (SFace sees 112 px; a 24 px face carries little);
- sharpness: variance of the Laplacian of the grey face resized to a fixed 64x64, so the
  figure does not depend on the face's size in pixels;
- pose: frontalness from the five landmarks, after undoing the roll of the eye line (roll
  is harmless, alignment removes it): left/right symmetry of the nose between the eyes
  (yaw) and the nose's height between the eye line and the mouth line (pitch).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

SIZE_SCALE_PX = 48.0  # size factor = 1 - exp(-short_side / 48): 0.63 at 48 px, 0.86 at 96 px
SHARPNESS_HALF = 150.0  # Laplacian variance at which the sharpness factor is 0.5
SHARPNESS_SIDE = 64
FRONTAL_NOSE_HEIGHT = 0.5  # nose between eye line (0) and mouth line (1) on a frontal face

F32 = npt.NDArray[np.float32]


def face_quality(bgr: npt.NDArray[np.uint8], xyxy: F32, landmarks: F32) -> float:
    """Quality in 0..1 of the face at ``xyxy`` (4,) with ``landmarks`` (5,2) in ``bgr``."""
    factors = (size_factor(xyxy), sharpness_factor(bgr, xyxy), pose_factor(landmarks))
    return float(np.prod(factors) ** (1.0 / 3.0))


def size_factor(xyxy: F32) -> float:
    short = max(0.0, float(min(xyxy[2] - xyxy[0], xyxy[3] - xyxy[1])))
    return float(1.0 - np.exp(-short / SIZE_SCALE_PX))


def laplacian_variance(bgr: npt.NDArray[np.uint8], xyxy: F32) -> float:
    """Variance of the Laplacian of the face crop, grey, resized to 64x64 (0 if empty)."""
    import cv2

    h, w = bgr.shape[:2]
    x1, y1 = max(0, int(xyxy[0])), max(0, int(xyxy[1]))
    x2, y2 = min(w, int(np.ceil(xyxy[2]))), min(h, int(np.ceil(xyxy[3])))
    if x2 - x1 < 2 or y2 - y1 < 2:
        return 0.0
    grey = cv2.cvtColor(bgr[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY)
    side = (SHARPNESS_SIDE, SHARPNESS_SIDE)
    grey = cv2.resize(grey, side, interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def sharpness_factor(bgr: npt.NDArray[np.uint8], xyxy: F32) -> float:
    var = laplacian_variance(bgr, xyxy)
    return var / (var + SHARPNESS_HALF)


def pose_factor(landmarks: F32) -> float:
    """1 for a frontal face, towards 0 as it turns (yaw) or tilts up/down (pitch)."""
    points = _unroll(landmarks.astype(np.float64))
    right_eye, left_eye, nose = points[0], points[1], points[2]
    to_right, to_left = nose[0] - right_eye[0], left_eye[0] - nose[0]
    if to_right <= 0 or to_left <= 0:  # nose outside the eyes: a profile face
        return 0.0
    yaw = min(to_right, to_left) / max(to_right, to_left)
    eye_y = (right_eye[1] + left_eye[1]) / 2
    mouth_y = (points[3, 1] + points[4, 1]) / 2
    if mouth_y - eye_y <= 0:
        return 0.0
    height = (nose[1] - eye_y) / (mouth_y - eye_y)
    pitch = 1.0 - min(1.0, abs(height - FRONTAL_NOSE_HEIGHT) / FRONTAL_NOSE_HEIGHT)
    return float(yaw * pitch)


def _unroll(points: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Rotate the landmarks so the eye line is horizontal (right eye on the image left)."""
    dx, dy = points[1] - points[0]
    angle = np.arctan2(dy, dx)
    c, s = np.cos(-angle), np.sin(-angle)
    rotation = np.array([[c, -s], [s, c]])
    rotated: npt.NDArray[np.float64] = (points - points[0]) @ rotation.T
    return rotated
