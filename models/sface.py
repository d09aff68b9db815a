"""SFace (2021dec) face embeddings through onnxruntime, and the alignment it depends on.

Contract (MODELS.md): input ``data`` [1,3,112,112], the face warped by a least-squares
similarity transform (Umeyama) of the five YuNet landmarks onto the ArcFace 112x112
template; RGB, 0-255 float, no mean/std (normalisation is inside the graph). Output ``fc1``
[1,128], L2-normalised here and compared by cosine. Without correct alignment accuracy
collapses, so the alignment maths is tested on its own.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ringwatch.models.detections import Detections
from ringwatch.models.runtime import OnnxModel

ALIGNED_SIZE = 112
EMBEDDING_DIM = 128
FLIP_TTA = False  # embed the aligned face and its mirror, average: measured, no gain
# ArcFace 112x112 template, in YuNet landmark order: right eye, left eye, nose tip,
# right mouth corner, left mouth corner (image left first).
ARCFACE_TEMPLATE: npt.NDArray[np.float32] = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    np.float32,
)

F32 = npt.NDArray[np.float32]


def umeyama(src: F32, dst: F32) -> npt.NDArray[np.float64]:
    """The (2,3) similarity (rotation, uniform scale, translation) that maps ``src`` (N,2)
    onto ``dst`` (N,2) with least squared error (Umeyama 1991, no reflection)."""
    src64, dst64 = src.astype(np.float64), dst.astype(np.float64)
    src_mean, dst_mean = src64.mean(axis=0), dst64.mean(axis=0)
    src_c, dst_c = src64 - src_mean, dst64 - dst_mean
    src_var = float((src_c**2).sum(axis=1).mean())
    if src_var <= 1e-12:
        raise ValueError("umeyama: the source points all coincide")
    u, sv, vt = np.linalg.svd(dst_c.T @ src_c / len(src64))
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rotation = u @ np.diag(d) @ vt
    scale = float(sv @ d) / src_var
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def align_face(
    bgr: npt.NDArray[np.uint8], landmarks: F32, template: F32 = ARCFACE_TEMPLATE
) -> npt.NDArray[np.uint8]:
    """The (112,112,3) BGR face warped so its landmarks (5,2) sit on ``template`` (the
    ArcFace one; tools/align_jitter.py tries moved copies)."""
    import cv2

    matrix = umeyama(np.asarray(landmarks, np.float32).reshape(5, 2), template)
    size = (ALIGNED_SIZE, ALIGNED_SIZE)
    aligned = cv2.warpAffine(
        bgr, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    return np.asarray(aligned, dtype=np.uint8)


def to_tensor(aligned_bgr: npt.NDArray[np.uint8]) -> F32:
    """``[1,3,112,112]`` RGB 0-255 float32 from an aligned BGR face."""
    tensor: F32 = aligned_bgr[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32)
    return tensor


def l2_normalise(vectors: F32) -> F32:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    out: F32 = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
    return out


def cosine(a: F32, b: F32) -> F32:
    """Cosine similarity: (N,D) x (M,D) -> (N,M); a vector on either side drops that axis
    (two vectors give a 0-d array)."""
    a2, b2 = l2_normalise(np.atleast_2d(a)), l2_normalise(np.atleast_2d(b))
    sims: F32 = (a2 @ b2.T).astype(np.float32)
    if a.ndim == 1:
        sims = sims[0]
    if b.ndim == 1:
        sims = sims[..., 0]
    return sims


class FaceEmbedder:
    """``embed(bgr, faces) -> faces`` with an ``embeddings (N,128)`` column, L2-normalised.

    ``flip=True`` is test-time augmentation: the aligned face and its mirror image are both
    embedded and the two unit vectors averaged. It costs a second SFace run per face and
    measured no better on held-out identities (docs/faces.md), so the default,
    :data:`FLIP_TTA`, is off."""

    def __init__(self, model: OnnxModel, flip: bool = FLIP_TTA) -> None:
        self.model = model
        self.flip = flip

    def embed(self, bgr: npt.NDArray[np.uint8], faces: Detections) -> Detections:
        plain, mirrored = self.embed_views(bgr, faces, mirror=self.flip)
        vectors = plain + mirrored if self.flip else plain
        return faces.with_columns(embeddings=l2_normalise(vectors))

    def embed_views(
        self, bgr: npt.NDArray[np.uint8], faces: Detections, mirror: bool = True
    ) -> tuple[F32, F32]:
        """(plain, mirrored) L2-normalised (N,128) embeddings of the faces; the mirrored
        ones are zeros unless ``mirror`` (the evaluations use both views at once)."""
        if faces.landmarks is None:
            raise ValueError("FaceEmbedder.embed: the faces carry no landmarks to align with")
        plain = np.zeros((len(faces), EMBEDDING_DIM), np.float32)
        mirrored = np.zeros_like(plain)
        for i, landmarks in enumerate(faces.landmarks):
            aligned = align_face(bgr, landmarks)
            plain[i] = l2_normalise(self.embed_aligned(aligned))
            if mirror:
                mirrored[i] = l2_normalise(
                    self.embed_aligned(np.ascontiguousarray(aligned[:, ::-1]))
                )
        return plain, mirrored

    def embed_aligned(self, aligned_bgr: npt.NDArray[np.uint8]) -> F32:
        """The raw (128,) SFace output for one aligned (112,112,3) BGR face."""
        output = self.model.run(to_tensor(aligned_bgr))[0]
        vector: F32 = output.reshape(-1).astype(np.float32)
        return vector
