"""``ringwatch faces compare|eval-lfw|eval-watchlist``: face similarity and its measurements.

The evaluation functions here are what the accuracy tests run too, so the figures in
docs/faces.md, the commands that print them and the tests that guard them are one code path.
"""

from __future__ import annotations

import argparse
import csv
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ringwatch.errors import InputError
from ringwatch.models.detections import Detections
from ringwatch.models.faces import (
    SAME_PERSON_THRESHOLD,
    FacePipeline,
    accuracy_at,
    best_threshold,
    match_gallery,
    read_image,
)
from ringwatch.models.identification import threshold_for_gallery
from ringwatch.models.manifest import default_models_dir
from ringwatch.models.sface import cosine, l2_normalise
from ringwatch.table import render_table

F32 = npt.NDArray[np.float32]
DEFAULT_DATA = Path("../shared/data")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
CLIP_EVERY_N_FRAMES = 5


def register(sub: Any) -> None:
    """Add the ``faces`` command group to the `ringwatch` parser."""
    parser = sub.add_parser("faces", help="compare faces; measure face accuracy on real data")
    fsub = parser.add_subparsers(dest="faces_command", required=True, metavar="ACTION")
    models_help = "models folder (default: $RINGWATCH_MODELS or ~/.cache/ringwatch/models)"

    p = fsub.add_parser("compare", help="similarity of the largest face in two images (JSON)")
    p.add_argument("image_a", type=Path)
    p.add_argument("image_b", type=Path)
    p.add_argument("--models", type=Path, default=None, help=models_help)
    p.set_defaults(func=_compare)

    p = fsub.add_parser("eval-lfw", help="verification accuracy on the LFW dev fold")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    p.add_argument("--models", type=Path, default=None, help=models_help)
    p.set_defaults(func=_eval_lfw)

    p = fsub.add_parser("eval-watchlist", help="watch-list matches on the demo set")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    p.add_argument("--models", type=Path, default=None, help=models_help)
    p.set_defaults(func=_eval_watchlist)

    p = fsub.add_parser(
        "eval-identification", help="1:N TPIR/FPIR per threshold and gallery size (LFW, demo)"
    )
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    p.add_argument("--models", type=Path, default=None, help=models_help)
    p.set_defaults(func=_eval_identification)


def _eval_identification(args: argparse.Namespace) -> int:
    from ringwatch.edge.identification_eval import run

    return run(args.data, args.models or default_models_dir())


def _pipeline(args: argparse.Namespace) -> FacePipeline:
    return FacePipeline.from_models_dir(args.models or default_models_dir())


def _compare(args: argparse.Namespace) -> int:
    pipeline = _pipeline(args)
    embeddings = []
    for path in (args.image_a, args.image_b):
        _, vector = pipeline.largest_face_embedding(read_image(path), source=str(path))
        embeddings.append(vector)
    similarity = float(cosine(embeddings[0], embeddings[1]))
    result = {
        "similarity": round(similarity, 4),
        "threshold": SAME_PERSON_THRESHOLD,
        "same_person": similarity >= SAME_PERSON_THRESHOLD,
    }
    print(json.dumps(result))
    return 0


# --- LFW verification ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LfwImage:
    """All faces of one LFW image at the shipped detector threshold, plus the embedding of
    the face used for verification (None when none was found even after the fallback)."""

    faces: Detections
    subject: F32 | None
    fallback_used: bool
    # Both views of every face in ``faces`` (rows), to measure what flip averaging brings:
    # plain SFace embeddings and flip-averaged ones; and the subject's row in ``faces``
    # (None when the subject was found only by the fallback detector).
    views: FaceViews | None = None
    subject_index: int | None = None

    def subject_view(self, flip: bool) -> F32 | None:
        """The subject's embedding, flip-averaged or plain (the pipeline's when unknown)."""
        if self.views is None or self.subject_index is None:
            return self.subject
        rows = self.views.flipped if flip else self.views.plain
        row: F32 = rows[self.subject_index]
        return row


@dataclass(frozen=True, slots=True)
class FaceViews:
    plain: F32
    flipped: F32


