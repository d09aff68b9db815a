"""Faces only where persons are: YuNet on one mosaic of the upper parts of person boxes.

A campus camera's faces are inside its person boxes, in their upper part. Instead of the
whole frame letterboxed onto YuNet's 640x640 canvas, :class:`RegionFaceDetector` cuts the
upper ``upper`` of every person box (with a ``margin``), merges crops that overlap, packs
them at full resolution (scaled down together only if they do not fit) into one square
canvas of the smallest multiple of 32 that holds them, with gaps between tiles, and runs
YuNet once on it: every person of the frame in one batched run, usually on a 160-416 px
canvas rather than 640, and no run at all when nobody is in view. Detections are mapped
back tile by tile; a face whose centre falls in no tile is dropped. When the crops would
need to be shrunk more than the whole frame would be, the whole frame is used instead.

This needs YuNet with free input height/width: :func:`flexible_model` writes that variant
of the installed (checksum-verified) file once, next to it; the weights are untouched.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from ringwatch.models.detections import Detections
from ringwatch.models.face_quality import face_quality
from ringwatch.models.nms import nms
from ringwatch.models.runtime import OnnxModel
from ringwatch.models.yunet import INPUT_SIZE, FaceDetector, Letterbox, decode

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]
ALIGN = 32  # YuNet's largest stride
GAP = 32  # empty pixels between tiles, so no face straddles two


def flexible_model(path: Path) -> Path:
    """A copy of the (YuNet, YOLOX) model at ``path`` whose input height and width are free
    (``<name>.flex.onnx`` beside it; made once, reused while newer than the source)."""
    out = path.with_name(path.stem + ".flex.onnx")
    if not os.access(path.parent, os.W_OK):  # a read-only models folder: use the cache
        out = Path.home() / ".cache" / "ringwatch" / "flex" / out.name
        out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and out.stat().st_mtime >= path.stat().st_mtime:
        return out
    import onnx

    model = onnx.load(str(path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    for output in model.graph.output:
        output.type.tensor_type.shape.ClearField("dim")
    del model.graph.value_info[:]
    tmp = out.with_suffix(".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(out)
    return out


@dataclass(frozen=True, slots=True)
class Tile:
    """One crop ``(x1, y1, x2, y2)`` of the frame, placed at ``(ox, oy)`` in the canvas."""

    x1: int
    y1: int
    x2: int
    y2: int
    ox: int
    oy: int


def upper_regions(persons: Detections, size: tuple[int, int], upper: float, margin: float) -> F32:
    """The upper ``upper`` of each person box, widened by ``margin`` of its size, clipped
    to the frame ``size`` (w, h), overlapping ones merged; (N,4) xyxy."""
    w, h = size
    if len(persons) == 0:
        return np.zeros((0, 4), np.float32)
    b = persons.xyxy.astype(np.float32)
    bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    pad = margin * np.maximum(bw, bh * 0.5)
    boxes = np.stack(
        [b[:, 0] - pad, b[:, 1] - pad, b[:, 2] + pad, b[:, 1] + upper * bh + pad], axis=1
    )
    boxes = np.clip(boxes, 0, [w, h, w, h]).astype(np.float32)
    return merge_overlapping(boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])])


def merge_overlapping(boxes: F32) -> F32:
    """Union boxes that intersect, until none do."""
    merged = [list(map(float, b)) for b in boxes]
    changed = True
    while changed:
        changed = False
        for i in range(len(merged)):
            for j in range(i + 1, len(merged)):
                a, c = merged[i], merged[j]
                if a[0] < c[2] and c[0] < a[2] and a[1] < c[3] and c[1] < a[3]:
                    merged[i] = [min(a[0], c[0]), min(a[1], c[1]), max(a[2], c[2]), max(a[3], c[3])]
                    del merged[j]
                    changed = True
                    break
            if changed:
                break
    return np.array(merged, np.float32).reshape(-1, 4)


def pack(sizes: list[tuple[int, int]], side: int) -> list[tuple[int, int]] | None:
    """Shelf packing of (w, h) rectangles into a ``side`` square with ``GAP`` between them:
    the top-left of each, or None if they do not fit."""
    order = sorted(range(len(sizes)), key=lambda i: -sizes[i][1])
    spots: list[tuple[int, int]] = [(0, 0)] * len(sizes)
    x = y = shelf = 0
    for i in order:
        w, h = sizes[i]
        if w > side or h > side:
            return None
        if x + w > side:
            x, y, shelf = 0, y + shelf + GAP, 0
        if y + h > side:
            return None
        spots[i] = (x, y)
        x += w + GAP
        shelf = max(shelf, h)
    return spots


class RegionFaceDetector:
    """``detect(bgr, persons) -> faces`` like :class:`FaceDetector`, searching only the
    upper parts of ``persons``; ``detector.model`` must have a free input size."""

    def __init__(
        self,
        detector: FaceDetector,
        upper: float = 0.5,
        margin: float = 0.15,
        max_side: int = INPUT_SIZE,
    ) -> None:
        self.detector = detector
        self.upper = upper
        self.margin = margin
        self.max_side = max_side
        self.runs = 0  # model runs (tests and bench)
        self.canvas_px = 0  # canvas pixels, summed over runs

    @property
    def model(self) -> OnnxModel:
        return self.detector.model

    def detect(self, bgr: U8, persons: Detections) -> Detections:
        h, w = bgr.shape[:2]
        regions = upper_regions(persons, (w, h), self.upper, self.margin)
        if len(regions) == 0:
            return _empty_faces()
        layout = self._layout(regions, (w, h))
        if layout is None:  # the crops would be shrunk more than the whole frame
            return self._run_whole(bgr)
        scale, side, tiles = layout
        canvas = np.zeros((side, side, 3), np.uint8)
        for t in tiles:
            crop = bgr[t.y1 : t.y2, t.x1 : t.x2]
            tw, th = max(1, round((t.x2 - t.x1) * scale)), max(1, round((t.y2 - t.y1) * scale))
            if scale != 1.0:
                crop = np.asarray(
                    cv2.resize(crop, (tw, th), interpolation=cv2.INTER_AREA), np.uint8
                )
            canvas[t.oy : t.oy + th, t.ox : t.ox + tw] = crop
        raw = self._run(canvas, side)
        return self._back(bgr, raw, tiles, scale)

    def _layout(self, regions: F32, size: tuple[int, int]) -> tuple[float, int, list[Tile]] | None:
        whole = self.max_side / max(size)  # the scale a whole-frame run would use
        boxes = [tuple(int(v) for v in np.round(r)) for r in regions]
        scale = 1.0
        while scale >= whole * 0.999:
            sizes = [
                (max(1, round((x2 - x1) * scale)), max(1, round((y2 - y1) * scale)))
                for x1, y1, x2, y2 in boxes
            ]
            area = sum(a * b for a, b in sizes) + GAP * GAP * len(sizes)
            side = max(ALIGN, math.ceil(math.sqrt(area) / ALIGN) * ALIGN)
            while side <= self.max_side:
                spots = pack(sizes, side)
                if spots is not None:
                    tiles = [
                        Tile(x1, y1, x2, y2, ox, oy)
                        for (x1, y1, x2, y2), (ox, oy) in zip(boxes, spots, strict=True)
                    ]
                    return scale, side, tiles
                side += ALIGN
            scale *= 0.8
        return None

    def _run(self, canvas: U8, side: int) -> Detections:
        tensor = canvas.transpose(2, 0, 1)[None].astype(np.float32)
        outputs = dict(zip(self.model.output_names, self.model.run(tensor), strict=True))
        self.runs += 1
        self.canvas_px += side * side
        d = self.detector
        return nms(decode(outputs, d.score_threshold, side), d.nms_iou, class_wise=False)[: d.top_k]

    def _run_whole(self, bgr: U8) -> Detections:
        self.runs += 1
        self.canvas_px += INPUT_SIZE * INPUT_SIZE
        return self.detector.detect(bgr)

    def _back(self, bgr: U8, raw: Detections, tiles: list[Tile], scale: float) -> Detections:
        if len(raw) == 0:
            return _empty_faces()
        assert raw.landmarks is not None
        h, w = bgr.shape[:2]
        centre = (raw.xyxy[:, :2] + raw.xyxy[:, 2:]) / 2
        shift = np.zeros((len(raw), 2), np.float32)
        keep = np.zeros(len(raw), bool)
        for t in tiles:
            tw, th = (t.x2 - t.x1) * scale, (t.y2 - t.y1) * scale
            inside = (
                (centre[:, 0] >= t.ox)
                & (centre[:, 0] < t.ox + tw)
                & (centre[:, 1] >= t.oy)
                & (centre[:, 1] < t.oy + th)
                & ~keep
            )
            # frame = (canvas - tile origin) / scale + crop origin
            shift[inside] = [t.x1 - t.ox / scale, t.y1 - t.oy / scale]
            keep |= inside
        xy = raw.xyxy / np.float32(scale) + np.tile(shift, 2)
        xyxy = np.clip(xy, 0, [w, h, w, h]).astype(np.float32)
        landmarks = (raw.landmarks / np.float32(scale) + shift[:, None, :]).astype(np.float32)
        d = self.detector
        big = keep & (np.minimum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]) >= d.min_size)
        xyxy, landmarks = xyxy[big], landmarks[big]
        quality = np.array(
            [face_quality(bgr, b, lm) for b, lm in zip(xyxy, landmarks, strict=True)], np.float32
        ).reshape(-1)
        return raw[big].with_columns(xyxy=xyxy, landmarks=landmarks, quality=quality)


class FitFaceDetector(FaceDetector):
    """Whole-frame YuNet on a canvas fitted to the frame: the long side scaled to 640 as
    before, but the short side padded only to the next multiple of 32 instead of to 640
    (a 640x360 frame runs on 640x384, 40% fewer pixels than 640x640; the extra padding only
    held zeros). Nearly the same faces: 726 of the 731 faces of the Hamilton clip (all
    frames), the rest and 3 of 6 tiny far faces on Town Centre being borderline scores.
    YuNet CPU per 640x360 frame: 22 -> 12 ms (1 thread, loaded box). Needs the free-size
    model."""

    def detect(self, bgr: U8) -> Detections:
        h, w = bgr.shape[:2]
        scale = INPUT_SIZE / max(h, w)
        new_w, new_h = (
            max(1, min(INPUT_SIZE, round(w * scale))),
            max(1, min(INPUT_SIZE, round(h * scale))),
        )
        cw, ch = math.ceil(new_w / ALIGN) * ALIGN, math.ceil(new_h / ALIGN) * ALIGN
        canvas = np.zeros((ch, cw, 3), np.uint8)
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        canvas[:new_h, :new_w] = cv2.resize(bgr, (new_w, new_h), interpolation=interpolation)
        tensor = canvas.transpose(2, 0, 1)[None].astype(np.float32)
        outputs = dict(zip(self.model.output_names, self.model.run(tensor), strict=True))
        raw = decode(outputs, self.score_threshold, cw)  # columns per stride from the width
        faces = nms(raw, self.nms_iou, class_wise=False)[: self.top_k]
        return self._finish(bgr, faces, Letterbox(scale, new_w, new_h))


def _empty_faces() -> Detections:
    return Detections.empty().with_columns(
        landmarks=np.zeros((0, 5, 2), np.float32), quality=np.zeros(0, np.float32)
    )
