"""Does int8 quantisation (onnxruntime.quantization, static, calibrated on real frames) pay
for YOLOX-nano and YuNet on this box, and does it keep their detections?

Quantises each installed model into a temporary folder (nothing is written next to the
installed models and nothing is committed), then, on frames of ../shared/data videos:
CPU ms per run of fp32 and int8, interleaved so both see the same load, and how many of the
fp32 detections the int8 model still finds (IoU >= 0.5).

    .venv/bin/python tools/int8_check.py [--data ../shared/data] [--format qdq|qoperator]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from ringwatch.models.detections import Detections
from ringwatch.models.install import model_path
from ringwatch.models.manifest import default_models_dir, load_manifest
from ringwatch.models.nms import iou_matrix
from ringwatch.models.runtime import OnnxModel, RuntimeOptions
from ringwatch.models.yolox import YoloxPersonDetector
from ringwatch.models.yunet import FaceDetector
from ringwatch.models.yunet import preprocess as yunet_in

U8 = npt.NDArray[np.uint8]
CLIPS = [
    "video/towncentre_clip_example01.mp4",
    "video/intel_one_by_one_person.mp4",
    "faces/watchlist_demo/short_hamilton_clip.mp4",
]


def frames(data: Path, every: int, limit: int) -> list[U8]:
    out: list[U8] = []
    for clip in CLIPS:
        capture = cv2.VideoCapture(str(data / clip))
        for i in range(limit):
            ok, image = capture.read()
            if not ok:
                break
            if i % every == 0:
                out.append(np.asarray(image, np.uint8))
        capture.release()
    return out


def quantise(
    src: Path, out: Path, name: str, tensors: list[npt.NDArray[np.float32]], fmt: str
) -> None:
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.items: Iterator[dict[str, npt.NDArray[np.float32]]] = iter(
                [{name: t} for t in tensors]
            )

        def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
            return next(self.items, None)

    model = onnx.load(str(src))
    if model.opset_import[0].version < 13:  # per-channel axes need opset 13
        model = version_converter.convert_version(model, 13)
    upgraded = out.with_suffix(".opset13.onnx")
    onnx.save(model, str(upgraded))
    quantize_static(
        str(upgraded),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
    )


def compare(
    label: str,
    fp32: Callable[[U8], Detections],
    int8: Callable[[U8], Detections],
    images: list[U8],
) -> None:
    t32 = t8 = 0.0
    found = kept = extra = 0
    for image in images:
        start = time.process_time()
        a = fp32(image)
        t32 += time.process_time() - start
        start = time.process_time()
        b = int8(image)
        t8 += time.process_time() - start
        found += len(a)
        if len(a) and len(b):
            iou = iou_matrix(a.xyxy, b.xyxy)
            kept += int((iou.max(axis=1) >= 0.5).sum())
            extra += int((iou.max(axis=0) < 0.5).sum())
        else:
            extra += len(b)
    n = len(images)
    print(
        f"{label:8} CPU ms/frame fp32 {t32 / n * 1000:.1f}  int8 {t8 / n * 1000:.1f}  "
        f"(x{t32 / max(t8, 1e-9):.2f}); fp32 detections kept {kept}/{found} "
        f"({kept / max(found, 1):.3f}), int8-only {extra}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--format", choices=("qdq", "qoperator"), default="qoperator")
    args = parser.parse_args()
    manifest, models = load_manifest(), default_models_dir()
    calibration = frames(args.data, every=20, limit=200)
    test = frames(args.data, every=7, limit=140)
    options = RuntimeOptions(threads=1)
    with tempfile.TemporaryDirectory() as tmp:
        yolox_src = model_path(manifest.get("yolox_nano"), models)
        yolox = YoloxPersonDetector(OnnxModel(yolox_src, options))
        q = Path(tmp) / "yolox_int8.onnx"
        quantise(yolox_src, q, "images", [yolox.preprocess(f)[0] for f in calibration], args.format)
        compare("persons", yolox.detect, YoloxPersonDetector(OnnxModel(q, options)).detect, test)
        yunet_src = model_path(manifest.get("yunet"), models)
        faces = FaceDetector(OnnxModel(yunet_src, options))
        q = Path(tmp) / "yunet_int8.onnx"
        quantise(yunet_src, q, "input", [yunet_in(f)[0] for f in calibration], args.format)
        compare("faces", faces.detect, FaceDetector(OnnxModel(q, options)).detect, test)
    print(f"format {args.format}, 1 thread, {len(test)} frames, load-sensitive: rerun idle")


if __name__ == "__main__":
    main()