@dataclass(frozen=True, slots=True)
class LfwResult:
    pairs: int
    images: int
    fallback_used: list[str]
    not_found: list[str]
    similarity: F32
    same: npt.NDArray[np.bool_]
    best_threshold: float
    best_accuracy: float
    shipped_accuracy: float
    split: LfwSplit


@dataclass(frozen=True, slots=True)
class LfwSplit:
    """The pairs split by a hash of the first image's person: a threshold tuned on one
    part, accuracy reported on the other (held-out) part."""

    tuning_pairs: int
    held_out_pairs: int
    tuned_threshold: float
    held_out_at_tuned: float
    held_out_best: float
    held_out_shipped: float


def split_pairs(lfw_dir: Path) -> npt.NDArray[np.bool_]:
    """True for the pairs of the tuning part (crc32 of the first image's person, even)."""
    pairs = lfw_pairs(lfw_dir)
    return np.array([zlib.crc32(Path(a).parent.name.encode()) % 2 == 0 for a, _, _ in pairs])


def lfw_split(
    sims: F32, same: npt.NDArray[np.bool_], tuning: npt.NDArray[np.bool_], threshold: float
) -> LfwSplit:
    tuned, _ = best_threshold(sims[tuning], same[tuning])
    held_sims, held_same = sims[~tuning], same[~tuning]
    return LfwSplit(
        tuning_pairs=int(tuning.sum()),
        held_out_pairs=int((~tuning).sum()),
        tuned_threshold=tuned,
        held_out_at_tuned=accuracy_at(held_sims, held_same, tuned),
        held_out_best=best_threshold(held_sims, held_same)[1],
        held_out_shipped=accuracy_at(held_sims, held_same, threshold),
    )


def lfw_pairs(lfw_dir: Path) -> list[tuple[str, str, bool]]:
    path = lfw_dir / "pairs.csv"
    if not path.is_file():
        raise InputError(f"{path}: no such file (is --data the shared data folder?)")
    with path.open(newline="") as fh:
        return [(r["img_a"], r["img_b"], r["same_person"] == "1") for r in csv.DictReader(fh)]


def centre_most(faces: Detections, width: int, height: int) -> int:
    """Row of the face whose centre is nearest the image centre (LFW centres its subject)."""
    centres = faces.anchors("center")
    return int(np.argmin(np.linalg.norm(centres - [width / 2, height / 2], axis=1)))


def embed_lfw_image(pipeline: FacePipeline, path: Path) -> LfwImage:
    """Every face at the shipped threshold; the subject is the centre-most face, looked for
    again at the fallback threshold when none reaches the shipped one."""
    bgr = read_image(path)
    faces, views = _embed_both(pipeline, bgr, pipeline.detector.detect(bgr))
    found, fallback_used = faces, False
    if len(found) == 0 and pipeline.fallback is not None:
        found, _ = _embed_both(pipeline, bgr, pipeline.fallback.detect(bgr))
        fallback_used = True
    if len(found) == 0 or found.embeddings is None:
        return LfwImage(faces, None, fallback_used)
    i = centre_most(found, bgr.shape[1], bgr.shape[0])
    return LfwImage(faces, found.embeddings[i], fallback_used, views, None if fallback_used else i)


def _embed_both(
    pipeline: FacePipeline, bgr: npt.NDArray[np.uint8], faces: Detections
) -> tuple[Detections, FaceViews]:
    """The faces with the pipeline's embeddings, and both views of them (one SFace pass
    over the face and one over its mirror)."""
    plain, mirrored = pipeline.embedder.embed_views(bgr, faces, mirror=True)
    views = FaceViews(plain, l2_normalise(plain + mirrored))
    vectors = views.flipped if pipeline.embedder.flip else views.plain
    return faces.with_columns(embeddings=vectors), views


def embed_lfw(pipeline: FacePipeline, lfw_dir: Path) -> dict[str, LfwImage]:
    from ringwatch.progress import progress

    names = sorted({name for a, b, _ in lfw_pairs(lfw_dir) for name in (a, b)})
    images = {}
    with progress(f"faces in {lfw_dir}", total=len(names), unit="images") as advance:
        for name in names:
            images[name] = embed_lfw_image(pipeline, lfw_dir / name)
            advance(1)
    return images


