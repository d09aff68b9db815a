"""Frame sources: video files, RTSP, HTTP (MJPEG / MPEG-TS) and USB cameras.

Every source is a :class:`FrameSource`: ``read(timeout)`` gives the next :class:`Frame` or
None, ``status()`` says whether it is online and how it is doing, ``close()`` ends it.

Live streams (:class:`LiveSource`) have one reader thread that keeps only the newest frame,
so a slow consumer analyses fresh frames and the rest are counted as dropped. A lost stream
is released and reopened with capped exponential backoff (0.2 -> 2 s) by the same object;
meanwhile it reports offline. OpenCV's FFmpeg backend waits 30 s by default on open and read,
so both timeouts are always passed (FACTS.md); an RTSP server that hangs is only noticed
after ~3x the read timeout, so ``online`` also requires a frame younger than ``stall_s``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ringwatch.configfile import redact_url
from ringwatch.errors import InputError

log = logging.getLogger(__name__)

OPEN_TIMEOUT_MS = 3000
READ_TIMEOUT_MS = 2000
LIVE_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded BGR frame. ``index`` counts frames delivered by this source from 0; ``ts``
    is the stream position in seconds; ``captured_at`` the wall-clock time it was read."""

    image: npt.NDArray[np.uint8]
    index: int
    ts: float
    captured_at: float


@dataclass(frozen=True, slots=True)
class SourceStatus:
    online: bool
    frames: int
    dropped: int
    reconnects: int
    last_frame_age_s: float | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class StreamInfo:
    width: int
    height: int
    fps: float
    codec: str


