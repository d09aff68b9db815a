"""Evidence clips: a rolling pre-roll per camera, and an H.264 MP4 around every alert.

- :class:`PreRoll` keeps the last ``pre_roll_s`` seconds of one camera's analysed frames as
  masked JPEGs (downscaled to ``max_side``): memory is bounded by time, frame count and bytes
  (docs/evidence.md gives the cost at 640x360 and 1080p).
- :class:`ClipWindow` decides when a clip ends: lasting alerts (intrusion, loitering, shed)
  keep it open until their end phase; instant ones (a line crossing, a face) only extend
  it. It stops ``post_roll_s`` after the last activity, or at ``max_s`` in all.
- :class:`Mp4Writer` streams the JPEGs into one ffmpeg process per clip (libx264, yuv420p,
  ``+faststart`` so a browser starts playing before the end), filling gaps so the clip runs
  at a constant rate (the camera's fps, at most ``clips.fps``) on the frames' own time axis.
- :class:`CameraClips` is the hook the camera pipeline calls once per analysed frame: it
  only puts the frame on a bounded in-memory queue (about 1 s of frames; a full queue drops
  the frame and counts it), so masking, JPEG encoding and ffmpeg all run in the camera's
  ``clips-<id>`` thread, at most ``clips.fps`` frames a second, and never block the loop.
  Alerts whose event carries no snapshot (faces, line crossings) also queue a full-frame
  masked snapshot. Finished clips go to the
  durable :class:`~ringwatch.edge.clips_queue.MediaQueue`.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import logging
import os
import queue
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from ringwatch.contract.ids import new_event_id
from ringwatch.contract.media import MediaKind, MediaMeta
from ringwatch.contract.messages import Event, Phase
from ringwatch.contract.topics import EventKind
from ringwatch.edge.config import ClipsConfig
from ringwatch.errors import InputError, RingwatchError

log = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]
LASTING = frozenset({EventKind.INTRUSION, EventKind.LOITERING, EventKind.SHED})
INBOX_S = 1.0  # the clips thread may fall this far behind before frames are dropped


class ClipError(RingwatchError):
    """A clip could not be encoded (ffmpeg missing, failed, or given no frames)."""


class Masker(Protocol):
    """The camera's privacy mask (:class:`~ringwatch.edge.privacy.PrivacyMask`)."""

    def apply(self, image: Image) -> Image: ...


