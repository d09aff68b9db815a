"""Could mirrored enrolment templates raise watch-list TPIR? An upper bound (issue 16).

Mirrored templates would enrol each photo twice, as taken and mirrored, and score a probe
by its best template. That can only raise a probe's score to max(plain, mirror), and with
twice the templates the impostors' best scores can only rise too, so the gallery-size
threshold calibrated for it can only rise. Hence a held-out miss today can become a hit
only if its score against its person's *mirrored* templates reaches today's threshold. This
counts those misses per gallery size, on the same probes as ``ringwatch faces
eval-identification`` (two templates per person, plain embeddings), without building or
calibrating the variant: if none can cross, it cannot help.

    .venv/bin/python tools/mirror_bound.py [--data ../shared/data] [--models DIR]
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from ringwatch.edge import identification_eval as ie
from ringwatch.edge.faces_cli import LfwImage
from ringwatch.models import sface
from ringwatch.models.faces import FacePipeline, read_image
from ringwatch.models.identification import threshold_for_gallery
from ringwatch.table import render_table

F32 = npt.NDArray[np.float32]


def main() -> int:
    lfw, pipeline, images = ie.tool_inputs(__doc__.splitlines()[0])
    for half, select in (("tuning", ie.TUNING), ("held-out", ie.HELD_OUT)):
        scores = _mated_scores(
            images, select, lambda key: _mirrored(pipeline, lfw / key, images[key])
        )
        people = len({Path(key).parent.name for key, _, _ in scores})
        gain = np.array([mirror - plain for _, plain, mirror in scores])
        print(f"\n{half} half: {len(scores)} mated probes of {people} people; mirrored minus "
              f"plain template score: mean {gain.mean():+.3f}, max {gain.max():+.3f}")  # fmt: skip
        rows = []
        for size in (people, *ie.GALLERY_SIZES):
            threshold = threshold_for_gallery(size)
            missed = [(k, p, m) for k, p, m in scores if p < threshold]
            could = [Path(k).name for k, _, m in missed if m >= threshold]
            best = (len(scores) - len(missed) + len(could)) / len(scores)
            rows.append(
                (
                    f"{size:,}",
                    f"{threshold:.3f}",
                    f"{1 - len(missed) / len(scores):.3f}",
                    str(len(missed)),
                    f"{len(could)} {could}" if could else "0",
                    f"{best:.3f}",
                )
            )
        heads = ("gallery", "threshold", "TPIR", "misses", "could cross", "TPIR at best")
        print(render_table(heads, rows))
    return 0


def _mated_scores(
    images: dict[str, LfwImage], select: ie.Select, mirrored: Callable[[str], F32]
) -> list[tuple[str, float, float]]:
    """(probe key, best score against the person's templates, against their mirrors)."""
    out: list[tuple[str, float, float]] = []
    for name, keys in sorted(ie.lfw_identities(images).items()):
        found = [k for k in keys if images[k].subject_view(False) is not None]
        if not select(name) or len(found) < 2:
            continue
        first_probe = 2 if len(found) >= 3 else 1  # as ie.lfw_probe_set enrols them
        plain = np.stack([_plain(images[k]) for k in found[:first_probe]])
        mirror = np.stack([mirrored(k) for k in found[:first_probe]])
        for key in found[first_probe:]:
            probe = _plain(images[key])
            out.append((key, float((plain @ probe).max()), float((mirror @ probe).max())))
    return out


def _plain(image: LfwImage) -> F32:
    view = image.subject_view(False)
    assert view is not None
    return view


def _mirrored(pipeline: FacePipeline, path: Path, image: LfwImage) -> F32:
    assert image.faces.landmarks is not None and image.subject_index is not None
    aligned = sface.align_face(read_image(path), image.faces.landmarks[image.subject_index])
    mirror = np.ascontiguousarray(cv2.flip(aligned, 1), np.uint8)
    return sface.l2_normalise(pipeline.embedder.embed_aligned(mirror))


if __name__ == "__main__":
    raise SystemExit(main())
