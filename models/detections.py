"""The one typed value that flows through every vision stage.

A frozen dataclass of numpy columns: ``xyxy (N,4) float32`` in pixels, ``confidence (N,)
float32``, ``class_id (N,) int32``, optional ``tracker_id (N,) int64``, and optional named
columns where a model gives more: face ``landmarks (N,5,2) float32``, ``quality (N,)
float32``, ``embeddings (N,D) float32``. Stages return a new value (``dataclasses.replace``
or indexing); nothing mutates one in place (the arrays are made read-only).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]


def _frozen(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array


@dataclass(frozen=True, slots=True, eq=False)
class Detections:
    """N detections as aligned numpy columns; see the module docstring for the layout."""

    xyxy: F32
    confidence: F32
    class_id: I32
    tracker_id: I64 | None = None
    landmarks: F32 | None = None
    quality: F32 | None = None
    embeddings: F32 | None = None

    def __post_init__(self) -> None:
        n = self._check("xyxy", self.xyxy, np.float32, (None, 4))
        self._check("confidence", self.confidence, np.float32, (n,))
        self._check("class_id", self.class_id, np.int32, (n,))
        if self.tracker_id is not None:
            self._check("tracker_id", self.tracker_id, np.int64, (n,))
        if self.landmarks is not None:
            self._check("landmarks", self.landmarks, np.float32, (n, 5, 2))
        if self.quality is not None:
            self._check("quality", self.quality, np.float32, (n,))
        if self.embeddings is not None:
            self._check("embeddings", self.embeddings, np.float32, (n, None))

    def _check(
        self, name: str, array: npt.NDArray[Any], dtype: type, shape: tuple[int | None, ...]
    ) -> int:
        if not isinstance(array, np.ndarray):
            raise TypeError(
                f"Detections.{name}: expected a numpy array, got {type(array).__name__}"
            )
        if array.dtype != dtype:
            raise TypeError(
                f"Detections.{name}: expected dtype {np.dtype(dtype)}, got {array.dtype}"
            )
        ok = array.ndim == len(shape) and all(
            want is None or want == got for want, got in zip(shape, array.shape, strict=True)
        )
        if not ok:
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"Detections.{name}: expected shape {want}, got {array.shape}")
        object.__setattr__(self, name, _frozen(array))
        return int(array.shape[0])

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            confidence=np.zeros((0,), np.float32),
            class_id=np.zeros((0,), np.int32),
        )

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def __getitem__(self, index: Mask | I64 | slice | int) -> Detections:
        """Select rows by boolean mask, index array, slice or a single int (kept 2-D)."""
        if isinstance(index, int | np.integer):
            index = np.array([index], dtype=np.int64)
        picked: dict[str, Any] = {
            f.name: (None if getattr(self, f.name) is None else getattr(self, f.name)[index])
            for f in fields(self)
        }
        return Detections(**picked)

    def with_columns(self, **columns: Any) -> Detections:
        """A new value with some columns replaced or added (validated again)."""
        return replace(self, **columns)

    @property
    def area(self) -> F32:
        w = np.clip(self.xyxy[:, 2] - self.xyxy[:, 0], 0, None)
        h = np.clip(self.xyxy[:, 3] - self.xyxy[:, 1], 0, None)
        area: F32 = (w * h).astype(np.float32)
        return area

    def anchors(self, where: str = "bottom_center") -> F32:
        """Anchor points (N,2): ``bottom_center`` for persons, ``center`` for faces."""
        x1, y1, x2, y2 = self.xyxy.T
        cx = (x1 + x2) * np.float32(0.5)
        if where == "center":
            cy = (y1 + y2) * np.float32(0.5)
        elif where == "bottom_center":
            cy = y2
        else:
            raise ValueError(f"anchor {where!r}: expected 'center' or 'bottom_center'")
        points: F32 = np.stack([cx, cy], axis=1).astype(np.float32)
        return points
