"""Does a second face embedder (dlib's ResNet) fused with SFace raise held-out TPIR? (issue 16)

The only other face embedder reachable here is dlib's ResNet-34 metric network
(``dlib_face_recognition_resnet_model_v1.dat``, 128-d, LFW 99.38% by its author), shipped
on PyPI in ``face_recognition_models`` and run by ``dlib-bin``. Neither is a dependency of
Ringwatch; to run this, put both in a folder of their own:

    python3 -m pip install --no-deps --target /tmp/dlib dlib-bin face_recognition_models
    PYTHONPATH=/tmp/dlib .venv/bin/python tools/embedder_fusion.py \\
        --dlib-models /tmp/dlib/face_recognition_models/models

Every face YuNet found in the LFW dev images gets dlib's 5-point landmarks inside YuNet's
box and dlib's descriptor; descriptors are centred on the tuning half's mean and
L2-normalised. Fusion is score-level: the unit SFace vector and ``w`` times the unit dlib
vector are concatenated and normalised, so a cosine between two fused vectors is
``(s_sface + w^2 s_dlib) / (1 + w^2)``. Then the shipped protocol of ``ringwatch faces
eval-identification`` runs on those vectors (the tuning half calibrates at FPIR <= 1% with
95% confidence, the held-out half reports). Subjects found only by the fallback detector
have no YuNet row to run dlib on; their dlib half is zero (they score on SFace alone,
scaled by ``1 / sqrt(1 + w^2)``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from ringwatch.edge import identification_eval as ie
from ringwatch.edge.faces_cli import FaceViews, LfwImage, embed_lfw
from ringwatch.models.faces import FacePipeline, read_image

F32 = npt.NDArray[np.float32]
WEIGHTS = (0.6, 1.0)
LANDMARKS = "shape_predictor_5_face_landmarks.dat"
NETWORK = "dlib_face_recognition_resnet_model_v1.dat"


def dlib_descriptors(images: dict[str, LfwImage], lfw: Path, models: Path) -> dict[str, F32]:
    """Per image with YuNet faces: one dlib descriptor per face row (same order)."""
    try:
        import dlib  # type: ignore[import-not-found]  # not a dependency: see the docstring
    except ImportError:
        raise SystemExit("dlib is not importable: see this tool's docstring") from None
    shapes: Any = dlib.shape_predictor(str(models / LANDMARKS))
    network: Any = dlib.face_recognition_model_v1(str(models / NETWORK))
    out: dict[str, F32] = {}
    started = time.monotonic()
    for key, image in images.items():
        if image.views is None or len(image.faces) == 0:
            continue
        rgb = cv2.cvtColor(read_image(lfw / key), cv2.COLOR_BGR2RGB)
        rows = []
        for x1, y1, x2, y2 in image.faces.xyxy.astype(int):
            shape = shapes(rgb, dlib.rectangle(int(x1), int(y1), int(x2), int(y2)))
            rows.append(np.asarray(network.compute_face_descriptor(rgb, shape), np.float32))
        out[key] = np.stack(rows)
    took = time.monotonic() - started
    faces = sum(len(v) for v in out.values())
    print(f"dlib: {faces} faces in {took:.0f} s ({1000 * took / max(faces, 1):.0f} ms a face)")
    return out


def _unit(rows: F32) -> F32:
    out: F32 = (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)
    return out


def fused_images(
    images: dict[str, LfwImage], descriptors: dict[str, F32], weight: float
) -> dict[str, LfwImage]:
    """The LFW images with every face's embedding replaced by the fused vector."""
    tuning = [v for k, v in descriptors.items() if ie.TUNING(Path(k).parent.name)]
    mean = np.concatenate(tuning).mean(axis=0)
    out: dict[str, LfwImage] = {}
    for key, image in images.items():
        if key not in descriptors or image.views is None:
            subject = None
            if image.subject is not None:
                alone = np.concatenate([_unit(image.subject), np.zeros(128, np.float32)])
                subject = alone.astype(np.float32)
            out[key] = dataclasses.replace(image, subject=subject)
            continue
        rows = _unit(np.hstack([_unit(image.views.plain), weight * _unit(descriptors[key] - mean)]))
        index = image.subject_index
        subject = rows[index] if index is not None else image.subject
        out[key] = dataclasses.replace(image, views=FaceViews(rows, rows), subject=subject)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--models", type=Path, default=Path("../shared/models"))
    parser.add_argument("--dlib-models", type=Path, required=True)
    args = parser.parse_args()
    lfw = args.data / "faces" / "lfw_dev"
    images = embed_lfw(FacePipeline.from_models_dir(args.models), lfw)
    descriptors = dlib_descriptors(images, lfw, args.dlib_models)
    variants = [("SFace alone (shipped)", 0.0), *((f"fused, w={w}", w) for w in WEIGHTS)]
    ie.print_variants(
        "embedding, templates",
        ((name, fused_images(images, descriptors, w) if w else images) for name, w in variants),
    )
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
