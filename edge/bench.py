"""``ringwatch edge bench``: analysed fps, latency and CPU per camera, without a broker.

Three ways to run it, all on the site file's cameras (``--copies N``: N copies of the first):

- paced (default): every camera at its configured fps, recordings at their native rate, as
  the agent runs on a site; prints fps analysed, p95 latency and how many frames the motion
  gate let through as still;
- ``--unpaced``: every frame of the recording is analysed as fast as the box can (a
  recording played at its native rate would cap the figure at its own fps);
- ``--reference``: the first camera unpaced, alternating in rounds with a naive pipeline
  on the same clip (OpenCV's own FaceDetectorYN + FaceRecognizerSF and YOLOX on every
  frame, every face embedded, no tracking, no gating), printing both fps and the ratio.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ringwatch.edge.config import SiteConfig
from ringwatch.table import render_table


class CountingSink:
    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def put(self, event: object) -> None:
        with self._lock:
            self.count += 1


@dataclass(frozen=True, slots=True)
class CameraFigures:
    camera: str
    fps_wanted: float
    fps: float
    p95_ms: float
    still: int
    dropped: int
    errors: int


@dataclass(frozen=True, slots=True)
class RunFigures:
    wall_s: float
    cpu_s: float
    frames: int
    events: int
    cameras: list[CameraFigures]


def with_copies(cfg: SiteConfig, copies: int) -> SiteConfig:
    if copies <= 0:
        return cfg
    first = cfg.cameras[0]
    cams = [first.model_copy(update={"id": f"{first.id}-{k + 1}"}) for k in range(copies)]
    return cfg.model_copy(update={"cameras": cams})


def run_agent(cfg: SiteConfig, models_dir: Path, seconds: float, paced: bool) -> RunFigures:
    """The real agent on ``cfg``'s cameras for ``seconds`` (no broker, events counted)."""
    from ringwatch.edge.agent import Agent, load_analyzers
    from ringwatch.edge.capture import open_source

    analyzers, _ = load_analyzers(cfg, models_dir)
    sources = {
        c.id: open_source(c.source, loop=True, realtime=c.realtime and paced) for c in cfg.cameras
    }
    sink = CountingSink()
    embedders = {cid: p.embedder for cid, p in analyzers.items()}
    agent = Agent(cfg, analyzers, sources, sink, embedders=embedders, paced=paced)
    stop = threading.Event()
    wall0, cpu0 = time.monotonic(), time.process_time()
    agent.start(stop)
    stop.wait(seconds)
    wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
    stop.set()
    agent.join(timeout=10)
    for source in sources.values():
        source.close()
    cams = []
    for cam in cfg.cameras:
        status, stats = agent.camera_status()[cam.id]
        lat = stats.latencies
        cams.append(
            CameraFigures(
                camera=cam.id,
                fps_wanted=cam.fps,
                fps=stats.analysed / wall,
                p95_ms=float(np.percentile(lat, 95)) if lat else float("nan"),
                still=stats.still,
                dropped=status.dropped,
                errors=stats.frame_errors,
            )
        )
    frames = sum(w.analysed for _, w in agent.camera_status().values())
    return RunFigures(wall, cpu, frames, sink.count, cams)


def print_run(cfg: SiteConfig, run: RunFigures, paced: bool) -> None:
    load = os.getloadavg()[0]
    mode = "paced" if paced else "unpaced (every frame, as fast as it can)"
    print(
        f"{len(cfg.cameras)} camera(s), {mode}, {run.wall_s:.1f} s, {os.cpu_count()} CPUs "
        f"(load {load:.1f}), threads/model {cfg.models.threads}: process CPU "
        f"{100 * run.cpu_s / run.wall_s:.0f}% (100% = one core), "
        f"{run.frames / run.wall_s:.2f} frames analysed/s in all, "
        f"{run.cpu_s / max(run.frames, 1) * 1000:.0f} ms CPU per frame, {run.events} events"
    )
    rows = [
        (
            c.camera,
            f"{c.fps_wanted:g}" if paced else "all",
            f"{c.fps:.2f}",
            f"{c.p95_ms:.0f}",
            c.still,
            c.dropped,
            c.errors,
        )
        for c in run.cameras
    ]
    headers = ("camera", "fps wanted", "fps analysed", "p95 ms", "still", "dropped", "errors")
    print(render_table(headers, rows))


# -- the naive reference ------------------------------------------------------------------


