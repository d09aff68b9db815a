"""What evidence clips cost on the edge: memory per camera, encoding, clip sizes, and the
analysed frame rate with clips on vs off (the figures in docs/evidence.md).

1. Memory: the pre-roll of one camera (masked JPEGs, ``max_side`` 1280) filled from the Town
   Centre clip scaled to 640x360 and to 1920x1080, at 5 and 10 fps, 5 s; plus the worst case
   of the frame queue into the clips thread (about 1 s of raw frames).
2. Encoding: a 15 s clip at 5 fps through ffmpeg (libx264, veryfast, crf 28): seconds and MB.
3. The per-frame loop: the real person model on the Town Centre clip looping in real time
   (a live camera at the clip's 10 fps, every frame asked for), shop closed so intrusions
   keep recording clips; analysed fps and CPU with clips off, then on.

    .venv/bin/python tools/clips_bench.py [--data ../shared/data] [--seconds 30] [--rounds 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from ringwatch.contract.zones import CameraZones
from ringwatch.edge.agent import CameraPipeline, CameraWorker, Ident
from ringwatch.edge.capture import open_source
from ringwatch.edge.clips import CameraClips, CameraRef, Mp4Writer, PreRoll, encode_shot
from ringwatch.edge.clips_queue import MediaQueue
from ringwatch.edge.config import ClipsConfig, load_site_config
from ringwatch.models.manifest import default_models_dir

REPO = Path(__file__).resolve().parent.parent


def frames(data: Path, size: tuple[int, int], n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(data / "video/towncentre_clip_example01.mp4"))
    out: list[np.ndarray] = []
    while len(out) < n:
        ok, image = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        out.append(cv2.resize(image, size, interpolation=cv2.INTER_LINEAR))
    cap.release()
    return out


def memory_table(data: Path) -> list[str]:
    head = "| frame size | clips.fps | pre-roll 5 s (JPEG, 1280) | per frame | queue worst |"
    rows = [head, "|---|---|---|---|---|"]
    for size in ((640, 360), (1920, 1080)):
        shots = frames(data, size, 50)
        for fps in (5, 10):
            roll = PreRoll(5.0, int(5 * fps) + 2, 10**9)
            for i, image in enumerate(shots[: int(5 * fps) + 1]):
                roll.add(encode_shot(image, i / fps, None, 1280, 80))
            queued = min(16, max(4, fps)) * size[0] * size[1] * 3
            per = roll.bytes / len(roll) / 1e3
            rows.append(
                f"| {size[0]}x{size[1]} | {fps} | {roll.bytes / 1e6:.2f} MB | {per:.0f} kB | "
                f"{queued / 1e6:.1f} MB |"
            )
    return rows


def encode_table(data: Path, tmp: Path) -> list[str]:
    rows = ["| frame size | 15 s at 5 fps: encode time | clip size |", "|---|---|---|"]
    for size in ((640, 360), (1920, 1080)):
        shots = [
            encode_shot(im, i / 5, None, 1280, 80) for i, im in enumerate(frames(data, size, 75))
        ]
        writer = Mp4Writer("ffmpeg", tmp / f"bench-{size[0]}.mp4", 5.0, 28)
        started = time.perf_counter()
        for shot in shots:
            writer.write(shot)
        writer.finish()
        took = time.perf_counter() - started
        mb = writer.path.stat().st_size / 1e6
        rows.append(
            f"| {size[0]}x{size[1]} (as {shots[0].width}x{shots[0].height}) | "
            f"{took:.2f} s | {mb:.2f} MB |"
        )
    return rows


def run_camera(data: Path, models: Path, seconds: float, clips_on: bool, tmp: Path) -> str:
    from ringwatch.models.perception import Perception
    from ringwatch.models.runtime import RuntimeOptions

    site = load_site_config(REPO / "configs/towncentre.yaml")
    cam = site.cameras[0]
    raw = cam.model_dump()
    raw["schedules"]["shop-hours"]["open"] = []
    zones = CameraZones.model_validate({k: raw[k] for k in CameraZones.model_fields})
    perception = Perception.from_models_dir(
        models, RuntimeOptions(threads=2), site.models.thresholds, {"persons"}, "yolox_nano"
    )
    pipeline = CameraPipeline(Ident(site.site, site.device, cam.id), zones)
    clips = None
    if clips_on:
        queue = MediaQueue(tmp / "queue", 10**10)
        clips = CameraClips(
            CameraRef(site.site, site.device, cam.id), ClipsConfig(), cam.fps, queue, tmp / "work"
        )
        pipeline.clips = clips
    source = open_source(
        str(data / "video/towncentre_clip_example01.mp4"), loop=True, realtime=True
    )
    worker = CameraWorker(cam, source, perception, pipeline, _Sink())
    stop = threading.Event()
    cpu0, wall0 = _cpu(), time.monotonic()
    worker.start(stop)
    time.sleep(seconds)
    stop.set()
    worker.thread.join(30)
    wall, cpu = time.monotonic() - wall0, _cpu() - cpu0
    analysed = worker.stats.analysed
    source.close()
    extra = ""
    if clips is not None:
        clips.close()
        st = clips.stats
        extra = (
            f"{st.clips} clips, {st.snapshots} snapshots, {st.dropped_frames} frames dropped "
            f"by the clips thread, pre-roll {st.preroll_bytes / 1e6:.2f} MB"
        )
    state = "on" if clips_on else "off"
    return (
        f"| {state} | {analysed / wall:.2f} | {worker.stats.latency_ms:.0f} ms | "
        f"{100 * cpu / wall:.0f}% | {extra} |"
    )


class _Sink:
    def put(self, event: object) -> None:
        pass


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # ffmpeg, once it has exited
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data")
    parser.add_argument("--models", type=Path, default=None)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs")
    args = parser.parse_args()
    models = args.models or default_models_dir()
    print(f"clips bench {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, load {_load()}\n")
    print("\n".join(memory_table(args.data)), "\n")
    with tempfile.TemporaryDirectory() as tmp:
        print("\n".join(encode_table(args.data, Path(tmp))), "\n")
        print(
            "| clips | analysed fps (10 wanted) | latency | CPU (process + ffmpeg) | clips made |"
        )
        print("|---|---|---|---|---|")
        for _ in range(args.rounds):  # alternated, so a change in load hits both alike
            for on in (False, True):
                print(run_camera(args.data, models, args.seconds, on, Path(tmp)), flush=True)
    print(f"\nload at the end {_load()}")


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


if __name__ == "__main__":
    main()