def evaluate_lfw(
    lfw_dir: Path, images: dict[str, LfwImage], threshold: float = SAME_PERSON_THRESHOLD
) -> LfwResult:
    """Accuracy over the pairs; a pair with a face not found scores -1 (counted as
    'different', so it is wrong whenever the pair is the same person)."""
    pairs = lfw_pairs(lfw_dir)
    sims = np.array([_pair_similarity(images[a], images[b]) for a, b, _ in pairs], np.float32)
    same = np.array([s for _, _, s in pairs], np.bool_)
    best_t, best_acc = best_threshold(sims, same)
    return LfwResult(
        pairs=len(pairs),
        images=len(images),
        fallback_used=sorted(n for n, im in images.items() if im.fallback_used),
        not_found=sorted(n for n, im in images.items() if im.subject is None),
        similarity=sims,
        same=same,
        best_threshold=best_t,
        best_accuracy=best_acc,
        shipped_accuracy=accuracy_at(sims, same, threshold),
        split=lfw_split(sims, same, split_pairs(lfw_dir), threshold),
    )


def _split_rows(split: LfwSplit) -> list[tuple[str, str]]:
    return [
        ("split: tuning / held-out pairs", f"{split.tuning_pairs} / {split.held_out_pairs}"),
        ("threshold tuned on the tuning pairs", f"{split.tuned_threshold:.3f}"),
        ("held-out accuracy at the tuned threshold", f"{split.held_out_at_tuned:.2%}"),
        ("held-out accuracy at its best threshold", f"{split.held_out_best:.2%}"),
        (
            f"held-out accuracy at SAME_PERSON_THRESHOLD {SAME_PERSON_THRESHOLD}",
            f"{split.held_out_shipped:.2%}",
        ),
    ]


def _pair_similarity(a: LfwImage, b: LfwImage) -> float:
    if a.subject is None or b.subject is None:
        return -1.0
    return float(cosine(a.subject, b.subject))


def _eval_lfw(args: argparse.Namespace) -> int:
    lfw_dir = args.data / "faces" / "lfw_dev"
    result = evaluate_lfw(lfw_dir, embed_lfw(_pipeline(args), lfw_dir))
    same, different = result.similarity[result.same], result.similarity[~result.same]
    rows = [
        ("pairs (same / different)", f"{result.pairs} ({same.size} / {different.size})"),
        ("images", result.images),
        ("no face at score 0.6 (fallback to 0.3 used)", len(result.fallback_used)),
        ("no face at all", len(result.not_found)),
        ("lowest same-person similarity", f"{float(same.min()):.3f}"),
        ("highest different-person similarity", f"{float(different.max()):.3f}"),
        ("best threshold (middle of the best range)", f"{result.best_threshold:.3f}"),
        ("accuracy at best threshold", f"{result.best_accuracy:.2%}"),
        (
            f"accuracy at SAME_PERSON_THRESHOLD {SAME_PERSON_THRESHOLD}",
            f"{result.shipped_accuracy:.2%}",
        ),
        *_split_rows(result.split),
    ]
    print(render_table(("LFW dev fold", "value"), rows))
    for name in result.fallback_used:
        print(f"fallback: {name}")
    return 0


# --- watch list ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Gallery:
    embeddings: F32
    labels: list[str]

    @property
    def threshold(self) -> float:
        """The 1:N threshold the hub would use for a gallery this size."""
        return threshold_for_gallery(len(self.labels))

    def match(self, probes: F32) -> list[str | None]:
        return match_gallery(probes, self.embeddings, self.labels, self.threshold)

    def best_similarity(self, probes: F32) -> F32:
        """Per probe, the highest similarity to anyone in the gallery."""
        if len(probes) == 0:
            return np.zeros((0,), np.float32)
        best: F32 = cosine(np.atleast_2d(probes), self.embeddings).max(axis=1)
        return best


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def load_gallery(pipeline: FacePipeline, train_dir: Path) -> Gallery:
    """The largest face of each image in ``train_dir/<name>/``, labelled <name>."""
    from ringwatch.progress import progress

    vectors, labels = [], []
    photos = [
        (person.name, path)
        for person in sorted(p for p in train_dir.iterdir() if p.is_dir())
        for path in image_files(person)
    ]
    with progress(f"enrolling {train_dir}", total=len(photos), unit="photos") as advance:
        for name, path in photos:
            _, vector = pipeline.largest_face_embedding(read_image(path), source=str(path))
            vectors.append(vector)
            labels.append(name)
            advance(1)
    if not vectors:
        raise InputError(f"{train_dir}: no gallery images in its sub-folders")
    return Gallery(np.stack(vectors).astype(np.float32), labels)


