"""Does alignment-jitter test-time augmentation raise held-out TPIR? (issue 16)

Each face is aligned onto the ArcFace template as shipped and onto copies of it scaled by
0.93 / 1.07 about its centre ("scale", 3 views) or shifted by 2 px left, right, up and down
("shift", 5 views), or all seven; SFace embeds every view and the unit vectors are
averaged. Then the shipped protocol of ``ringwatch faces eval-identification`` runs on
those embeddings (tuning half calibrates at FPIR <= 1% with 95% confidence, held-out half
reports), one and two templates per person. Costs 3-7 SFace runs per face.

    .venv/bin/python tools/align_jitter.py [--data ../shared/data] [--models DIR]
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from ringwatch.edge import identification_eval as ie
from ringwatch.edge.faces_cli import LfwImage
from ringwatch.models import sface

F32 = npt.NDArray[np.float32]
CENTRE = sface.ARCFACE_TEMPLATE.mean(axis=0)
TEMPLATES: dict[str, list[F32]] = {
    "scale": [(sface.ARCFACE_TEMPLATE - CENTRE) * s + CENTRE for s in (1.0, 0.93, 1.07)],
    "shift": [
        sface.ARCFACE_TEMPLATE + np.array(d, np.float32)
        for d in ((0, 0), (2, 0), (-2, 0), (0, 2), (0, -2))
    ],
}
TEMPLATES["all"] = TEMPLATES["scale"] + TEMPLATES["shift"][1:]


def jittered(
    embedder: sface.FaceEmbedder, bgr: npt.NDArray[np.uint8], landmarks: F32, templates: list[F32]
) -> F32:
    """The face aligned onto each template, embedded, the unit vectors averaged."""
    views = [
        sface.l2_normalise(embedder.embed_aligned(sface.align_face(bgr, landmarks, template)))
        for template in templates
    ]
    return sface.l2_normalise(np.sum(views, axis=0))


def main() -> int:
    lfw, pipeline, images = ie.tool_inputs(__doc__.splitlines()[0])

    def variants() -> Iterator[tuple[str, dict[str, LfwImage]]]:
        yield "shipped (1 view)", images
        for name, templates in TEMPLATES.items():
            yield (
                name,
                ie.reembedded(
                    images, lfw, functools.partial(jittered, pipeline.embedder, templates=templates)
                ),
            )

    ie.print_variants("alignment, templates", variants())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