class NaivePipeline:
    """OpenCV FaceDetectorYN + FaceRecognizerSF on every face + YOLOX on every frame."""

    def __init__(self, models_dir: Path, threads: int, person_threshold: float) -> None:
        import cv2

        from ringwatch.models.install import model_path
        from ringwatch.models.manifest import load_manifest
        from ringwatch.models.runtime import OnnxModel, RuntimeOptions
        from ringwatch.models.yolox import YoloxPersonDetector

        cv2.setNumThreads(threads)
        manifest = load_manifest()
        yunet = str(model_path(manifest.get("yunet"), models_dir))
        sface = str(model_path(manifest.get("sface"), models_dir))
        self.detector = cv2.FaceDetectorYN.create(yunet, "", (320, 320), 0.6, 0.3, 50)
        self.recognizer = cv2.FaceRecognizerSF.create(sface, "")
        yolox = OnnxModel(
            model_path(manifest.get("yolox_nano"), models_dir), RuntimeOptions("cpu", threads)
        )
        self.persons = YoloxPersonDetector(yolox, person_threshold)
        self._size: tuple[int, int] | None = None

    def analyse(self, bgr: np.ndarray) -> int:
        """Faces embedded in this frame (persons are detected and discarded)."""
        size = (int(bgr.shape[1]), int(bgr.shape[0]))
        if size != self._size:
            self.detector.setInputSize(size)
            self._size = size
        _, faces = self.detector.detect(bgr)
        embedded = 0
        for face in [] if faces is None else faces:
            self.recognizer.feature(self.recognizer.alignCrop(bgr, face))
            embedded += 1
        self.persons.detect(np.asarray(bgr, np.uint8))
        return embedded


def run_reference(source: str, pipeline: NaivePipeline, seconds: float) -> tuple[float, float]:
    """(fps, CPU ms per frame) of the naive pipeline decoding and analysing every frame."""
    from ringwatch.edge.capture import open_source

    src = open_source(source, loop=True, realtime=False)
    frames = 0
    wall0, cpu0 = time.monotonic(), time.process_time()
    try:
        while time.monotonic() - wall0 < seconds:
            frame = src.read(timeout=1.0)
            if frame is None:
                continue
            pipeline.analyse(frame.image)
            frames += 1
    finally:
        src.close()
    wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
    return frames / wall, cpu / max(frames, 1) * 1000


def compare(cfg: SiteConfig, models_dir: Path, seconds: float, rounds: int) -> float:
    """Ours vs the naive reference on the first camera, alternating; returns the ratio."""
    one = cfg.model_copy(update={"cameras": cfg.cameras[:1]})
    cam = one.cameras[0]
    naive = NaivePipeline(models_dir, cfg.models.threads, cfg.models.thresholds.person)
    ours_fps: list[float] = []
    ref_fps: list[float] = []
    rows = []
    for k in range(rounds):
        run = run_agent(one, models_dir, seconds, paced=False)
        ours_fps.append(run.frames / run.wall_s)
        fps, cpu_ms = run_reference(cam.source, naive, seconds)
        ref_fps.append(fps)
        ours_cpu = run.cpu_s / max(run.frames, 1) * 1000
        rows.append(
            (k + 1, f"{ours_fps[-1]:.2f}", f"{ours_cpu:.0f}", f"{fps:.2f}", f"{cpu_ms:.0f}")
        )
    ratio = sum(ours_fps) / max(sum(ref_fps), 1e-9)
    cpu_ratio = sum(float(r[4]) for r in rows) / max(sum(float(r[2]) for r in rows), 1e-9)
    print(
        f"camera {cam.id} ({cam.source}), tasks {cam.tasks}, unpaced, {rounds} round(s) of "
        f"{seconds:g} s each, alternating; load {os.getloadavg()[0]:.1f}"
    )
    headers = ("round", "ours fps", "ours ms CPU/frame", "reference fps", "ref ms CPU/frame")
    print(render_table(headers, rows))
    print(
        f"ours {sum(ours_fps) / rounds:.2f} fps, reference {sum(ref_fps) / rounds:.2f} fps: "
        f"ratio {ratio:.2f}x (reference: OpenCV FaceDetectorYN + FaceRecognizerSF on every "
        "face + YOLOX-nano on every frame, no tracking)"
    )
    print(f"CPU per frame: reference / ours = {cpu_ratio:.2f}x (steadier than fps on a loaded box)")
    return ratio
