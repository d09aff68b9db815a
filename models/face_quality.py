"""A 0..1 face quality score used to pick the best shot of a track.

Three factors, each in 0..1, combined by geometric mean so any one bad factor pulls the
score down:

- size: the short side of the box (SFace sees 112 px; a 24 px face carries little);
- sharpness: variance of the Laplacian of the grey face resized to a fixed 64x64, so the
  figure does not depend on the face's size in pixels;
- pose: frontalness from the five landmarks, after undoing the roll of the eye line (roll
  is harmless, alignment removes it): cos^2 of the yaw estimated from the nose's offset
  from the middle of the eyes, times the nose's height between the eye line and the mouth
  line (pitch); floored at ``POSE_FLOOR`` so a turned face is a poor shot, not no shot.

The edge (best shot to publish) and the hub's enrolment use this one score; their
thresholds are ``PUBLISH_MIN_QUALITY`` and ``ENROL_MIN_QUALITY`` below, set in the site file
(``models.thresholds.face_quality``) and the hub settings (``enrol_min_quality``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

SIZE_SCALE_PX = 48.0  # size factor = 1 - exp(-short_side / 48): 0.63 at 48 px, 0.86 at 96 px
SHARPNESS_HALF = 150.0  # Laplacian variance at which the sharpness factor is 0.5
SHARPNESS_SIDE = 64
FRONTAL_NOSE_HEIGHT = 0.5  # nose between eye line (0) and mouth line (1) on a frontal face
# Depth of the nose tip in front of the eyes, in half eye distances (~22 mm over ~32 mm on
# an adult face): the nose moves NOSE_DEPTH * tan(yaw) half eye distances off centre.
NOSE_DEPTH = 0.7
POSE_FLOOR = 0.05  # pose factor of a full profile: low, but a shot all the same
# The edge publishes a face track's first shot at or above this, then better ones (an
# update) as they come; enrolment refuses photos whose face scores below ENROL_MIN_QUALITY.
# Defaults of the site file's ``models.thresholds.face_quality`` and the hub settings'
# ``enrol_min_quality`` (docs/faces.md).
PUBLISH_MIN_QUALITY = 0.45
ENROL_MIN_QUALITY = 0.5
ENROL_MIN_FACE_PX = 48  # short side of an enrolled face box (SFace sees 112 px)

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
    """1 for a frontal face, falling smoothly as it turns (yaw) or tilts up/down (pitch);
    never 0, so a turned face is a lower-quality shot rather than no shot."""
    yaw = np.radians(yaw_degrees(landmarks))
    pose = float(np.cos(yaw) ** 2) * pitch_factor(landmarks)
    return max(POSE_FLOOR, pose)


def yaw_degrees(landmarks: F32) -> float:
    """Estimated left/right turn of the head in degrees (0 frontal, 90 profile), from how
    far the nose tip sits off the middle of the eyes, in half eye distances. On a rigid
    head the offset is ``NOSE_DEPTH * tan(yaw)``; it keeps growing when the nose passes an
    eye (at about 55 degrees), where the old symmetry ratio fell to 0."""
    points = _unroll(landmarks.astype(np.float64))
    half_eyes = (points[1, 0] - points[0, 0]) / 2
    if half_eyes <= 1e-6:  # eyes on top of each other or swapped: a profile
        return 90.0
    offset = (points[2, 0] - (points[0, 0] + half_eyes)) / half_eyes
    return float(np.degrees(np.arctan(abs(offset) / NOSE_DEPTH)))


def pitch_factor(landmarks: F32) -> float:
    """1 when the nose sits half way between eye line and mouth line, falling linearly to
    ``POSE_FLOOR`` when it reaches either line."""
    points = _unroll(landmarks.astype(np.float64))
    eye_y = (points[0, 1] + points[1, 1]) / 2
    mouth_y = (points[3, 1] + points[4, 1]) / 2
    if mouth_y - eye_y <= 1e-6:
        return POSE_FLOOR
    height = (points[2, 1] - eye_y) / (mouth_y - eye_y)
    pitch = 1.0 - min(1.0, abs(height - FRONTAL_NOSE_HEIGHT) / FRONTAL_NOSE_HEIGHT)
    return max(POSE_FLOOR, float(pitch))


def _unroll(points: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Rotate the landmarks so the eye line is horizontal (right eye on the image left)."""
    dx, dy = points[1] - points[0]
    angle = np.arctan2(dy, dx)
    c, s = np.cos(-angle), np.sin(-angle)
    rotation = np.array([[c, -s], [s, c]])
    rotated: npt.NDArray[np.float64] = (points - points[0]) @ rotation.T
    return rotated
