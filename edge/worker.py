"""One thread per camera: read the newest frame, analyse it at the camera's fps, hand the
events to the sink. Per-frame errors are counted, rate-limit logged and skipped; one slow
camera never stalls another (each has its own thread and source).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from ringwatch.contract.messages import Event
from ringwatch.edge.capture import LIVE_SCHEMES, Frame, FrameSource
from ringwatch.edge.config import CameraConfig, MotionConfig
from ringwatch.edge.motion import MotionGate
from ringwatch.edge.outbox import OutboxError
from ringwatch.edge.pipeline import Analyzer, CameraPipeline, EventSink, Found

log = logging.getLogger("ringwatch.edge.agent")  # one logger for the agent's parts


class Pacer:
    """Lets through at most ``fps`` frames per second of the given time axis."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self._slack = self.period * 1e-3  # frame times are rounded floats
        self._next: float | None = None

    def due(self, t: float) -> bool:
        went_back = self._next is not None and t < self._next - 2 * self.period
        if self._next is None or went_back:  # first frame, or a file looped / stream restarted
            self._next = t + self.period
            return True
        if t + self._slack < self._next:
            return False
        following = self._next + self.period
        self._next = following if following > t + self._slack else t + self.period
        return True


@dataclass(slots=True)
class WorkerStats:
    analysed: int = 0
    frame_errors: int = 0
    latency_ms: float = 0.0
    events: int = 0
    refused: int = 0
    still: int = 0  # analysed frames that reused the last detections (motion gating)
    times: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # recent per-frame ms (bench p95)

    def fps(self, now: float, window_s: float = 10.0) -> float:
        recent = [t for t in self.times if now - t <= window_s]
        self.times = recent
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)


class CameraWorker:
    """One camera's thread: newest frame -> analyse at the camera's fps -> events -> sink."""

    def __init__(
        self,
        config: CameraConfig,
        source: FrameSource,
        analyzer: Analyzer,
        pipeline: CameraPipeline,
        sink: EventSink,
        clock: Callable[[], float] = time.monotonic,
        motion: MotionConfig | None = None,
        paced: bool = True,
    ) -> None:
        self.config = config
        self.source = source
        self.analyzer = analyzer
        self.pipeline = pipeline
        self.sink = sink
        self.stats = WorkerStats()
        self._clock = clock
        self._pacer = Pacer(config.fps)
        self._paced = paced  # False: analyse every frame as fast as it can (bench --unpaced)
        motion = motion or MotionConfig()
        # Fire cameras are never gated: smoke can build up slowly and faintly.
        gated = motion.enabled and "fire" not in config.tasks
        self.gate = MotionGate(motion) if gated else None
        self._last_found: Found | None = None
        self._stream_time = is_file_source(config.source)
        # Embed every face only when the pipeline cannot embed the shots it publishes.
        self._embed = "faces" in config.tasks and pipeline.embedder is None
        self._last_error_log = 0.0
        self._stop = threading.Event()
        self._origin: float | None = None
        self._last_ts = 0.0
        self.thread = threading.Thread(target=self.run, name=f"camera-{config.id}", daemon=True)
        self.finished = threading.Event()

    def run(self, stop: threading.Event | None = None) -> None:
        stop = stop or self._stop
        try:
            while not stop.is_set():
                frame = self.source.read(timeout=0.5)
                if frame is None:
                    if not self.source.status().online and self._stream_time:
                        break  # a file that has ended
                    continue
                if self._stream_time:
                    frame = self._recording_time(frame)
                if not self._paced or self._pacer.due(
                    frame.ts if self._stream_time else frame.captured_at
                ):
                    self.step(frame)
        finally:
            now = dt.datetime.now(dt.UTC)
            self._emit(self.pipeline.close(now))
            self.finished.set()

    def step(self, frame: Frame) -> None:
        """Analyse one frame; a failure is counted and logged at most every 10 s."""
        started = self._clock()
        try:
            found = self._found(frame)
            self._emit(self.pipeline.process(frame, found))
        except Exception as exc:  # one bad frame must not stop the camera
            self.stats.frame_errors += 1
            if started - self._last_error_log > 10:
                self._last_error_log = started
                log.warning("camera %s: frame failed: %s", self.config.id, exc, exc_info=True)
            return
        done = self._clock()
        self.stats.analysed += 1
        self.stats.times.append(done)
        if len(self.stats.times) > 1000:
            del self.stats.times[:500]
        took = (done - started) * 1000
        self.stats.latencies.append(took)
        if len(self.stats.latencies) > 2000:
            del self.stats.latencies[:1000]
        self.stats.latency_ms = (
            took if self.stats.analysed == 1 else 0.8 * self.stats.latency_ms + 0.2 * took
        )

    def _found(self, frame: Frame) -> Found:
        """The detectors' findings, or the last ones again when the motion gate says the
        scene has not changed (the gate forces a full check every ``recheck_every``)."""
        gate = self.gate
        if gate is not None and self._last_found is not None:
            if not gate.needs_analysis(frame.image):
                self.stats.still += 1
                return self._last_found
        elif gate is not None:
            gate.needs_analysis(frame.image)
        found = self.analyzer.analyze(frame.image, self._embed)
        if gate is not None:
            gate.analysed()
            self._last_found = found
        return found

    def _recording_time(self, frame: Frame) -> Frame:
        """A recording's frames are timed by their stream position from when it started, so
        dwell times do not depend on how fast this box decodes (a loop continues the time)."""
        if self._origin is None or frame.ts < self._last_ts:
            last = self._origin + self._last_ts if self._origin is not None else None
            self._origin = frame.captured_at - frame.ts if last is None else last - frame.ts
        self._last_ts = frame.ts
        return replace(frame, captured_at=self._origin + frame.ts)

    def start(self, stop: threading.Event) -> None:
        self._stop = stop
        self.thread.start()

    def _emit(self, events: Sequence[Event]) -> None:
        for event in events:
            try:
                self.sink.put(event)
            except OutboxError as exc:  # full or unwritable: counted there and here; goes on
                self.stats.refused += 1
                log.error("camera %s: event %s refused: %s", self.config.id, event.event_id, exc)
                continue
            self.stats.events += 1


def is_file_source(source: str) -> bool:
    return not (source.startswith("usb:") or source.startswith(LIVE_SCHEMES))
