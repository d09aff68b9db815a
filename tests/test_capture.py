"""Frame sources: files (native rate / fast / looped), live-stream reconnects, a real server."""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ringwatch.contract.messages import Health
from ringwatch.edge.capture import (
    Backoff,
    Capture,
    LiveSource,
    SourceStatus,
    VideoFileSource,
    _redact,
    ffmpeg_opener,
    open_source,
    probe,
)
from ringwatch.edge.health import (
    CameraStats,
    RateMeter,
    build_health,
    clock_synced,
    prometheus_text,
)
from ringwatch.edge.outbox import OutboxStats
from ringwatch.errors import InputError
from tests.services import free_port, wait_for

CLIP_FRAMES = 275  # ffprobe nb_frames of short_hamilton_clip.mp4 (29.97 fps, 640x360)


@pytest.fixture(scope="module")
def clip(data_dir: Path) -> Path:
    return data_dir / "faces" / "watchlist_demo" / "short_hamilton_clip.mp4"


class FakeTime:
    """A clock whose sleep advances it: pacing tests never really sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += seconds


def test_backoff_doubles_from_0_2_to_a_2_s_cap_and_resets() -> None:
    b = Backoff()
    assert [b.next() for _ in range(6)] == pytest.approx([0.2, 0.4, 0.8, 1.6, 2.0, 2.0])
    b.reset()
    assert b.next() == pytest.approx(0.2)


def test_file_as_fast_as_possible_yields_every_frame_then_ends(clip: Path) -> None:
    src = VideoFileSource(clip, realtime=False)
    frames = []
    while (f := src.read()) is not None:
        frames.append(f.index)
    assert frames == list(range(CLIP_FRAMES))
    assert not src.status().online
    src.close()


def test_looped_file_keeps_going_past_its_end(clip: Path) -> None:
    src = VideoFileSource(clip, loop=True, realtime=False)
    last = None
    for _ in range(CLIP_FRAMES + 20):
        last = src.read()
        assert last is not None
    assert last is not None and last.index == CLIP_FRAMES + 19
    assert last.image.shape == (360, 640, 3) and last.image.dtype == np.uint8
    assert last.ts > 9.0  # stream time keeps counting across the loop
    src.close()


def test_native_rate_paces_reads_and_skips_frames_for_a_slow_reader(clip: Path) -> None:
    t = FakeTime()
    src = VideoFileSource(clip, realtime=True, clock=t.clock, sleep=t.sleep)
    for _ in range(31):
        assert src.read() is not None
    assert t.now == pytest.approx(30 / 29.97, abs=1e-3)  # one second of video in one second
    t.now += 1.0  # the consumer stalls for a second: about 30 frames are skipped
    frame = src.read()
    assert frame is not None and frame.index == 31
    assert abs(frame.ts - t.now) < 1.5 / 29.97  # the frame due now, not the next in the file
    skipped = round(frame.ts * 29.97) - 31
    assert 27 <= skipped <= 30
    assert src.status().dropped == skipped
    src.close()


def test_native_rate_skipping_past_the_end_of_a_looped_file_wraps_around(clip: Path) -> None:
    t = FakeTime()
    src = VideoFileSource(clip, loop=True, realtime=True, clock=t.clock, sleep=t.sleep)
    assert src.read() is not None
    t.now += 12.0  # longer than the 9.2 s clip
    frame = src.read()
    assert frame is not None and frame.index == 1
    assert frame.ts == pytest.approx(12.0, abs=0.1)
    assert src.status().online
    src.close()


class FakeCapture:
    """Yields ``frames`` tiny images, then fails like a dead server."""

    def __init__(self, frames: int, opens: bool = True) -> None:
        self._left = frames
        self._opens = opens
        self.released = False

    def isOpened(self) -> bool:
        return self._opens

    def read(self) -> tuple[bool, Any]:
        time.sleep(0.01)
        if self._left <= 0:
            return False, None
        self._left -= 1
        return True, np.zeros((4, 4, 3), np.uint8)

    def grab(self) -> bool:
        return self.read()[0]

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        self.released = True


def test_live_source_reconnects_after_failures_and_counts_them() -> None:
    caps = [FakeCapture(0, opens=False), FakeCapture(5), FakeCapture(1000)]
    opened: list[FakeCapture] = []

    def opener() -> Capture:
        cap = caps[min(len(opened), 2)]
        opened.append(cap)
        return cap

    with LiveSource("fake", opener) as src:
        wait_for(lambda: len(opened) == 3 and src.status().online, 5, "the third session")
        assert src.read(1.0) is not None
        status = src.status()
    assert status.reconnects == 2
    assert all(c.released for c in opened)


def test_live_source_keeps_only_the_newest_frame() -> None:
    with LiveSource("fake", lambda: FakeCapture(1000)) as src:
        first = src.read(2.0)
        time.sleep(0.3)  # ~30 frames arrive while nobody reads
        second = src.read(1.0)
        assert first is not None and second is not None
        assert second.index - first.index > 5
        assert src.status().dropped >= second.index - first.index - 2


def test_sources_are_chosen_by_uri_and_bad_ones_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        open_source(str(tmp_path / "missing.mp4"))
    with pytest.raises(InputError, match="unknown scheme"):
        open_source("ftp://cam/1")
    with pytest.raises(InputError, match="usb:N"):
        open_source("usb:front")
    assert _redact("rtsp://admin:secret@10.0.0.5/h264") == "rtsp://admin:***@10.0.0.5/h264"
    with pytest.raises(InputError, match="usb:N"):
        probe("usb:front")
    with pytest.raises(InputError, match="does not exist"):
        probe(str(tmp_path / "missing.mp4"))


def test_probe_reports_resolution_fps_and_codec(clip: Path) -> None:
    info = probe(str(clip))
    assert (info.width, info.height) == (640, 360)
    assert info.fps == pytest.approx(29.97, abs=0.01)
    assert info.codec.lower() in ("avc1", "h264")


T0 = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)


def heartbeat(source: SourceStatus, fps: float = 4.8) -> Health:
    return build_health(
        site="campus",
        device="box1",
        version="0.1.0",
        at=T0 + dt.timedelta(seconds=90),
        started_at=T0,
        models={"yolox_nano.onnx": "ab" * 32},
        cameras=[CameraStats("gate", source, fps=fps, latency_ms=41.26)],
        outbox=OutboxStats(depth=12, dropped=3, refused=1, unknown_releases=0),
        bad_messages=2,
        clock_synced=True,
    )


def test_heartbeat_carries_camera_outbox_and_clock_figures() -> None:
    h = heartbeat(SourceStatus(False, 120, 7, 2, 6.5, "gone"))
    assert h.uptime_s == 90.0 and h.models == {"yolox_nano.onnx": "ab" * 32}
    cam = h.cameras[0]
    assert (cam.online, cam.fps, cam.latency_ms, cam.dropped_frames, cam.reconnects) == (
        False,
        4.8,
        41.3,
        7,
        2,
    )
    assert (h.outbox_depth, h.outbox_dropped, h.bad_messages, h.clock_synced) == (12, 4, 2, True)
    text = prometheus_text(h)
    assert 'ringwatch_camera_online{site="campus",device="box1",camera="gate"} 0' in text
    assert 'ringwatch_outbox_depth{site="campus",device="box1"} 12' in text


def test_rate_meter_measures_fps_over_its_window() -> None:
    meter = RateMeter(window_s=2.0)
    for i in range(11):
        meter.tick(100.0 + i * 0.2)  # 5 fps for 2 s
    assert meter.rate(102.0) == pytest.approx(5.0)
    assert meter.rate(110.0) == 0.0  # nothing for 8 s


def test_clock_sync_from_timedatectl_or_unknown() -> None:
    assert clock_synced(lambda cmd: "yes\n") is True
    assert clock_synced(lambda cmd: "no\n") is False

    def missing(cmd: list[str]) -> str:
        raise FileNotFoundError(cmd[0])

    assert clock_synced(missing) in (True, False, None)  # falls back to adjtimex


class StreamServer:
    """ffmpeg serving the clip as MPEG-TS over HTTP to one client at a time."""

    def __init__(self, clip: Path, mjpeg: bool = False) -> None:
        self.clip = clip
        self.mjpeg = mjpeg
        self.url = f"http://127.0.0.1:{free_port()}/"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = ["/usr/bin/ffmpeg", "-hide_banner", "-loglevel", "fatal", "-re"]
        cmd += ["-stream_loop", "-1", "-i", str(self.clip), "-an"]
        if self.mjpeg:  # re-encoded at 10 fps to keep the CPU cost small
            cmd += ["-c:v", "mjpeg", "-q:v", "6", "-r", "10", "-f", "mpjpeg"]
        else:
            cmd += ["-c:v", "copy", "-f", "mpegts"]
        cmd += ["-listen", "1", self.url]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def server(clip: Path) -> Iterator[StreamServer]:
    srv = StreamServer(clip)
    srv.start()
    yield srv
    srv.kill()


def test_http_stream_goes_offline_when_killed_and_resumes_on_restart(
    server: StreamServer,
) -> None:
    with LiveSource("http-cam", ffmpeg_opener(server.url), stall_s=2.0) as src:
        wait_for(lambda: src.status().frames >= 10, 15, "frames from the stream")
        assert src.status().online
        server.kill()
        wait_for(lambda: not src.status().online, 5, "the camera to go offline")
        assert not heartbeat(src.status()).cameras[0].online
        frames_while_down = src.status().frames
        time.sleep(1.0)
        assert src.status().frames == frames_while_down
        assert not src.status().online
        server.start()
        wait_for(lambda: src.status().online, 15, "the camera to come back")
        wait_for(lambda: src.status().frames >= frames_while_down + 10, 10, "new frames")
        frame = src.read(2.0)
        status = src.status()
    assert frame is not None and frame.image.shape == (360, 640, 3)
    assert status.reconnects >= 1
    assert heartbeat(status).cameras[0].online


def test_mjpeg_over_http_is_read_too(clip: Path) -> None:
    server = StreamServer(clip, mjpeg=True)
    server.start()
    try:
        with LiveSource("mjpeg-cam", ffmpeg_opener(server.url)) as src:
            wait_for(lambda: src.status().frames >= 5, 15, "MJPEG frames")
            frame = src.read(2.0)
            assert src.status().online
    finally:
        server.kill()
    assert frame is not None and frame.image.shape == (360, 640, 3)
