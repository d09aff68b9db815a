"""What tiled person detection costs a frame on this box: CPU ms per frame (median, p95)
and detector runs, for each tiling setting docs/perception.md discusses, at the Town Centre
clip's 690x388 and at 1920x1080 (the same frames enlarged: the cost depends on the size,
not on what the frame shows).

    .venv/bin/python tools/tiling_cost.py [--data ../shared/data] [--threads 1] [--repeat 3]
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import cv2
import numpy as np

from ringwatch.edge.perception_cli import sample_video
from ringwatch.models.install import model_path
from ringwatch.models.manifest import default_models_dir, load_manifest
from ringwatch.models.perception import person_detector
from ringwatch.models.runtime import OnnxModel, RuntimeOptions
from ringwatch.models.tiling import TiledDetector, Tiling

SETTINGS = {
    (690, 388): [Tiling("off"), Tiling("on", 416), Tiling("on", 352)],
    (1920, 1080): [Tiling("off"), Tiling("auto", 832), Tiling("on", 624), Tiling("on", 416)],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--models", type=Path, default=default_models_dir())
    parser.add_argument("--model", default="yolox_nano", choices=["yolox_nano", "nanodet"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    path = model_path(load_manifest().get(args.model), args.models)
    model = OnnxModel(path, RuntimeOptions(threads=args.threads))
    plain = person_detector(model, args.model, 0.3)
    clip = args.data / "video/towncentre_clip_example01.mp4"  # 10 fps: every 4th frame
    frames = [frame for _, _, frame in itertools.islice(sample_video(clip, 2.5), 10)]
    print(f"{args.model}, {args.threads} thread(s), {len(frames)} frames x {args.repeat}")
    print("| frame | tiling | runs / frame | ms / frame median | p95 |\n|---|---|---|---|---|")
    for size, tilings in SETTINGS.items():
        images = [np.asarray(cv2.resize(f, size), np.uint8) for f in frames]
        for tiling in tilings:
            detector = TiledDetector(plain, tiling)
            detector.detect(images[0])  # warm-up
            seconds = []
            for _ in range(args.repeat):
                for image in images:
                    start = time.perf_counter()
                    detector.detect(image)
                    seconds.append(time.perf_counter() - start)
            ms = np.asarray(seconds) * 1000
            name = "off" if tiling.mode == "off" else f"{tiling.mode} {tiling.tile} px"
            print(f"| {size[0]}x{size[1]} | {name} | {tiling.runs(*size)} | "
                  f"{np.median(ms):.0f} | {np.percentile(ms, 95):.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