class Sink(Protocol):
    """Where finished media go (:class:`~ringwatch.edge.clips_queue.MediaQueue`)."""

    def put(self, meta: MediaMeta, data: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class Shot:
    """One masked frame as JPEG, at its capture time (epoch seconds)."""

    at: float
    jpeg: bytes
    width: int
    height: int


def encode_shot(image: Image, at: float, mask: Masker | None, max_side: int, quality: int) -> Shot:
    """Mask, downscale to ``max_side`` and JPEG-encode one frame."""
    import cv2

    masked = image if mask is None else mask.apply(image)
    h, w = masked.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        size = (max(2, round(w * scale)), max(2, round(h * scale)))
        masked = np.asarray(cv2.resize(masked, size, interpolation=cv2.INTER_AREA), np.uint8)
    ok, buf = cv2.imencode(".jpg", masked, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise InputError("cv2 could not encode a JPEG")
    return Shot(at, bytes(buf.tobytes()), int(masked.shape[1]), int(masked.shape[0]))


class PreRoll:
    """The newest shots covering ``seconds``, never more than ``max_frames``/``max_bytes``."""

    def __init__(self, seconds: float, max_frames: int, max_bytes: int) -> None:
        self.seconds = seconds
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self._shots: collections.deque[Shot] = collections.deque()
        self.bytes = 0

    def add(self, shot: Shot) -> None:
        self._shots.append(shot)
        self.bytes += len(shot.jpeg)
        while self._shots and (
            shot.at - self._shots[0].at > self.seconds
            or len(self._shots) > self.max_frames
            or self.bytes > self.max_bytes
        ):
            self.bytes -= len(self._shots.popleft().jpeg)

    def shots(self) -> list[Shot]:
        return list(self._shots)

    def latest(self) -> Shot | None:
        return self._shots[-1] if self._shots else None

    def __len__(self) -> int:
        return len(self._shots)


def alert_key(event: Event) -> tuple[str, int | None, str | None]:
    return (event.kind.value, event.track_id, event.zone_id)


@dataclass(slots=True)
class ClipWindow:
    """When one clip ends; see the module docstring."""

    started_at: float
    post_roll_s: float
    max_s: float
    last_activity: float = 0.0
    open: set[tuple[str, int | None, str | None]] = field(default_factory=set)
    event_ids: list[str] = field(default_factory=list)

    def absorb(self, events: Iterable[Event], at: float) -> None:
        for event in events:
            key = alert_key(event)
            if event.phase is Phase.END:
                self.open.discard(key)
            else:
                if event.kind in LASTING:
                    self.open.add(key)
                if event.event_id not in self.event_ids and len(self.event_ids) < 256:
                    self.event_ids.append(event.event_id)
            self.last_activity = max(self.last_activity, at)

    def done(self, at: float) -> bool:
        if at - self.started_at >= self.max_s:
            return True
        return not self.open and at >= self.last_activity + self.post_roll_s


class Mp4Writer:
    """One clip: JPEG shots piped into ffmpeg -> H.264 MP4 at a constant ``fps``."""

    def __init__(self, ffmpeg: str, path: Path, fps: float, crf: int) -> None:
        binary = shutil.which(ffmpeg)
        if binary is None:
            raise ClipError(f"ffmpeg not found ({ffmpeg!r}); install ffmpeg with libx264")
        self.path = path
        self.fps = fps
        self.frames = 0
        self.first: Shot | None = None
        self.last: Shot | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - ffmpeg's stderr, closed in finish
        args = [
            binary, "-nostdin", "-loglevel", "error", "-y",
            "-f", "image2pipe", "-c:v", "mjpeg", "-framerate", f"{fps:g}", "-i", "-",
            "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf),
            "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2", "-pix_fmt", "yuv420p",
            "-movflags", "+faststart", "-threads", "1", str(path),
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log
        )
        with contextlib.suppress(OSError):  # encoding yields to the analysis
            os.setpriority(os.PRIO_PROCESS, self._proc.pid, 10)

    def write(self, shot: Shot) -> None:
        """Add ``shot``, repeated to fill the slots since the previous one (skipped if it
        comes faster than ``fps``)."""
        if self.first is None:
            self.first = shot
        slot = round((shot.at - self.first.at) * self.fps) + 1
        copies = max(0, slot - self.frames) if self.frames else 1
        assert self._proc.stdin is not None
        try:
            for _ in range(copies):
                self._proc.stdin.write(shot.jpeg)
        except (BrokenPipeError, OSError) as exc:
            raise ClipError(f"ffmpeg stopped taking frames: {exc}; {self._errors()}") from None
        self.frames += copies
        self.last = shot

    def finish(self, timeout_s: float = 120.0) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.close()
            rc = self._proc.wait(timeout_s)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.abort()
            raise ClipError(f"ffmpeg did not finish: {exc}") from None
        errors = self._errors()
        self._log.close()
        if rc != 0 or self.frames == 0:
            raise ClipError(f"ffmpeg exited {rc} after {self.frames} frames: {errors}")

    def abort(self) -> None:
        self._proc.kill()
        self._proc.wait()
        self._log.close()

    def _errors(self) -> str:
        self._log.seek(0)
        return self._log.read()[-500:].decode(errors="replace").strip()


@dataclass(slots=True)
class ClipStats:
    frames: int = 0
    dropped_frames: int = 0
    clips: int = 0
    clip_errors: int = 0
    snapshots: int = 0
    preroll_frames: int = 0
    preroll_bytes: int = 0
    encode_s: float = 0.0


@dataclass(frozen=True, slots=True)
class CameraRef:
    site: str
    device: str
    camera: str


_Item = tuple[Image | None, float, Sequence[Event], Masker | None]


class CameraClips:
    """One camera's clip recorder; the per-frame loop calls :meth:`observe` (never blocks)."""

    def __init__(
        self, ref: CameraRef, config: ClipsConfig, fps: float, sink: Sink, work_dir: Path
    ) -> None:
        self.ref = ref
        self.config = config
        self.sink = sink
        self.work_dir = work_dir
        self.kinds = frozenset(config.kinds)
        self.fps = min(fps, config.fps)  # a clip needs no more; each frame kept costs CPU
        self._taken = float("-inf")
        self.stats = ClipStats()
        frames = max(2, int(config.pre_roll_s * self.fps) + 2)
        self.preroll = PreRoll(config.pre_roll_s, frames, frames * 1024 * 1024)
        # Bounded in time, not only frames: each waiting item holds one raw decoded frame
        # (6.2 MB at 1080p), so at most ~1 s of them (4..16) may wait.
        size = min(16, max(4, round(self.fps * INBOX_S)))
        self._inbox: queue.Queue[_Item | None] = queue.Queue(size)
        self._window: ClipWindow | None = None
        self._writer: Mp4Writer | None = None
        self.thread = threading.Thread(target=self._run, name=f"clips-{ref.camera}", daemon=True)
        self.thread.start()

    # -- called from the camera and sensor threads ----------------------------------------

    def observe(
        self, image: Image, at: float, events: Sequence[Event], mask: Masker | None
    ) -> None:
        """One analysed frame and the events it raised, queued for the clips thread. A full
        queue drops a plain frame at once (counted); a frame that raised an alert waits up to
        0.2 s for room."""
        alert = any(self._wanted(events))
        if not alert and at - self._taken < 0.999 / self.fps:
            return  # above the clip frame rate: not needed
        self._taken = at
        self._offer((image, at, list(events), mask), must=alert)

    def alert(self, events: Sequence[Event]) -> None:
        """Alerts raised without a frame (shed sensor readings)."""
        if any(self._wanted(events)):
            at = max(e.captured_at for e in events).timestamp()
            self._offer((None, at, list(events), None), must=True)

    @property
    def backlog(self) -> int:
        """Frames waiting for the clips thread."""
        return self._inbox.qsize()

    def close(self, timeout_s: float = 120.0) -> None:
        """Finish the clip being recorded and stop the thread."""
        self._inbox.put(None)
        self.thread.join(timeout_s)

    def _offer(self, item: _Item, must: bool) -> None:
        try:
            if must:
                self._inbox.put(item, timeout=0.2)
            else:
                self._inbox.put_nowait(item)
        except queue.Full:
            self.stats.dropped_frames += 1

    def _wanted(self, events: Iterable[Event]) -> Iterable[Event]:
        return (e for e in events if e.kind.value in self.kinds)

    # -- the clips thread -------------------------------------------------------------------

    def _run(self) -> None:
        with contextlib.suppress(OSError):  # Linux nices threads one by one: analysis first
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        while True:
            item = self._inbox.get()
            if item is None:
                break
            try:
                self._handle(*item)
            except Exception as exc:  # a bad frame or clip must not stop the recorder
                self.stats.clip_errors += 1
                log.warning("camera %s: clip step failed: %s", self.ref.camera, exc)
                self._drop_clip()
        if self._window is not None:
            self._finish()

    def _handle(
        self, image: Image | None, at: float, events: Sequence[Event], mask: Masker | None
    ) -> None:
        if image is not None:
            shot = encode_shot(image, at, mask, self.config.max_side, self.config.jpeg_quality)
            self.stats.frames += 1
            self.preroll.add(shot)
            self.stats.preroll_frames, self.stats.preroll_bytes = (
                len(self.preroll), self.preroll.bytes,
            )  # fmt: skip
            if self._writer is not None:
                self._writer.write(shot)
        wanted = list(self._wanted(events))
        if wanted:
            self._snapshots(wanted)
            if self._window is None:
                self._begin(at)
            assert self._window is not None
            self._window.absorb(wanted, at)
        if self._window is not None and self._window.done(at):
            self._finish()

    def _begin(self, at: float) -> None:
        shots = self.preroll.shots()
        first = shots[0].at if shots else at
        self._window = ClipWindow(first, self.config.post_roll_s, self.config.max_s)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        path = self.work_dir / f"{self.ref.camera}-{new_event_id()}.mp4"
        self._writer = Mp4Writer(self.config.ffmpeg, path, self.fps, self.config.crf)
        for shot in shots:
            self._writer.write(shot)

    def _finish(self) -> None:
        window, writer = self._window, self._writer
        self._window, self._writer = None, None
        if window is None or writer is None:
            return
        started = dt.datetime.now(dt.UTC)
        try:
            writer.finish()
            data = writer.path.read_bytes()
        except ClipError as exc:
            self.stats.clip_errors += 1
            log.error("camera %s: clip lost: %s", self.ref.camera, exc)
            return
        finally:
            writer.path.unlink(missing_ok=True)
        self.stats.encode_s += (dt.datetime.now(dt.UTC) - started).total_seconds()
        assert writer.first is not None and writer.last is not None
        self._put(MediaKind.CLIP, window.event_ids, writer.first, writer.last, writer.frames, data)
        self.stats.clips += 1

    def _drop_clip(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer.path.unlink(missing_ok=True)
        self._window, self._writer = None, None

    def _snapshots(self, events: Sequence[Event]) -> None:
        """A full-frame masked snapshot for alerts whose event carries none (faces carry a
        crop, line crossings nothing; intrusion, loitering and shed events have one)."""
        shot = self.preroll.latest()
        starts = [e.event_id for e in events if e.phase is Phase.START and e.kind not in LASTING]
        if shot is None or not starts:
            return
        self._put(MediaKind.SNAPSHOT, starts, shot, shot, 1, shot.jpeg)
        self.stats.snapshots += 1

    def _put(
        self,
        kind: MediaKind,
        event_ids: list[str],
        first: Shot,
        last: Shot,
        frames: int,
        data: bytes,
    ) -> None:
        meta = MediaMeta(
            media_id=new_event_id(),
            kind=kind,
            site=self.ref.site,
            device=self.ref.device,
            camera=self.ref.camera,
            event_ids=event_ids[:256],
            started_at=dt.datetime.fromtimestamp(first.at, dt.UTC),
            ended_at=dt.datetime.fromtimestamp(last.at, dt.UTC),
            frames=frames,
            width=first.width,
            height=first.height,
        )
        self.sink.put(meta, data)
