"""``ringwatch analyze`` (JSON lines of detections per image or video frame) and
``ringwatch bench models`` (pre/inference/post latency table per model)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ringwatch.errors import ConfigError, InputError

if TYPE_CHECKING:
    from ringwatch.edge.config import Thresholds
    from ringwatch.models.detections import Detections
    from ringwatch.models.perception import FrameDetections, Perception
    from ringwatch.models.runtime import OnnxModel, RuntimeOptions
    from ringwatch.models.tiling import Tiling

U8 = npt.NDArray[np.uint8]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".gif"}
)
DEFAULT_FPS = 5.0
DIR_HELP = "models folder (default: $RINGWATCH_MODELS or ~/.cache/ringwatch/models)"


def register(sub: Any) -> None:
    """Add ``analyze`` and ``bench`` to the ``ringwatch`` parser."""
    p = sub.add_parser("analyze", help="detect faces, persons and fire in images and videos")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image, video or folder")
    p.add_argument(
        "--tasks",
        default="faces,persons,fire",
        help="comma list of faces,persons,fire (default: all)",
    )
    p.add_argument("--embeddings", action="store_true", help="add a 128-d embedding per face")
    p.add_argument(
        "--fps",
        type=float,
        default=DEFAULT_FPS,
        help=f"video sampling rate (default {DEFAULT_FPS:g})",
    )
    p.add_argument("--person-model", default="yolox_nano", help="yolox_nano or nanodet")
    p.add_argument(
        "--person-tiling",
        default="off",
        choices=("off", "auto", "on"),
        help="a camera's person_tiling mode, to try it on its footage (default off)",
    )
    p.add_argument("--tile", type=int, default=None, help="tile side in pixels (as the site file)")
    p.add_argument(
        "--person-threshold",
        type=float,
        default=None,
        help="the tiling camera's person score, person_tiling.threshold (default 0.3)",
    )
    _runtime_args(p)
    p.set_defaults(func=_analyze)

    bench = sub.add_parser("bench", help="benchmarks")
    bsub = bench.add_subparsers(dest="bench_command", required=True, metavar="WHAT")
    b = bsub.add_parser("models", help="pre/inference/post latency of every model")
    b.add_argument("--runs", type=int, default=20, help="timed runs per model (default 20)")
    b.add_argument("--image", type=Path, default=None, help="use this image for every model")
    b.add_argument("--data", type=Path, default=None, help="data folder (default ../shared/data)")
    _runtime_args(b)
    b.set_defaults(func=_bench)


def _runtime_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", type=Path, default=None, help=DIR_HELP)
    p.add_argument("--provider", default="cpu", help="cpu, cuda, openvino or tensorrt")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads per model")


def _options(args: argparse.Namespace) -> tuple[Path, RuntimeOptions]:
    from ringwatch.models.manifest import default_models_dir
    from ringwatch.models.runtime import RuntimeOptions

    return args.models or default_models_dir(), RuntimeOptions(args.provider, args.threads)


# --- analyze ---------------------------------------------------------------------------


def _analyze(args: argparse.Namespace) -> int:
    from ringwatch.edge.config import Thresholds
    from ringwatch.models.perception import Perception

    tasks = {t.strip() for t in args.tasks.split(",") if t.strip()}
    if args.fps <= 0:
        raise InputError(f"--fps {args.fps:g}: must be above 0")
    models_dir, options = _options(args)
    tiling, thresholds = _person_setting(args, Thresholds())
    perception = Perception.from_models_dir(
        models_dir, options, thresholds, tasks, args.person_model, tiling
    )
    failed = False
    for source in expand_paths(args.paths):
        try:
            _analyze_one(perception, source, args)
        except InputError as exc:
            failed = True
            _emit({"source": str(source), "error": str(exc)})
            print(f"ringwatch analyze: {exc}", file=sys.stderr)
    return 1 if failed else 0


def _person_setting(args: argparse.Namespace, thresholds: Thresholds) -> tuple[Tiling, Thresholds]:
    """The tiling and person score the options ask for, checked as a site file's
    ``person_tiling`` is (a bad value stops the run with its reason)."""
    from pydantic import ValidationError

    from ringwatch.contract.messages import clean_message
    from ringwatch.edge.config import PersonTiling
    from ringwatch.edge.site import tiling_of, tiling_threshold

    asked = {"mode": args.person_tiling, "tile": args.tile, "threshold": args.person_threshold}
    try:
        setting = PersonTiling.model_validate({k: v for k, v in asked.items() if v is not None})
    except ValidationError as exc:
        option = {"tile": "--tile", "threshold": "--person-threshold"}  # mode: argparse's
        problems = "; ".join(
            f"{option.get(str(e['loc'][0]) if e['loc'] else '', 'options')}: "
            f"{clean_message(e['msg'])}"
            for e in exc.errors()
        )
        raise ConfigError(f"person tiling options: {problems}") from None
    score = tiling_threshold(setting, thresholds)
    return tiling_of(setting), thresholds.model_copy(update={"person": score})


def _analyze_one(perception: Perception, source: Path, args: argparse.Namespace) -> None:
    """JSON lines on stdout; for a video, progress on stderr (a bar on a terminal)."""
    from ringwatch.progress import progress

    lines = analyze_source(perception, source, args.fps, args.embeddings)
    if _ext(source) not in VIDEO_EXTENSIONS:
        for line in lines:
            _emit(line)
        return
    with progress(
        f"analyze {source}", total=sampled_frames(source, args.fps), unit="frames"
    ) as advance:
        for line in lines:
            _emit(line)
            advance(1)


def sampled_frames(path: Path, fps: float) -> int | None:
    """How many frames :func:`sample_video` will yield, from the container (None: unknown)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        count = float(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0.0
        native = float(cap.get(cv2.CAP_PROP_FPS)) if cap.isOpened() else 0.0
    finally:
        cap.release()
    if not (count > 0 and np.isfinite(count)):
        return None
    native = native if np.isfinite(native) and native > 0 else 25.0
    step = native / fps if fps < native else 1.0
    return int(np.ceil(count / step))


def _emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def expand_paths(paths: list[Path]) -> Iterator[Path]:
    """Files as given; folders as their image and video files, sorted by name."""
    for path in paths:
        if path.is_dir():
            known = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
            yield from sorted(p for p in path.iterdir() if p.is_file() and _ext(p) in known)
        else:
            yield path


def _ext(path: Path) -> str:
    return path.suffix.lower()


def analyze_source(
    perception: Perception, source: Path, fps: float, embeddings: bool
) -> Iterator[dict[str, Any]]:
    """One JSON-ready dict per image, or per sampled frame of a video."""
    if _ext(source) in VIDEO_EXTENSIONS:
        frames = sample_video(source, fps)
    else:
        frames = iter([(0, 0.0, _read_image(source))])
    for index, ts, image in frames:
        found = perception.analyze(image, embeddings=embeddings)
        yield frame_record(str(source), index, ts, image, found)


def _read_image(path: Path) -> U8:
    from ringwatch.models.faces import read_image

    return read_image(path)


def sample_video(path: Path, fps: float) -> Iterator[tuple[int, float, U8]]:
    """(source frame index, seconds from start, frame) at about ``fps`` frames a second
    (every frame when the video's own rate is lower). InputError if nothing decodes."""
    import cv2

    if not path.is_file():
        raise InputError(f"{path}: no such file")
    cap = cv2.VideoCapture(str(path))
    try:
        native = float(cap.get(cv2.CAP_PROP_FPS)) if cap.isOpened() else 0.0
        native = native if np.isfinite(native) and native > 0 else 25.0
        step = native / fps if fps < native else 1.0
        index, next_pick = 0, 0.0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if index + 1e-6 >= next_pick:
                next_pick += step
                yield index, index / native, np.asarray(frame, dtype=np.uint8)
            index += 1
    finally:
        cap.release()
    if index == 0:
        raise InputError(f"{path}: cannot be decoded as a video (corrupt or unsupported)")


def frame_record(
    source: str, index: int, ts: float, image: U8, found: FrameDetections
) -> dict[str, Any]:
    """The JSON object of one analysed image or frame (boxes in pixels)."""
    from ringwatch.models.fire import CLASS_NAMES

    height, width = image.shape[:2]
    fire = [
        {**_box(found.fire, i), "class": CLASS_NAMES.get(int(c), str(int(c)))}
        for i, c in enumerate(found.fire.class_id)
    ]
    return {
        "source": source,
        "frame": index,
        "ts": round(ts, 3),
        "width": int(width),
        "height": int(height),
        "faces": [_face(found.faces, i) for i in range(len(found.faces))],
        "persons": [_box(found.persons, i) for i in range(len(found.persons))],
        "fire": fire,
    }


def _box(dets: Detections, i: int) -> dict[str, Any]:
    return {
        "box": [round(float(v), 1) for v in dets.xyxy[i]],
        "score": round(float(dets.confidence[i]), 4),
    }


def _face(dets: Detections, i: int) -> dict[str, Any]:
    face = _box(dets, i)
    if dets.landmarks is not None:
        face["landmarks"] = [[round(float(x), 1), round(float(y), 1)] for x, y in dets.landmarks[i]]
    if dets.quality is not None:
        face["quality"] = round(float(dets.quality[i]), 4)
    if dets.embeddings is not None:
        face["embedding"] = [round(float(v), 5) for v in dets.embeddings[i]]
    return face


# --- bench models ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StageTimes:
    """Per-run seconds of one model's pre-processing, inference and post-processing."""

    pre: list[float]
    infer: list[float]
    post: list[float]

    def row(self, name: str, provider: str, size: str) -> tuple[str, ...]:
        total = [a + b + c for a, b, c in zip(self.pre, self.infer, self.post, strict=True)]
        cells = [f"{_ms(x, 50):.1f} / {_ms(x, 95):.1f}" for x in (self.pre, self.infer, self.post)]
        median = _ms(total, 50)
        return (name, provider, size, *cells, f"{median:.1f}", f"{1000 / median:.1f}")


def _ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(seconds) * 1000, q))