def probe_matches(pipeline: FacePipeline, gallery: Gallery, path: Path) -> list[str | None]:
    """The match for every face in the image, faces ordered left to right."""
    faces = pipeline.detect_and_embed(read_image(path))
    if faces.embeddings is None or len(faces) == 0:
        return []
    order = np.argsort(faces.xyxy[:, 0])
    return gallery.match(faces.embeddings[order])


def video_faces(
    pipeline: FacePipeline, path: Path, every_n: int = CLIP_EVERY_N_FRAMES
) -> Iterator[tuple[int, Detections]]:
    """(frame index, faces with embeddings) for every ``every_n``-th frame of a video."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise InputError(f"{path}: cannot be opened as a video")
    try:
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if index % every_n == 0:
                yield index, pipeline.detect_and_embed(np.asarray(frame, dtype=np.uint8))
            index += 1
    finally:
        capture.release()


def _eval_watchlist(args: argparse.Namespace) -> int:
    pipeline = _pipeline(args)
    demo = args.data / "faces" / "watchlist_demo"
    gallery = load_gallery(pipeline, demo / "knn" / "train")
    print(
        f"gallery: {len(gallery.labels)} templates of {len(set(gallery.labels))} people; "
        f"1:N threshold for {len(gallery.labels)} templates {gallery.threshold:.3f}\n"
    )
    rows = [
        (p.name, ", ".join(_describe(pipeline, gallery, p)) or "-")
        for p in image_files(demo / "knn" / "test")
    ]
    print(render_table(("probe", "faces left to right: match (best similarity)"), rows))
    _print_lfw_against(pipeline, gallery, args.data / "faces" / "lfw_dev")
    _print_clip(pipeline, demo)
    return 0


def _describe(pipeline: FacePipeline, gallery: Gallery, path: Path) -> list[str]:
    faces = pipeline.detect_and_embed(read_image(path))
    if faces.embeddings is None or len(faces) == 0:
        return []
    embeddings = faces.embeddings[np.argsort(faces.xyxy[:, 0])]
    best = gallery.best_similarity(embeddings)
    matches = gallery.match(embeddings)
    return [f"{m or 'nobody'} ({b:.3f})" for m, b in zip(matches, best, strict=True)]


def _print_lfw_against(pipeline: FacePipeline, gallery: Gallery, lfw_dir: Path) -> None:
    images = embed_lfw(pipeline, lfw_dir)
    hits, best = 0, -1.0
    faces = sum(len(image.faces) for image in images.values())
    for lfw_image in images.values():
        if lfw_image.faces.embeddings is not None and len(lfw_image.faces):
            hits += sum(m is not None for m in gallery.match(lfw_image.faces.embeddings))
            best = max(best, float(gallery.best_similarity(lfw_image.faces.embeddings).max()))
    print(
        f"\nLFW dev faces matching anyone in the gallery: {hits} of {faces} "
        f"(highest similarity {best:.3f})"
    )


def _print_clip(pipeline: FacePipeline, demo: Path) -> None:
    _, lin = pipeline.largest_face_embedding(read_image(demo / "lin-manuel-miranda.png"))
    clip = demo / "short_hamilton_clip.mp4"
    sampled, matched, best = 0, [], -1.0
    for index, faces in video_faces(pipeline, clip):
        sampled += 1
        if faces.embeddings is not None and len(faces):
            sims = cosine(faces.embeddings, lin)
            best = max(best, float(sims.max()))
            if float(sims.max()) >= threshold_for_gallery(1):
                matched.append(index)
    print(
        f"{clip.name}: lin-manuel-miranda.png matched in {len(matched)} of {sampled} sampled "
        f"frames (every {CLIP_EVERY_N_FRAMES}th; frames {matched[:1]}..{matched[-1:]}), "
        f"highest similarity {best:.3f}"
    )
