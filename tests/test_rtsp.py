"""RTSP cameras against a real RTSP server on this machine (GStreamer's gst-rtsp-server, run
by Debian's Python: tests/tools/rtsp_server.py): frames arrive through the edge's own
open_source, the camera goes offline when the server dies or hangs, and comes back."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringwatch.edge.capture import LiveSource, ffmpeg_opener, open_source
from tests.services import free_port, wait_for

SERVER = Path(__file__).resolve().parent / "tools" / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"


def _has_gst_rtsp() -> bool:
    probe = "import gi; gi.require_version('GstRtspServer', '1.0')"
    try:
        done = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


class RtspServer:
    """One gst-rtsp-server process on a fixed port, so it can die and come back."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/live"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(SERVER), str(self.port)],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(5)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def hang(self, hung: bool) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP if hung else signal.SIGCONT)


@pytest.fixture
def rtsp() -> Iterator[RtspServer]:
    if not _has_gst_rtsp():
        pytest.fail(
            "GStreamer's RTSP server is missing; install with: apt-get install -y python3-gi "
            "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-bad (tools/setup.sh)"
        )
    server = RtspServer()
    server.start()
    yield server
    server.kill()


def test_rtsp_camera_delivers_frames_through_open_source(rtsp: RtspServer) -> None:
    url = rtsp.url.replace("rtsp://", "rtsp://admin:s3cret@")  # no auth asked: ignored
    source = open_source(url)
    try:
        frame = source.read(timeout=10.0)
        wait_for(lambda: source.status().frames >= 10, 10, "10 frames")
        status = source.status()
    finally:
        source.close()
    assert frame is not None and frame.image.shape == (240, 320, 3)
    assert status.online and status.error is None
    assert isinstance(source, LiveSource) and "s3cret" not in source.name


def test_rtsp_server_dies_and_returns(rtsp: RtspServer) -> None:
    with LiveSource("rtsp-cam", ffmpeg_opener(rtsp.url), stall_s=2.0) as src:
        wait_for(lambda: src.status().frames >= 10, 15, "frames from the server")
        rtsp.kill()
        wait_for(lambda: not src.status().online, 8, "the camera to go offline")
        down = src.status()
        assert down.error is not None
        time.sleep(1.0)
        assert src.status().frames == down.frames  # nothing is invented while it is down
        rtsp.start()
        wait_for(lambda: src.status().online, 20, "the camera to come back")
        wait_for(lambda: src.status().frames >= down.frames + 10, 10, "new frames")
        status = src.status()
    assert status.reconnects >= 1 and status.error is None


def test_a_hung_rtsp_stream_goes_offline_and_recovers(rtsp: RtspServer) -> None:
    with LiveSource("rtsp-cam", ffmpeg_opener(rtsp.url), stall_s=2.0) as src:
        wait_for(lambda: src.status().frames >= 10, 15, "frames from the server")
        rtsp.hang(True)  # the socket stays open, no data comes
        try:
            wait_for(lambda: not src.status().online, 6, "the stalled camera to go offline")
            hung = src.status()
            assert hung.last_frame_age_s is not None and hung.last_frame_age_s >= 2.0
            # the blocked read gives up (FFmpeg's read timeout) and the reader reconnects,
            # instead of waiting on the dead socket for ever
            wait_for(lambda: src.status().reconnects >= 1, 15, "a reconnect while hung")
            assert src.status().error in (
                "rtsp-cam: stream ended or timed out",  # the blocked read gave up
                "cannot open rtsp-cam",  # and the next open timed out too
            )
            assert not src.status().online
        finally:
            rtsp.hang(False)
        wait_for(lambda: src.status().online, 30, "frames again after the hang")
        wait_for(lambda: src.status().frames >= hung.frames + 10, 10, "new frames")


def test_the_capture_options_ask_for_rtsp_over_tcp(rtsp: RtspServer) -> None:
    ffmpeg_opener(rtsp.url)
    assert os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] == "rtsp_transport;tcp"