def _timed_model(model: OnnxModel) -> Any:
    """A subclass instance sharing ``model``'s session that sums the time spent in run."""
    from ringwatch.models.runtime import OnnxModel

    class TimedModel(OnnxModel):
        def __init__(self, inner: OnnxModel) -> None:  # shares the loaded session
            self.__dict__.update(inner.__dict__)
            self.spent = 0.0

        def run(self, tensor: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
            start = time.perf_counter()
            try:
                return super().run(tensor)
            finally:
                self.spent += time.perf_counter() - start

    return TimedModel(model)


def time_stages(
    runs: int, model: Any, pre: Callable[[], object], whole: Callable[[], object]
) -> StageTimes:
    """Time ``pre`` alone and ``whole`` (pre + inference + post) ``runs`` times; inference
    is the time inside ``model.run`` and post = whole - pre - inference, per run."""
    whole()  # one untimed run after the warm-up
    pres, infers, posts = [], [], []
    for _ in range(runs):
        start = time.perf_counter()
        pre()
        pre_s = time.perf_counter() - start
        model.spent = 0.0
        start = time.perf_counter()
        whole()
        whole_s = time.perf_counter() - start
        pres.append(pre_s)
        infers.append(model.spent)
        posts.append(max(whole_s - pre_s - model.spent, 0.0))
    return StageTimes(pres, infers, posts)


def _bench(args: argparse.Namespace) -> int:
    from ringwatch.models.install import model_path
    from ringwatch.models.licences import licence_notes
    from ringwatch.models.manifest import load_manifest
    from ringwatch.models.runtime import OnnxModel
    from ringwatch.table import render_table

    if args.runs < 1:
        raise InputError(f"--runs {args.runs}: must be at least 1")
    models_dir, options = _options(args)
    images = _bench_images(args.image, args.data)
    manifest = load_manifest()
    from ringwatch.progress import progress

    rows = []
    with progress("bench models", total=len(_BENCHES), unit="models") as advance:
        for name, bench in _BENCHES.items():
            entry = manifest.get(name)
            model = OnnxModel(model_path(entry, models_dir), options)
            model.warm_up()
            times, size = bench(_timed_model(model), images, args.runs, models_dir, options)
            row = times.row(name, model.provider.replace("ExecutionProvider", ""), size)
            rows.append((*row, entry.licence_label))
            advance(1)
    heads = (
        "model",
        "provider",
        "input",
        "pre ms",
        "inference ms",
        "post ms",
        "total ms",
        "fps",
        "licence",
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"median / p95 over {args.runs} runs, threads {options.threads}; this machine: "
        f"{os.cpu_count()} CPUs, load average {load:.1f} (others' work inflates the times)"
    )
    print(render_table(heads, rows))
    print("pre = resize/letterbox/align + tensor; post = decode + NMS + mapping (+ quality for")
    print("YuNet); total and fps are for one image (SFace: one face).")
    for note in licence_notes(manifest.get(name) for name in _BENCHES):
        print(f"\n{note}")
    return 0


def _bench_images(image: Path | None, data: Path | None) -> dict[str, U8]:
    """The frame each kind of model is timed on: given image, else real data."""
    if image is not None:
        one = _read_image(image)
        return {"faces": one, "persons": one, "fire": one}
    root = data or Path(os.environ.get("RINGWATCH_DATA", "../shared/data"))
    faces = root / "faces" / "watchlist_demo" / "knn" / "test" / "obama_and_biden.jpg"
    fire = root / "fire" / "images" / "fire"
    street = root / "video" / "towncentre_clip_example01.mp4"
    if not (faces.is_file() and fire.is_dir() and street.is_file()):
        raise InputError(f"{root}: real data not found; pass --data DIR or --image FILE")
    first_frame = next(sample_video(street, 1.0))[2]
    return {
        "faces": _read_image(faces),
        "persons": first_frame,
        "fire": _read_image(sorted(fire.iterdir())[0]),
    }


BenchFn = Callable[[Any, dict[str, U8], int, Path, "RuntimeOptions"], tuple[StageTimes, str]]


def _bench_yunet(model: Any, images: dict[str, U8], runs: int, *_: Any) -> tuple[StageTimes, str]:
    from ringwatch.models.yunet import FaceDetector, preprocess

    image = images["faces"]
    detector = FaceDetector(model)
    return time_stages(runs, model, lambda: preprocess(image), lambda: detector.detect(image)), (
        _size(image)
    )


def _bench_sface(
    model: Any, images: dict[str, U8], runs: int, models_dir: Path, options: RuntimeOptions
) -> tuple[StageTimes, str]:
    from ringwatch.models.install import model_path
    from ringwatch.models.manifest import load_manifest
    from ringwatch.models.runtime import OnnxModel
    from ringwatch.models.sface import FaceEmbedder, align_face, to_tensor
    from ringwatch.models.yunet import FaceDetector

    image = images["faces"]
    yunet = OnnxModel(model_path(load_manifest().get("yunet"), models_dir), options)
    faces = FaceDetector(yunet, 0.3).detect(image)
    if len(faces) == 0 or faces.landmarks is None:
        raise InputError("bench sface: no face found in the face image")
    face = faces[int(np.argmax(faces.area))]
    landmarks = face.landmarks
    assert landmarks is not None
    embedder = FaceEmbedder(model)
    times = time_stages(
        runs,
        model,
        lambda: to_tensor(align_face(image, landmarks[0])),
        lambda: embedder.embed(image, face),
    )
    return times, "1 face"


def _bench_detector(kind: str, make: Callable[[Any], Any]) -> BenchFn:
    def bench(model: Any, images: dict[str, U8], runs: int, *_: Any) -> tuple[StageTimes, str]:
        image = images[kind]
        detector = make(model)
        pre, whole = (lambda: detector.preprocess(image)), (lambda: detector.detect(image))
        return time_stages(runs, model, pre, whole), _size(image)

    return bench


def _size(image: U8) -> str:
    return f"{image.shape[1]}x{image.shape[0]}"


def _yolox(model: Any) -> Any:
    from ringwatch.models.yolox import YoloxPersonDetector

    return YoloxPersonDetector(model)


def _nanodet(model: Any) -> Any:
    from ringwatch.models.nanodet import NanoDetPersonDetector

    return NanoDetPersonDetector(model)


def _fire(model: Any) -> Any:
    from ringwatch.edge.config import Thresholds
    from ringwatch.models.fire import FireSmokeDetector

    shipped = Thresholds()
    return FireSmokeDetector(model, shipped.fire, shipped.smoke)


_BENCHES: dict[str, BenchFn] = {
    "yunet": _bench_yunet,
    "sface": _bench_sface,
    "yolox_nano": _bench_detector("persons", _yolox),
    "nanodet": _bench_detector("persons", _nanodet),
    "fire_smoke": _bench_detector("fire", _fire),
}