class FrameSource(Protocol):
    def read(self, timeout: float = 1.0) -> Frame | None:
        """The next frame, or None (no new frame within ``timeout``, or a file ended)."""
        ...

    def status(self) -> SourceStatus: ...

    def close(self) -> None: ...


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` we use (a fake one drives the unit tests)."""

    def isOpened(self) -> bool: ...

    def read(self) -> tuple[bool, Any]: ...

    def grab(self) -> bool: ...

    def get(self, prop: int) -> float: ...

    def release(self) -> None: ...


Opener = Callable[[], Capture]


def ffmpeg_opener(url: str) -> Opener:
    """Open a network stream through FFmpeg with explicit open/read timeouts."""
    import cv2

    if url.startswith(("rtsp://", "rtsps://")):
        os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS]
    params += [cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS]

    def open_() -> Capture:
        cap: Capture = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
        return cap

    return open_


def usb_opener(index: int) -> Opener:
    import cv2

    def open_() -> Capture:
        cap: Capture = cv2.VideoCapture(index)
        return cap

    return open_


def file_opener(path: Path) -> Opener:
    import cv2

    def open_() -> Capture:
        cap: Capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        return cap

    return open_


class Backoff:
    """Capped exponential delays: 0.2, 0.4, 0.8, 1.6, 2, 2, ... until :meth:`reset`."""

    def __init__(self, first: float = 0.2, cap: float = 2.0) -> None:
        self._first = first
        self._cap = cap
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self._cap)
        return delay

    def reset(self) -> None:
        self._next = self._first


class LiveSource:
    """A live stream read by one thread that keeps only the newest frame."""

    def __init__(
        self,
        name: str,
        opener: Opener,
        *,
        stall_s: float = 5.0,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self._opener = opener
        self._stall = stall_s
        self._backoff = backoff or Backoff()
        self._clock = clock
        self._wall = wall
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._returned = -1
        self._frames = 0
        self._dropped = 0
        self._reconnects = 0
        self._connected = False
        self._last_at: float | None = None
        self._error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"capture-{name}", daemon=True)
        self._thread.start()

    def read(self, timeout: float = 1.0) -> Frame | None:
        with self._cond:
            fresh = self._cond.wait_for(self._has_new, timeout)
            if not fresh or self._latest is None:
                return None
            self._returned = self._latest.index
            return self._latest

    def _has_new(self) -> bool:
        return self._latest is not None and self._latest.index > self._returned

    def status(self) -> SourceStatus:
        with self._cond:
            age = None if self._last_at is None else self._clock() - self._last_at
            online = self._connected and age is not None and age < self._stall
            return SourceStatus(
                online, self._frames, self._dropped, self._reconnects, age, self._error
            )

    def __enter__(self) -> LiveSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=(OPEN_TIMEOUT_MS + READ_TIMEOUT_MS) / 1000 + 1)

    # -- reader thread ---------------------------------------------------------------------

    def _run(self) -> None:
        first = True
        while not self._stop.is_set():
            if not first:
                self._reconnects += 1
            first = False
            self._session()
            if not self._stop.is_set():
                self._stop.wait(self._backoff.next())

    def _session(self) -> None:
        """Open, read until the stream fails, release."""
        cap = self._opener()
        try:
            if not cap.isOpened():
                self._lost(f"cannot open {self.name}")
                return
            while not self._stop.is_set():
                ok, image = cap.read()
                if not ok or image is None:
                    self._lost(f"{self.name}: stream ended or timed out")
                    return
                self._publish(image, cap.get(_POS_MSEC) / 1000.0)
        finally:
            cap.release()

    def _publish(self, image: npt.NDArray[np.uint8], ts: float) -> None:
        with self._cond:
            if self._latest is not None and self._latest.index > self._returned:
                self._dropped += 1  # the consumer never saw the previous one
            self._latest = Frame(image, self._frames, ts, self._wall())
            self._frames += 1
            self._last_at = self._clock()
            self._connected = True
            self._error = None
            self._cond.notify_all()
        self._backoff.reset()

    def _lost(self, why: str) -> None:
        with self._cond:
            if self._connected:
                log.warning("%s; reconnecting", why)
            self._connected = False
            self._error = why


_POS_MSEC = 0  # cv2.CAP_PROP_POS_MSEC
_FPS = 5  # cv2.CAP_PROP_FPS


class VideoFileSource:
    """A video file, optionally looped, at its native rate (skipping frames when the consumer
    falls behind, like a live camera) or as fast as the consumer reads."""

    def __init__(
        self,
        path: Path,
        *,
        loop: bool = False,
        realtime: bool = True,
        opener: Opener | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if opener is None and not path.is_file():
            raise InputError(f"video file {path} does not exist")
        self.path = path
        self._opener = opener or file_opener(path)
        self._loop = loop
        self._realtime = realtime
        self._clock = clock
        self._sleep = sleep
        self._wall = wall
        self._cap = self._open()
        fps = self._cap.get(_FPS)
        self._period = 1.0 / fps if fps and fps > 0 else 1.0 / 25
        self._start: float | None = None
        self._pos = 0  # frames consumed from the file, across loops
        self._frames = 0
        self._dropped = 0
        self._ended = False
        self._last_at: float | None = None

    def _open(self) -> Capture:
        cap = self._opener()
        if not cap.isOpened():
            cap.release()
            raise InputError(f"cannot open video file {self.path}")
        return cap

    def read(self, timeout: float = 1.0) -> Frame | None:
        if self._ended:
            return None
        if self._realtime:
            self._pace()
        image = self._next_image()
        if image is None:
            return None
        frame = Frame(image, self._frames, self._pos * self._period, self._wall())
        self._pos += 1
        self._frames += 1
        self._last_at = self._clock()
        return frame

    def _pace(self) -> None:
        now = self._clock()
        if self._start is None:
            self._start = now
        behind = int((now - self._start) / self._period) - self._pos
        for _ in range(max(0, behind)):
            if not self._advance(lambda: self._cap.grab()):  # self._cap changes on a loop
                return
            self._pos += 1
            self._dropped += 1
        wait = self._start + self._pos * self._period - self._clock()
        if wait > 0:
            self._sleep(wait)

    def _next_image(self) -> npt.NDArray[np.uint8] | None:
        result: list[npt.NDArray[np.uint8]] = []

        def read_one() -> bool:
            ok, image = self._cap.read()
            if ok and image is not None:
                result.append(image)
            return bool(ok) and image is not None

        return result[0] if self._advance(read_one) else None

    def _advance(self, step: Callable[[], bool]) -> bool:
        """Run ``step`` (grab or read); at the end of the file loop or finish."""
        if step():
            return True
        if not self._loop:
            self._ended = True
            return False
        self._cap.release()
        self._cap = self._open()
        if step():
            return True
        self._ended = True
        return False

    def status(self) -> SourceStatus:
        age = None if self._last_at is None else self._clock() - self._last_at
        return SourceStatus(not self._ended, self._frames, self._dropped, 0, age)

    def close(self) -> None:
        self._cap.release()


def open_source(uri: str, *, loop: bool = False, realtime: bool = True) -> FrameSource:
    """A source for a camera's ``source`` setting: file path, rtsp://, http(s):// or usb:N."""
    opener, live = _opener_for(uri)
    if live:
        return LiveSource(_redact(uri), opener)
    return VideoFileSource(Path(uri), loop=loop, realtime=realtime, opener=opener)


def _opener_for(uri: str) -> tuple[Opener, bool]:
    """The opener for ``uri`` and whether it is a live stream; InputError if unusable."""
    if uri.startswith("usb:"):
        try:
            return usb_opener(int(uri[4:])), True
        except ValueError:
            raise InputError(f"camera source {uri!r}: expected usb:N with N a number") from None
    if uri.startswith(LIVE_SCHEMES):
        return ffmpeg_opener(uri), True
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    elif "://" in uri:
        raise InputError(
            f"camera source {_redact(uri)!r}: unknown scheme "
            "(rtsp, rtsps, http, https, file, usb:N)"
        )
    if not Path(uri).is_file():
        raise InputError(f"video file {uri} does not exist")
    return file_opener(Path(uri)), False


def probe(uri: str) -> StreamInfo:
    """Open a source, read one frame, and say what it is (for ``ringwatch edge check``)."""
    import cv2

    cap = _opener_for(uri)[0]()
    try:
        ok, image = cap.read() if cap.isOpened() else (False, None)
        if not ok or image is None:
            raise InputError(f"camera source {_redact(uri)}: no frame could be read")
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC))
        codec = "".join(chr((fourcc >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00 ")
        height, width = image.shape[:2]
        return StreamInfo(int(width), int(height), float(cap.get(cv2.CAP_PROP_FPS)), codec or "?")
    finally:
        cap.release()


def _redact(uri: str) -> str:
    """Hide a password in ``rtsp://user:pass@host`` before it reaches logs and health."""
    return redact_url(uri)
